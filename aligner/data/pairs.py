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

from aligner.core.paths import LEVELS
from aligner.data.negatives import same_answer

PHASE_RULES: dict[str, tuple[str, ...]] = {
    "easy": ("ideal>easy",),
    "medium": ("ideal>medium", "hard>easy"),
    "hard": ("ideal>hard", "hard>medium", "medium>easy"),
}


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
