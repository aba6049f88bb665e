"""Curriculum preference pairs from the fakes (with context restored), one file per phase.

Phase rules (chosen > rejected):
  easy   : ideal > easy fake
  medium : ideal > medium fake;  hard fake > easy fake
  hard   : ideal > hard fake;    hard fake > medium fake;  medium fake > easy fake

Every fake of a kind gives an ideal-vs-fake pair; the fake-vs-fake pairs use the first fake of each kind of
the item (as the study did, to avoid a product explosion).  Items are keyed by ``data_index`` (the study
keyed them by question text, which merges distinct items that share a question; ``--study_compat`` does the
same).  A pair whose two sides are the same answer (up to case, whitespace and outer punctuation; exactly the
same text with ``--study_compat``) is never written; it is counted.  An abstention item (``--abstention_target``)
gives ideal-vs-fake pairs only: its abstention is the chosen side, never a fake-vs-fake side.

Order: the study iterated a set of question strings, so its files came in string-hash order (random per
process) with each question's pairs adjacent, and its latest recipe took the first 600 medium lines.
``--order shuffled`` (default) reproduces that with a seeded permutation of the items (each item's pairs stay
together); ``--order index`` writes them in data_index order (NQ first).

Pair record: {prompt, context, chosen, rejected, data_index, phase, pair_type}; ``pair_type`` is one of
``ideal>easy``, ``ideal>medium``, ``hard>easy``, ``ideal>hard``, ``hard>medium``, ``medium>easy``.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.fidelity import StudyCompat
from aligner.core.io import read_jsonl, write_jsonl_atomic
from aligner.core.paths import LEVELS, pair_file
from aligner.core.runinfo import finish_stage, start_stage
from aligner.data.negatives import fakes_with_context_file, same_answer

#: the fields every fake with context needs to make pairs
FAKE_FIELDS = ["data_index", "question", "context", "ideal_answer", "fake_answer"]

PHASE_RULES: dict[str, tuple[str, ...]] = {
    "easy": ("ideal>easy",),
    "medium": ("ideal>medium", "hard>easy"),
    "hard": ("ideal>hard", "hard>medium", "medium>easy"),
}


ORDERS = ("shuffled", "index")
#: which pairs of the phase rules are written: all of them (the study), or those whose chosen side is the ideal answer
PAIR_TYPE_SETS = ("all", "ideal")


@dataclass(kw_only=True)
class CurriculumPairsConfig(StudyCompat):
    """create_dataset.py: the fakes with context of each level in, one pair file per phase out."""

    input_dir: str = field(default=".", metadata={"help": "folder of the *_fakes_with_context.jsonl files"})
    easy_file: str | None = field(default=None, metadata={
        "help": f"easy fakes with context (default: <input_dir>/{fakes_with_context_file('easy')})"})
    medium_file: str | None = field(default=None, metadata={
        "help": f"medium fakes with context (default: <input_dir>/{fakes_with_context_file('medium')})"})
    hard_file: str | None = field(default=None, metadata={
        "help": f"hard fakes with context (default: <input_dir>/{fakes_with_context_file('hard')})"})
    output_dir: str = field(default=".", metadata={"help": "where dpo_pairs_{easy,medium,hard}.jsonl go"})
    limit: int = field(default=-1, metadata={"help": "write at most N pairs per phase, -1 = all"})
    order: str = field(default="shuffled", metadata={
        "help": "item order in the pair files: shuffled (seeded; each item's pairs adjacent, like the study's "
                "hash order) or index (data_index order, NQ first)", "choices": list(ORDERS)})
    seed: int = field(default=42, metadata={"help": "seed of --order shuffled"})
    pair_types: str = field(default="all", metadata={
        "help": "all: every pair of the phase rules (the study's: ideal > fake, and hard > easy, hard > medium, "
                "medium > easy); ideal: only the ideal-answer pairs (ideal > easy, medium, hard). A fake-vs-fake pair "
                "prefers one hallucination to another: where the hard fake is the very answer to unlearn, it teaches "
                "it", "choices": list(PAIR_TYPE_SETS)})

    def fake_file(self, level: str) -> str:
        given = {"easy": self.easy_file, "medium": self.medium_file, "hard": self.hard_file}[level]
        return given or str(Path(self.input_dir) / fakes_with_context_file(level))


def group_fakes(easy: Sequence[dict], medium: Sequence[dict], hard: Sequence[dict], by: str = "data_index"
                ) -> dict:
    """key -> {question, context, ideal, data_index, abstention, easy: [fakes], medium: [...], hard: [...]} in
    file order; the key is the record's ``data_index`` or (the study) its question text, and the item's
    question, context and ideal answer come from the first record seen (easy first, as the study)."""
    items: dict = {}
    for kind, records in (("easy", easy), ("medium", medium), ("hard", hard)):
        for rec in records:
            key = rec["data_index"] if by == "data_index" else rec.get("question", "")
            item = items.get(key)
            if item is None:
                item = items[key] = {"question": rec.get("question", ""), "context": rec.get("context", ""),
                                     "ideal": rec.get("ideal_answer", ""), "data_index": rec["data_index"],
                                     "abstention": bool(rec.get("abstention")), "easy": [], "medium": [], "hard": []}
            fake = rec.get("fake_answer", "")
            if isinstance(fake, str) and fake.strip():
                item[kind].append(fake)
    return items


def item_order(keys, order: str = "shuffled", seed: int = 42) -> list:
    """The items' keys in data_index order, or (``shuffled``) permuted by ``random.Random(seed)``."""
    keys = sorted(keys, key=lambda k: (str(type(k)), k))
    if order == "shuffled":
        random.Random(seed).shuffle(keys)
    elif order != "index":
        raise ValueError(f"order must be one of {list(ORDERS)}")
    return keys


