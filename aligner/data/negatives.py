"""Synthetic wrong answers ("fakes") for the curriculum: what every kind shares (the fake record, answer
comparison), easy fakes (another item's answer, stage 4) and the context restore that joins fakes back to the
unified SFT view by ``data_index`` (stage 7).  Medium fakes (NER swaps) live in ``aligner.data.ner``, hard
fakes (poisoned generations and their cleaning) in ``aligner.data.hard_fakes``.

Fake record: {data_index, question, ideal_answer, fake_answer, type}.
"""

from __future__ import annotations

import logging
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.io import DataError, read_jsonl, write_jsonl_atomic
from aligner.core.paths import LEVELS
from aligner.core.runinfo import finish_stage, start_stage
from aligner.data.sft import SFTView, load_view

logger = logging.getLogger(__name__)

EASY_TYPE = "easy_mismatch"
MEDIUM_TYPE = "medium_ner_swap"


def fakes_with_context_file(level: str) -> str:
    """``<level>_fakes_with_context.jsonl``: one level's fakes with the view's context restored (stage 7's output,
    stage 8's input)."""
    return f"{level}_fakes_with_context.jsonl"


@dataclass(kw_only=True)
class EasyFakeConfig:
    """generate_easy_fakes.py (the SFT view comes from ``SFTView``)."""

    output_file: str = field(default="easy_fakes.jsonl", metadata={"help": "easy fakes"})
    view_file: str = field(default="", metadata={
        "help": "also write the unified SFT view here (default: '' = do not)"})
    seed: int = field(default=42, metadata={"help": "seed of the mismatch draws"})


@dataclass(kw_only=True)
class RestoreContextConfig:
    """fix_fakes.py (the SFT view comes from ``SFTView``)."""

    easy_file: str = field(default="easy_fakes.jsonl", metadata={"help": "easy fakes ('' = skip)"})
    medium_file: str = field(default="medium_fakes.jsonl", metadata={"help": "medium fakes ('' = skip)"})
    hard_file: str = field(default="cleaned_hard_fakes.jsonl", metadata={"help": "cleaned hard fakes ('' = skip)"})
    output_dir: str = field(default=".", metadata={"help": "where <level>_fakes_with_context.jsonl go"})
    seed: int = field(default=42, metadata={"help": "recorded only; the restore is deterministic"})
    skip_mismatched: bool = field(default=False, metadata={
        "help": "count and skip fakes that do not match the view instead of stopping"})

    def fake_files(self) -> dict[str, str]:
        """level -> fakes file, for the levels given."""
        files = dict(zip(LEVELS, (self.easy_file, self.medium_file, self.hard_file)))
        return {level: path for level, path in files.items() if path}


def norm_answer(text: str) -> str:
    """Comparison key for answers: case-folded, whitespace collapsed, outer quotes/punctuation dropped."""
    return re.sub(r"\s+", " ", str(text or "")).strip().strip("\"'`“”‘’.").strip().casefold()


def same_answer(a: str, b: str) -> bool:
    return norm_answer(a) == norm_answer(b)


def fake_record(item: dict, fake: str, kind: str) -> dict:
    return {"data_index": item["data_index"], "question": item["question"], "ideal_answer": item["ideal_answer"],
            "fake_answer": fake, "type": kind}


# ---------------------------------------------------------------------------------------------
# Easy fakes
# ---------------------------------------------------------------------------------------------

def make_easy_fakes(view: Sequence[dict], seed: int = 42, max_tries: int = 20, single_draw: bool = False
                    ) -> tuple[list[dict], Counter]:
    """One easy fake per item: the ideal answer of a different, randomly drawn item whose answer differs.

    The draw is the study's, ``(i + rng.randint(1, n - 1)) % n`` with ``random.Random(seed)`` (the same numbers as
    its ``random.seed(seed)``).  Abstention items (``--abstention_target``) get an easy fake but are never drawn
    as donors.  A draw that gives an equal answer or an abstention is redrawn; after ``max_tries`` the others
    are scanned in a seeded order, so an item is only skipped (``no_distinct_answer``) when no other answerable
    item has another answer; a blank ideal answer is skipped without a draw.  ``single_draw`` (``--study_compat``):
    the study's loop (generate_easy_fakes.py:63-82): one draw, kept iff the answer differs exactly; only an empty
    ideal answer is skipped without a draw, so a whitespace-only one still draws (and keeps the draws in step).
    """
    rng = random.Random(seed)
    n = len(view)
    out: list[dict] = []
    counts: Counter = Counter()

    def usable(j: int, ideal: str) -> bool:
        donor = view[j]
        return not donor.get("abstention") and bool(donor["ideal_answer"].strip()) \
            and not same_answer(donor["ideal_answer"], ideal)

    for i, item in enumerate(view):
        ideal = item["ideal_answer"]
        if not ideal or not (ideal.strip() or single_draw):
            counts["empty_ideal"] += 1
            continue
        pick = None
        if n > 1 and single_draw:
            j = (i + rng.randint(1, n - 1)) % n
            fake = view[j]["ideal_answer"]
            pick = j if fake and fake != ideal and not view[j].get("abstention") else None
        elif n > 1:
            pick = next((j for j in ((i + rng.randint(1, n - 1)) % n for _ in range(max_tries)) if usable(j, ideal)),
                        None)
            if pick is None:
                others = [j for j in range(n) if j != i]
                rng.shuffle(others)
                pick = next((j for j in others if usable(j, ideal)), None)
        if pick is None:
            counts["no_distinct_answer"] += 1
            continue
        out.append(fake_record(item, view[pick]["ideal_answer"], EASY_TYPE))
        counts["written"] += 1
        if item.get("abstention"):
            counts["written_for_abstention_items"] += 1
    return out, counts


