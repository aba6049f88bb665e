"""Synthetic wrong answers ("fakes") for the curriculum: easy (another item's answer), hard (a poisoned
generation by the instruct model, then cleaned), and the context restore that joins fakes back to the
unified SFT view by ``data_index``.  Medium fakes (NER swaps) live in ``aligner.ner``.

Fake record: {data_index, question, ideal_answer, fake_answer, type}.
"""

from __future__ import annotations

import logging
import random
import re
from collections import Counter
from collections.abc import Sequence

from aligner.core.io import DataError, ResumableJsonlWriter
from aligner.prompts import (
    POISON_ANSWER_MARKERS,
    POISON_LOOSE_MARKERS,
    POISON_PROMPT_TEMPLATES,
    POISON_TYPES,
    poison_prompt,
)

logger = logging.getLogger(__name__)

EASY_TYPE = "easy_mismatch"
MEDIUM_TYPE = "medium_ner_swap"


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

def make_easy_fakes(view: Sequence[dict], seed: int = 42, max_tries: int = 20) -> tuple[list[dict], Counter]:
    """One easy fake per item: the ideal answer of a different, randomly drawn item whose answer differs.

    Draws are seeded; after ``max_tries`` random draws the remaining items are scanned in a seeded order,
    so an item is only skipped (counted ``no_distinct_answer``) when every other answer equals its own.
    """
    rng = random.Random(seed)
    n = len(view)
    out: list[dict] = []
    counts: Counter = Counter()
    for i, item in enumerate(view):
        ideal = item["ideal_answer"]
        if not ideal or not ideal.strip():
            counts["empty_ideal"] += 1
            continue
        pick = None
        if n > 1:
            for _ in range(max_tries):
                j = (i + rng.randint(1, n - 1)) % n
                if not same_answer(view[j]["ideal_answer"], ideal) and view[j]["ideal_answer"].strip():
                    pick = j
                    break
            if pick is None:
                others = [j for j in range(n) if j != i]
                rng.shuffle(others)
                pick = next((j for j in others if view[j]["ideal_answer"].strip()
                             and not same_answer(view[j]["ideal_answer"], ideal)), None)
        if pick is None:
            counts["no_distinct_answer"] += 1
            continue
        out.append(fake_record(item, view[pick]["ideal_answer"], EASY_TYPE))
        counts["written"] += 1
    return out, counts


# ---------------------------------------------------------------------------------------------
# Hard fakes: poison prompts, generation, extraction, cleaning
# ---------------------------------------------------------------------------------------------

def poison_type_for(position: int, poison_types: Sequence[str] = POISON_TYPES) -> str:
    """The study's assignment: one poison type per item, cycling over the types by position."""
    return poison_types[position % len(poison_types)]


def truncate_context(context: str, max_chars: int | None) -> str:
    context = context or ""
    if max_chars is None or max_chars < 0 or len(context) <= max_chars:
        return context
    return context[:max_chars] + " ..."


class PoisonPrompter:
    """Builds poison prompts: per item a poison type (cycling) and one of the type's wordings (seeded)."""

    def __init__(self, poison_types: Sequence[str] = POISON_TYPES, seed: int = 42, max_context_chars: int | None = 4000,
                 prompt_format: str = "plain", chat_renderer=None):
        bad = [t for t in poison_types if t not in POISON_PROMPT_TEMPLATES]
        if bad:
            raise ValueError(f"unknown poison type(s) {bad}; use {list(POISON_PROMPT_TEMPLATES)}")
        if prompt_format not in ("plain", "chat"):
            raise ValueError("prompt_format must be plain or chat")
        if prompt_format == "chat" and chat_renderer is None:
            raise ValueError("prompt_format chat needs a chat renderer (LM.chat_prompt)")
        self.poison_types = list(poison_types)
        self.seed = seed
        self.max_context_chars = max_context_chars
        self.prompt_format = prompt_format
        self.chat_renderer = chat_renderer

    def variant_for(self, data_index: int, poison_type: str) -> int:
        # Seeded per item (not a running RNG) so a resumed run picks the same wording.
        return random.Random(f"{self.seed}:{data_index}").randrange(len(POISON_PROMPT_TEMPLATES[poison_type]))

    def create_poison_prompt(self, question: str, ideal_answer: str, poison_type: str, context: str = "",
                             data_index: int = 0) -> str:
        text = poison_prompt(question, ideal_answer, truncate_context(context, self.max_context_chars), poison_type,
                             self.variant_for(data_index, poison_type))
        if self.prompt_format == "chat":
            return self.chat_renderer([{"role": "user", "content": text}])
        return text

    def prompt_for(self, item: dict, position: int) -> tuple[str, str]:
        ptype = poison_type_for(position, self.poison_types)
        return ptype, self.create_poison_prompt(item["question"], item["ideal_answer"], ptype, item.get("context", ""),
                                                item["data_index"])


def extract_generated_answer(response: str) -> str:
    """The answer part of a generation: the text after an echoed answer header when there is one."""
    response = response or ""
    for marker in POISON_ANSWER_MARKERS:
        if marker in response:
            return response.rsplit(marker, 1)[-1].strip()
    for marker in POISON_LOOSE_MARKERS:
        if marker in response:
            return response.split(marker, 1)[-1].strip()
    return response.strip()


