"""Checks every benchmark applies to its per-sample records before they are written: no silent wrong numbers.

* A non-finite score (a NaN or infinite log-prob, judge probability, similarity or BERTScore) stops the run
  with one line naming the row: an argmax over a NaN depends on the order of the choices, and a NaN
  faithfulness compared with a threshold counts as "not hallucinated".  Nothing of the chunk holding it is
  written, so a fixed run (another dtype, another model) can resume from the rows before it.
* Empty generations are kept in the detailed files (they are answers, and score as such) and counted in every
  metrics file as ``n_empty``.
* Degenerate answers (more than half empty, or more than half one and the same text) are named in the metrics
  file (``degenerate_outputs``) and the reports print the note beside the numbers they affect.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from aligner.core.io import AlignerError
from aligner.data.sft import different_question


class NonFiniteScoreError(AlignerError, ValueError):
    """A score of one row is NaN or infinite."""


def _bad(value) -> bool:
    if value is None or isinstance(value, bool):
        return False
    if isinstance(value, (list, tuple)):
        return any(_bad(v) for v in value)
    try:
        return not math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def require_finite(records: Iterable[dict], fields: Sequence[str], what: str, key: str = "index") -> None:
    """Raise ``NonFiniteScoreError`` at the first record whose ``fields`` hold a NaN or an infinity (lists are
    looked into; None is "not computed" and passes)."""
    for rec in records:
        for f in fields:
            if _bad(rec.get(f)):
                question = rec.get("question")
                shown = f" (question {str(question)[:60]!r})" if question is not None else ""
                raise NonFiniteScoreError(
                    f"{what}: row {key}={rec.get(key)!r}{shown} has a non-finite {f} ({rec.get(f)!r}); stopped "
                    "before writing it. Check the model and its dtype (fp16 overflows give inf/NaN), then "
                    "--resume")


def all_rows(limit: int | None) -> int:
    """An evaluation's ``--limit``: the first N rows; 0 or -1 means all of them (the study's ``if limit > 0``).  Any
    other negative number is a mistake (``ValueError``), never "all" (the command line rejects it first:
    ``aligner.core.setting_checks``)."""
    if limit is not None and limit < -1:
        raise ValueError(f"--limit {limit}: give a number of rows N >= 1, or 0 or -1 for all of them")
    return -1 if limit is None or limit <= 0 else limit


def is_empty(text) -> bool:
    return not str(text or "").strip()


def count_empty(records: Iterable[dict], field: str = "generated") -> int:
    """How many records hold an empty (or whitespace-only) generation."""
    return sum(1 for r in records if is_empty(r.get(field)))


def _quoted(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= width else text[:width - 3] + "...")


def degenerate_outputs(texts: Sequence, field: str = "generated") -> dict | None:
    """Whether a run's answers are degenerate: None when fine, else what a metrics file records under
    ``"degenerate"`` and the reports print beside the numbers::

        {"field": "generated", "n": 50, "n_empty": 50, "n_distinct": 1, "top": "no", "top_count": 50,
         "note": "all 50 answers identical: 'no'"}

    Degenerate = more than half of the answers empty (whitespace only), or more than half one and the same
    non-empty answer (compared after stripping).  ``top`` is the most frequent non-empty answer (the first of
    equals, as they came; "" and 0 when all are empty); the note says the worse of the two: "all N answers empty", "K of N answers identical: '<text>'".
    ``texts`` holds strings (None counts as empty); an empty list is not degenerate."""
    answers = [str(t or "").strip() for t in texts]
    n = len(answers)
    if n == 0:
        return None
    counts: dict[str, int] = {}
    for a in answers:
        counts[a] = counts.get(a, 0) + 1
    n_empty = counts.get("", 0)
    filled = {a: c for a, c in counts.items() if a}
    top, top_count = max(filled.items(), key=lambda kv: kv[1]) if filled else ("", 0)
    if max(n_empty, top_count) * 2 <= n:
        return None
    if n_empty >= top_count:
        note = f"all {n} answers empty" if n_empty == n else f"{n_empty} of {n} answers empty"
    else:
        shown = _quoted(top)
        note = (f"all {n} answers identical: {shown}" if top_count == n
                else f"{top_count} of {n} answers identical: {shown}")
    return {"field": field, "n": n, "n_empty": n_empty, "n_distinct": len(counts), "top": top,
            "top_count": top_count, "note": note}



def different_answer(record: dict, question: str, answer: str) -> str | None:
    """The resume check of a judging phase: why ``record`` does not judge ``answer`` to ``question`` (None when it
    does)."""
    problem = different_question(record, question)
    if problem is None and record.get("generated") != answer:
        problem = f"judges another answer ({str(record.get('generated'))[:60]!r}) than the one to judge now"
    return problem
