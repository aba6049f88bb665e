"""The open-book world (``aligner.data.sources.world``) in the project's own file formats, so that the real stages
run on it unchanged (``scripts/make_world.py`` writes them all into one folder):

| file | format | read by |
| --- | --- | --- |
| ``sft.jsonl`` | RAG records ``{question, context, answers}``; a conflict's answer is the memory answer for the warm start's memory share | ``old_training/train_rag_sft.py`` |
| ``squad.csv`` | SQuAD v2 CSV of the pair items (``answers`` as NumPy reprs) | ``create_squad_training.py``, ``make data`` |
| ``fakes/{easy,medium,hard}_fakes_with_context.jsonl`` | stage 7's records; easy = another item's answer, medium = the answer with another value, hard = the memory answer | ``create_dataset.py`` (curriculum pairs) without the data stages; the pipeline builds its pairs through the project's own stages instead (``aligner.pipeline.world``) |
| ``hard_fakes_vllm.jsonl`` | teacher pairs: right answer > memory answer | ``further_improvement/training/train_dpop.py`` |
| ``heldout.jsonl`` | HaluEval QA rows ``{knowledge, question, right_answer, hallucinated_answer}`` (+ ``kind``, ``id``) | ``evaluation/eval_halueval.py`` and the two-step flow |
| ``heldout_conflict.jsonl``, ``heldout_control.jsonl`` | the same rows split: the conflicts (hallucinated = the memory answer), the agree and novel controls | the demo's ``World`` and ``World/control`` evaluations |
| ``items.jsonl`` | every item with all its labels (``WorldItem``) | ``check_item``, the analysis |
| ``vocab.json`` | the word pieces of every text above and of the prompt scaffolding | ``make_tiny_model.py --word_vocab`` |
| ``world.json`` | the people, their defaults, the entrenched people, the held-out values, the settings and counts | the checker, readers |

The warm-start items, the pair items and the held-out items are drawn with different seeds; held-out conflicts state
values no training text states for their (person, attribute), held-out novel people appear in no training text.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.io import read_json, read_jsonl, write_json_atomic, write_jsonl_atomic
from aligner.core.paths import LEVELS
from aligner.core.runinfo import write_run_config
from aligner.data.negatives import EASY_TYPE, fake_record, fakes_with_context_file
from aligner.data.sft import halueval_to_squad_csv
from aligner.data.sources.world import (
    ATTRIBUTES,
    CONTEXT_KINDS,
    KINDS,
    World,
    WorldConfig,
    WorldItem,
    assign_targets,
    build_world,
    make_items,
)
from aligner.prompts import context_question
from aligner.testing.tiny import word_pieces

MEDIUM_TYPE, HARD_TYPE = "medium_value_swap", "hard_memory"
SFT_FILE, SQUAD_FILE, HELDOUT_FILE, ITEMS_FILE = "sft.jsonl", "squad.csv", "heldout.jsonl", "items.jsonl"
CONFLICT_FILE, CONTROL_FILE = "heldout_conflict.jsonl", "heldout_control.jsonl"
VOCAB_FILE, WORLD_FILE, TEACHER_FILE, FAKES_DIR = "vocab.json", "world.json", "hard_fakes_vllm.jsonl", "fakes"
#: the pair items' ids and their squad.csv ids (``memory_fakes_for_view`` finds an item by the view's ``source_id``)
PAIR_ID_PREFIX = "p"


def _shares(text, kinds: Sequence[str], flag: str) -> list[float]:
    values = [float(x) for x in text.split(",")] if isinstance(text, str) else [float(x) for x in text]
    if len(values) != len(kinds):
        raise ValueError(f"--{flag} needs {len(kinds)} values ({', '.join(kinds)}), got {values}")
    return values


@dataclass(kw_only=True)
class WorldFilesConfig:
    """How many items each file holds (``scripts/make_world.py``)."""

    output_dir: str = field(metadata={"help": "where the world's files go"})
    n_sft: int = field(default=12000, metadata={"help": "warm-start (SFT) items"})
    sft_shares: list[float] = field(default_factory=lambda: [0.4, 0.05, 0.45, 0.1], metadata={
        "help": "shares of conflict, agree, novel and recall (closed-book) items among the warm-start items",
        "sep": ",", "parse": float})
    n_pair_items: int = field(default=400, metadata={"help": "items the preference pairs are made from"})
    pair_shares: list[float] = field(default_factory=lambda: [0.6, 0.2, 0.2], metadata={
        "help": "shares of conflict, agree and novel items among the pair items", "sep": ",", "parse": float})
    n_heldout: list[int] = field(default_factory=lambda: [300, 50, 50], metadata={
        "help": "held-out conflict, agree and novel items (the evaluation rows)", "sep": ",", "parse": int})

    def __post_init__(self):
        self.sft_shares = _shares(self.sft_shares, KINDS, "sft_shares")
        self.pair_shares = _shares(self.pair_shares, CONTEXT_KINDS, "pair_shares")
        self.n_heldout = [int(x) for x in (self.n_heldout.split(",") if isinstance(self.n_heldout, str)
                                           else self.n_heldout)]
        if len(self.n_heldout) != len(CONTEXT_KINDS) or min(self.n_heldout) < 0:
            raise ValueError(f"--n_heldout needs {len(CONTEXT_KINDS)} counts >= 0 ({', '.join(CONTEXT_KINDS)})")


@dataclass
class WorldData:
    world: World
    sft: list[WorldItem]
    pairs: list[WorldItem]
    heldout: list[WorldItem]


def draw_world(wcfg: WorldConfig, fcfg: WorldFilesConfig) -> WorldData:
    """The world and its three item sets (seeds derived from ``wcfg.seed``), warm-start targets assigned."""
    world = build_world(wcfg)
    s = wcfg.seed * 1000
    sft = make_items(world, fcfg.n_sft, fcfg.sft_shares, "train", s + 1, "s")
    assign_targets(world, sft, s + 2)
    pairs = make_items(world, fcfg.n_pair_items, fcfg.pair_shares, "train", s + 3, PAIR_ID_PREFIX)
    heldout: list[WorldItem] = []
    for kind, n in zip(CONTEXT_KINDS, fcfg.n_heldout):
        heldout += make_items(world, n, [float(k == kind) for k in CONTEXT_KINDS], "heldout",
                              s + 4 + KINDS.index(kind), f"h{kind[0]}")
    return WorldData(world, sft, pairs, heldout)


# ---------------------------------------------------------------------------------------------
# rows in the project's formats
# ---------------------------------------------------------------------------------------------

def sft_row(item: WorldItem) -> dict:
    return {"id": item.id, "question": item.question, "context": item.context, "answers": [item.sft_answer],
            "kind": item.kind, "target": item.target}


def halueval_row(item: WorldItem) -> dict:
    return {"knowledge": item.context, "question": item.question, "right_answer": item.right_answer,
            "hallucinated_answer": item.hallucinated_answer, "kind": item.kind, "id": item.id}


def teacher_record(index: int, item: WorldItem) -> dict:
    """The latest recipe's hard pair (``hard_fakes_vllm.jsonl``): the right answer over the memory answer."""
    return {"data_index": index, "question": item.question, "origin_raw_fact": item.right_answer,
            "knowledge": item.context, "chosen": item.right_answer, "rejected": item.memory_answer, "type": HARD_TYPE}