# ---------------------------------------------------------------------------------------------
# Context restore
# ---------------------------------------------------------------------------------------------

def restore_context(fakes: Sequence[dict], view: Sequence[dict], source: str = "fakes", strict: bool = True
                    ) -> tuple[list[dict], Counter]:
    """Attach the view's question, context and ideal answer to each fake by ``data_index``.

    A fake whose index is missing or out of range, or whose question differs from the view's question at
    that index (the view was built from other files or another --limit), raises ``DataError`` naming
    ``source`` and the record's line when ``strict``; otherwise it is counted and skipped.
    """
    out: list[dict] = []
    counts: Counter = Counter()
    for line, fake in enumerate(fakes, start=1):
        idx = fake.get("data_index")
        problem = None
        if not isinstance(idx, int) or isinstance(idx, bool):
            problem = "missing_index"
        elif not 0 <= idx < len(view):
            problem = "index_out_of_range"
        elif fake.get("question") is not None and fake["question"].strip() != view[idx]["question"].strip():
            problem = "question_mismatch"
        elif not str(fake.get("fake_answer", "")).strip():
            problem = "empty_fake"
        if problem:
            if strict and problem != "empty_fake":
                raise DataError(source, f"{problem} for data_index {idx!r}: the SFT view must be built from the "
                                        "same NQ/SQuAD files and --limit as the stage that wrote the fakes", line)
            counts[problem] += 1
            continue
        item = view[idx]
        rec = {"data_index": idx, "question": item["question"], "context": item["context"],
               "ideal_answer": item["ideal_answer"], "fake_answer": fake["fake_answer"],
               "type": fake.get("type", "unknown")}
        if item.get("abstention"):
            rec["abstention"] = True
        out.append(rec)
        counts["restored"] += 1
    return out, counts


# ---------------------------------------------------------------------------------------------
# The stages
# ---------------------------------------------------------------------------------------------

def write_easy_fakes(cfg: EasyFakeConfig, view_cfg: SFTView) -> dict:
    """generate_easy_fakes.py: the easy fakes of the view (and the view itself with ``cfg.view_file``)."""
    out_dir = start_stage(Path(cfg.output_file).resolve().parent, (cfg, view_cfg))
    view, vstats = load_view(view_cfg)
    fakes, counts = make_easy_fakes(view, seed=cfg.seed, single_draw=view_cfg.study_compat)
    write_jsonl_atomic(cfg.output_file, fakes)
    if cfg.view_file:
        write_jsonl_atomic(cfg.view_file, view)
    return finish_stage(out_dir, (cfg, view_cfg), {**vstats, **dict(counts)})


def restore_fake_files(cfg: RestoreContextConfig, view_cfg: SFTView) -> dict:
    """fix_fakes.py: every given fakes file with the view's question, context and ideal answer restored."""
    out_dir = start_stage(cfg.output_dir, (cfg, view_cfg))
    view, vstats = load_view(view_cfg)
    counts: dict = dict(vstats)
    for level, path in cfg.fake_files().items():
        fakes = read_jsonl(path, required=["data_index", "fake_answer"], allow_empty=True)
        restored, c = restore_context(fakes, view, source=path, strict=not cfg.skip_mismatched)
        write_jsonl_atomic(out_dir / fakes_with_context_file(level), restored)
        counts.update({f"{level}_{k}": v for k, v in c.items()})
        counts[f"{level}_read"] = len(fakes)
    return finish_stage(out_dir, (cfg, view_cfg), counts)