def _item_pairs(g: dict, add) -> None:
    """The pairs of one item by the phase rules; an abstention item gives its ideal-vs-fake pairs only."""
    ideal = g["ideal"]
    first = {k: (g[k][0] if g[k] else None) for k in LEVELS}
    for fake in g["easy"]:
        add("easy", "ideal>easy", ideal, fake)
    for fake in g["medium"]:
        add("medium", "ideal>medium", ideal, fake)
    if first["hard"] and first["easy"] and not g["abstention"]:
        add("medium", "hard>easy", first["hard"], first["easy"])
    for fake in g["hard"]:
        add("hard", "ideal>hard", ideal, fake)
    if first["hard"] and first["medium"] and not g["abstention"]:
        add("hard", "hard>medium", first["hard"], first["medium"])
    if first["medium"] and first["easy"] and not g["abstention"]:
        add("hard", "medium>easy", first["medium"], first["easy"])


def build_curriculum_pairs(easy: Sequence[dict], medium: Sequence[dict], hard: Sequence[dict], order: str = "index",
                           seed: int = 42, study_compat: bool = False,
                           pair_types: str = "all") -> tuple[dict[str, list[dict]], Counter]:
    """Pairs per phase (see the module docstring), items in ``order``, and counts: pairs per phase and per pair
    type, and pairs skipped because both sides were the same answer.  ``study_compat``: items keyed by question
    text, sides compared exactly."""
    pairs: dict[str, list[dict]] = {p: [] for p in LEVELS}
    counts: Counter = Counter()
    groups = group_fakes(easy, medium, hard, "question" if study_compat else "data_index")
    identical = (lambda a, b: a == b) if study_compat else same_answer
    for key in item_order(groups, order, seed):
        g = groups[key]
        if not g["ideal"].strip():
            counts["skipped_no_ideal"] += 1
            continue

        def add(phase: str, pair_type: str, chosen: str, rejected: str, g=g) -> None:
            if pair_types == "ideal" and not pair_type.startswith("ideal>"):
                counts[f"left_out_{pair_type}"] += 1
                return
            if identical(chosen, rejected):
                counts[f"skipped_identical_{pair_type}"] += 1
                return
            pairs[phase].append({"prompt": g["question"], "context": g["context"], "chosen": chosen,
                                 "rejected": rejected, "data_index": g["data_index"], "phase": phase,
                                 "pair_type": pair_type})
            counts[f"{phase}:{pair_type}"] += 1

        _item_pairs(g, add)
    counts["items"] = len(groups)
    counts["abstention_items"] = sum(g["abstention"] for g in groups.values())
    for phase in LEVELS:
        counts[f"pairs_{phase}"] = len(pairs[phase])
    return pairs, counts


def write_curriculum_pairs(cfg: CurriculumPairsConfig) -> dict:
    """create_dataset.py: dpo_pairs_<phase>.jsonl for every phase from the fakes with context; returns the counts."""
    out_dir = start_stage(cfg.output_dir, cfg)
    fakes = {level: read_jsonl(cfg.fake_file(level), required=FAKE_FIELDS, allow_empty=True) for level in LEVELS}
    pairs, counts = build_curriculum_pairs(fakes["easy"], fakes["medium"], fakes["hard"], order=cfg.order,
                                           seed=cfg.seed, study_compat=cfg.study_compat, pair_types=cfg.pair_types)
    for phase in LEVELS:
        rows = pairs[phase][:cfg.limit] if cfg.limit >= 0 else pairs[phase]
        write_jsonl_atomic(out_dir / pair_file(phase), rows)
        counts[f"written_{phase}"] = len(rows)
    counts = {**{f"fakes_{k}": len(v) for k, v in fakes.items()}, **dict(sorted(counts.items()))}
    finish_stage(out_dir, cfg, counts)
    print("phase summary: " + ", ".join(f"{p}={counts[f'written_{p}']}" for p in LEVELS))
    return counts