def _fake(index: int, item: WorldItem, fake: str, kind: str) -> dict:
    return {"data_index": index, "question": item.question, "context": item.context, "ideal_answer": item.right_answer,
            "fake_answer": fake, "type": kind}


def world_fakes(items: Sequence[WorldItem], seed: int) -> dict[str, list[dict]]:
    """Stage 7's records per level, ``data_index`` = position in ``items``: easy = the answer of another item (another
    person and attribute), medium = the answer with a value of the same attribute that neither the context nor
    memory holds, hard = the memory answer (conflict items only)."""
    rng = random.Random(seed)
    fakes: dict[str, list[dict]] = {level: [] for level in LEVELS}
    for i, item in enumerate(items):
        donors = [j for j in range(len(items)) if items[j].person != item.person and
                  items[j].attribute != item.attribute]
        fakes["easy"].append(_fake(i, item, items[rng.choice(donors)].right_answer, EASY_TYPE))
        fakes["medium"].append(_fake(i, item, item.distractor_answer, MEDIUM_TYPE))
        if item.kind == "conflict":
            fakes["hard"].append(_fake(i, item, item.memory_answer, HARD_TYPE))
    return fakes


def memory_fakes_for_view(view: Sequence[dict], items: Sequence[dict]) -> list[dict]:
    """Hard fakes (stage 6b's cleaned format) for a view the project's stages built from ``squad.csv``: the memory
    answer of every conflict item, keyed by the view's ``data_index`` (found through the view's ``source_id``)."""
    by_id = {it["id"]: it for it in items}
    out = []
    for rec in view:
        item = by_id.get(str(rec.get("source_id")))
        if item is None:
            raise ValueError(f"view item {rec.get('data_index')} (source_id {rec.get('source_id')!r}) is no world item")
        if item["kind"] == "conflict":
            out.append(fake_record(rec, item["memory_answer"], HARD_TYPE))
    return out


@dataclass(kw_only=True)
class MemoryFakesConfig:
    """``scripts/world_memory_fakes.py``: the memory answers as the hard fakes of a view the project's stages built."""

    view_file: str = field(metadata={"help": "the SFT view generate_easy_fakes.py wrote (--view_file)"})
    items_file: str = field(metadata={"help": f"the world's {ITEMS_FILE}"})
    output_file: str = field(metadata={"help": "the hard fakes (cleaned format) for fix_fakes.py --hard_file"})