def generate_hard_fakes(lm, view: Sequence[dict], prompter: PoisonPrompter, writer: ResumableJsonlWriter,
                        batch_size: int = 16, max_new_tokens: int = 128, temperature: float = 0.7,
                        top_p: float = 0.9, seed: int = 42, progress: bool = True) -> Counter:
    """Generate one hard fake per item not yet in ``writer.done`` (keyed by data_index), in batches.

    Each batch is appended as soon as it is generated, so an interrupted run resumes where it stopped.
    Records carry the raw generation (``raw_output``) for auditing; cleaning is a separate step.
    """
    from tqdm.auto import tqdm

    counts: Counter = Counter()
    todo = [(pos, item) for pos, item in enumerate(view) if item["data_index"] not in writer.done]
    counts["already_done"] = len(view) - len(todo)
    bar = tqdm(total=len(todo), desc="hard fakes", disable=not progress, unit="item")
    for lo in range(0, len(todo), batch_size):
        batch = todo[lo: lo + batch_size]
        typed = [prompter.prompt_for(item, pos) for pos, item in batch]
        outs = lm.generate_until([p for _, p in typed], max_new_tokens=max_new_tokens, stop=None,
                                 temperature=temperature, top_p=top_p,
                                 seed=None if seed is None else seed + batch[0][0], progress=False)
        records = []
        for (_, item), (ptype, _), raw in zip(batch, typed, outs):
            rec = fake_record(item, extract_generated_answer(raw), f"hard_{ptype}")
            rec["raw_output"] = raw
            records.append(rec)
            counts[f"type_hard_{ptype}"] += 1
        writer.extend(records)
        counts["generated"] += len(records)
        bar.update(len(batch))
    bar.close()
    return counts


# Where an explanation or meta-comment begins ("Note: ...", "(Explanation: ...", "The flawed answer is ...",
# a new "Question:" block); the fake is everything before the first one.
_EXPLANATION_START = re.compile(
    r"[\s(\[]*\b(?:Note|Explanation|Reasoning|Rationale|Disclaimer|Justification)\s*:"
    r"|[\s(\[]*\b(?:The (?:flawed|incorrect|fake|causal|unverifiable|above) (?:answer|error|detail|claim)"
    r"|This (?:answer|response) (?:is|contains|introduces)|Answer generated)\b"
    r"|\n\s*(?:Question|Context|Correct Answer)\s*:",  # the model starting the template over
    re.IGNORECASE)
_LEADING_LABEL = re.compile(r"^\s*(?:\*\*)?(?:Flawed|Causal Error|Unverifiable|Speculative|Final|Fake|Incorrect)?"
                            r"\s*Answer(?:\*\*)?\s*:\s*", re.IGNORECASE)
_QUOTE_PAIRS = [('"', '"'), ("'", "'"), ("\u201c", "\u201d"), ("\u2018", "\u2019"), ("`", "`")]


def clean_fake_answer(text: str, ideal_answer: str | None = None, min_chars: int = 1) -> tuple[str | None, str]:
    """Clean a generated fake: drop a leading answer label, cut from the first explanation / "Note:" on,
    strip wrapping quotes and surrounding whitespace.

    Returns (cleaned, "ok") or (None, reason) with reason ``empty`` (nothing, or fewer than ``min_chars``
    characters, left) or ``copy_of_ideal`` (the same answer as the ideal one, up to case and punctuation).
    """
    s = (text or "").replace("\r\n", "\n")
    s = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "", s).strip()  # control characters
    s = _LEADING_LABEL.sub("", s, count=1)
    m = _EXPLANATION_START.search(s)
    if m:
        s = s[:m.start()]
    s = s.strip()
    changed = True
    while changed and len(s) >= 2:
        changed = False
        for a, b in _QUOTE_PAIRS:
            if len(s) >= 2 and s.startswith(a) and s.endswith(b):
                s = s[len(a):-len(b)].strip()
                changed = True
    s = re.sub(r"[ \t]+", " ", s).strip()
    if len(s) < max(1, min_chars) or not re.search(r"\w", s):
        return None, "empty"
    if ideal_answer is not None and same_answer(s, ideal_answer):
        return None, "copy_of_ideal"
    return s, "ok"


def clean_hard_fakes(records: Sequence[dict], min_chars: int = 1) -> tuple[list[dict], Counter]:
    """Cleaned copies of the records whose fake survives cleaning; counts by outcome."""
    kept: list[dict] = []
    counts: Counter = Counter()
    for rec in records:
        cleaned, reason = clean_fake_answer(rec.get("fake_answer", ""), rec.get("ideal_answer"), min_chars)
        counts[reason] += 1
        if cleaned is None:
            continue
        out = {k: v for k, v in rec.items() if k != "raw_output"}
        out["fake_answer"] = cleaned
        kept.append(out)
    return kept, counts


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
        out.append({"data_index": idx, "question": item["question"], "context": item["context"],
                    "ideal_answer": item["ideal_answer"], "fake_answer": fake["fake_answer"],
                    "type": fake.get("type", "unknown")})
        counts["restored"] += 1
    return out, counts
