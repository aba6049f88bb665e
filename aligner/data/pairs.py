"""Curriculum preference pairs from the fakes (with context restored), one file per phase.

Phase rules (chosen > rejected):
  easy   : ideal > easy fake
  medium : ideal > medium fake;  hard fake > easy fake
  hard   : ideal > hard fake;    hard fake > medium fake;  medium fake > easy fake

Every fake of a kind gives an ideal-vs-fake pair; the fake-vs-fake pairs use the first fake of each kind of
the item (as the study did, to avoid a product explosion).  Items are keyed by ``data_index`` (the study
keyed them by question text, which merges distinct items that share a question).  A pair whose two sides
are the same answer (up to case, whitespace and outer punctuation) is never written; it is counted.

Pair record: {prompt, context, chosen, rejected, data_index, phase, pair_type}; ``pair_type`` is one of
``ideal>easy``, ``ideal>medium``, ``hard>easy``, ``ideal>hard``, ``hard>medium``, ``medium>easy``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

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


@dataclass(kw_only=True)
class CurriculumPairsConfig:
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
    seed: int = field(default=42, metadata={"help": "recorded only; pairs come in data_index order"})

    def fake_file(self, level: str) -> str:
        given = {"easy": self.easy_file, "medium": self.medium_file, "hard": self.hard_file}[level]
        return given or str(Path(self.input_dir) / fakes_with_context_file(level))


def group_by_index(easy: Sequence[dict], medium: Sequence[dict], hard: Sequence[dict]) -> dict[int, dict]:
    """data_index -> {question, context, ideal, easy: [fakes], medium: [...], hard: [...]} in file order."""
    items: dict[int, dict] = {}
    for kind, records in (("easy", easy), ("medium", medium), ("hard", hard)):
        for rec in records:
            idx = rec["data_index"]
            item = items.get(idx)
            if item is None:
                item = items[idx] = {"question": rec.get("question", ""), "context": rec.get("context", ""),
                                     "ideal": rec.get("ideal_answer", ""), "easy": [], "medium": [], "hard": []}
            fake = rec.get("fake_answer", "")
            if isinstance(fake, str) and fake.strip():
                item[kind].append(fake)
    return items


def build_curriculum_pairs(easy: Sequence[dict], medium: Sequence[dict], hard: Sequence[dict]
                           ) -> tuple[dict[str, list[dict]], Counter]:
    """Pairs per phase (see the module docstring) and counts: pairs per phase and per pair type, and
    pairs skipped because both sides were the same answer."""
    pairs: dict[str, list[dict]] = {p: [] for p in LEVELS}
    counts: Counter = Counter()
    groups = group_by_index(easy, medium, hard)
    for idx in sorted(groups):
        g = groups[idx]
        if not g["ideal"].strip():
            counts["skipped_no_ideal"] += 1
            continue

        def add(phase: str, pair_type: str, chosen: str, rejected: str, g=g, idx=idx) -> None:
            if same_answer(chosen, rejected):
                counts[f"skipped_identical_{pair_type}"] += 1
                return
            pairs[phase].append({"prompt": g["question"], "context": g["context"], "chosen": chosen,
                                 "rejected": rejected, "data_index": idx, "phase": phase, "pair_type": pair_type})
            counts[f"{phase}:{pair_type}"] += 1

        ideal = g["ideal"]
        first = {k: (g[k][0] if g[k] else None) for k in LEVELS}
        for fake in g["easy"]:
            add("easy", "ideal>easy", ideal, fake)
        for fake in g["medium"]:
            add("medium", "ideal>medium", ideal, fake)
        if first["hard"] and first["easy"]:
            add("medium", "hard>easy", first["hard"], first["easy"])
        for fake in g["hard"]:
            add("hard", "ideal>hard", ideal, fake)
        if first["hard"] and first["medium"]:
            add("hard", "hard>medium", first["hard"], first["medium"])
        if first["medium"] and first["easy"]:
            add("hard", "medium>easy", first["medium"], first["easy"])
    counts["items"] = len(groups)
    for phase in LEVELS:
        counts[f"pairs_{phase}"] = len(pairs[phase])
    return pairs, counts


def write_curriculum_pairs(cfg: CurriculumPairsConfig) -> dict:
    """create_dataset.py: dpo_pairs_<phase>.jsonl for every phase from the fakes with context; returns the counts."""
    out_dir = start_stage(cfg.output_dir, cfg)
    fakes = {level: read_jsonl(cfg.fake_file(level), required=FAKE_FIELDS, allow_empty=True) for level in LEVELS}
    pairs, counts = build_curriculum_pairs(fakes["easy"], fakes["medium"], fakes["hard"])
    for phase in LEVELS:
        rows = pairs[phase][:cfg.limit] if cfg.limit >= 0 else pairs[phase]
        write_jsonl_atomic(out_dir / pair_file(phase), rows)
        counts[f"written_{phase}"] = len(rows)
    counts = {**{f"fakes_{k}": len(v) for k, v in fakes.items()}, **dict(sorted(counts.items()))}
    finish_stage(out_dir, cfg, counts)
    print("phase summary: " + ", ".join(f"{p}={counts[f'written_{p}']}" for p in LEVELS))
    return counts