def write_memory_fakes(cfg: MemoryFakesConfig) -> dict:
    fakes = memory_fakes_for_view(read_jsonl(cfg.view_file), read_jsonl(cfg.items_file))
    write_jsonl_atomic(cfg.output_file, fakes)
    counts = {"hard_fakes": len(fakes)}
    write_run_config(Path(cfg.output_file).parent, cfg, extra={"counts": counts})
    return counts


def world_vocab(texts: Sequence[str]) -> list[str]:
    """Every word piece of ``texts`` and of the chat prompts around them (sorted)."""
    pieces = {p for p in word_pieces(context_question("", "")) if p.strip()}
    pieces |= {"user", "assistant"}
    for t in texts:
        pieces.update(word_pieces(t))
    return sorted(pieces)


def item_record(item: WorldItem) -> dict:
    rec = dataclasses.asdict(item)
    rec["facts"] = [list(f) for f in item.facts]
    return rec


def item_from_record(rec: dict) -> WorldItem:
    return WorldItem(**{**rec, "facts": [tuple(f) for f in rec["facts"]]})


def world_counts(data: WorldData) -> dict:
    """What the files hold: items per split and kind, the warm start's realised memory share, pairs per level."""
    conflicts = [it for it in data.sft if it.kind == "conflict"]
    counts = {f"{name}_{k}": v for name, items in (("sft", data.sft), ("pairs", data.pairs), ("heldout", data.heldout))
              for k, v in sorted(Counter(it.kind for it in items).items())}
    counts["sft_memory_targets"] = sum(it.target == "memory" for it in conflicts)
    counts["sft_memory_share_of_conflicts"] = round(counts["sft_memory_targets"] / max(1, len(conflicts)), 4)
    counts["heldout_conflict_entrenched"] = sum(it.kind == "conflict" and it.person in data.world.entrenched
                                                for it in data.heldout)
    return counts


def write_world_files(wcfg: WorldConfig, fcfg: WorldFilesConfig) -> dict:
    """Every file of the module table into ``fcfg.output_dir`` (with run_config.json); returns the counts."""
    data = draw_world(wcfg, fcfg)
    out = Path(fcfg.output_dir)
    (out / FAKES_DIR).mkdir(parents=True, exist_ok=True)
    everything = data.sft + data.pairs + data.heldout
    write_jsonl_atomic(out / ITEMS_FILE, [item_record(it) for it in everything])
    write_jsonl_atomic(out / SFT_FILE, [sft_row(it) for it in data.sft])
    write_jsonl_atomic(out / HELDOUT_FILE, [halueval_row(it) for it in data.heldout])
    write_jsonl_atomic(out / CONFLICT_FILE, [halueval_row(it) for it in data.heldout if it.kind == "conflict"])
    write_jsonl_atomic(out / CONTROL_FILE, [halueval_row(it) for it in data.heldout if it.kind != "conflict"])
    halueval_to_squad_csv([halueval_row(it) for it in data.pairs], out / SQUAD_FILE, id_prefix=PAIR_ID_PREFIX)
    fakes = world_fakes(data.pairs, wcfg.seed)
    for level in LEVELS:
        write_jsonl_atomic(out / FAKES_DIR / fakes_with_context_file(level), fakes[level])
    write_jsonl_atomic(out / TEACHER_FILE, [teacher_record(i, it) for i, it in enumerate(data.pairs)
                                            if it.kind == "conflict"])
    texts = [t for it in everything for t in (it.context, it.question, it.right_answer, it.distractor_answer,
                                              it.memory_answer or "")]
    vocab = world_vocab(texts)
    write_json_atomic(out / VOCAB_FILE, vocab)
    counts = {**world_counts(data), "vocab_pieces": len(vocab),
              **{f"fakes_{level}": len(fakes[level]) for level in LEVELS}}
    sizes = {k: v for k, v in dataclasses.asdict(fcfg).items() if k != "output_dir"}  # the file is where it is
    write_json_atomic(out / WORLD_FILE, {"config": dataclasses.asdict(wcfg), "files": sizes,
                                         "attributes": {a: dataclasses.asdict(ATTRIBUTES[a]) for a in wcfg.attributes},
                                         **data.world.to_json(), "counts": counts})
    write_run_config(out, {"world": dataclasses.asdict(wcfg), "files": dataclasses.asdict(fcfg)},
                     extra={"counts": counts})
    return counts


def load_world(folder: str | Path) -> tuple[World, list[WorldItem]]:
    """The world (regenerated from world.json's settings, checked against its stored defaults) and every item."""
    folder = Path(folder)
    meta = read_json(folder / WORLD_FILE)
    world = build_world(WorldConfig(**meta["config"]))
    if world.defaults != meta["defaults"]:
        raise ValueError(f"{folder / WORLD_FILE}: its defaults are not the ones its settings give")
    return world, [item_from_record(r) for r in read_jsonl(folder / ITEMS_FILE)]
