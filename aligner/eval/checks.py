"""Checks every benchmark applies to its per-sample records before they are written: no silent wrong numbers.

* A non-finite score (a NaN or infinite log-prob, judge probability, similarity or BERTScore) stops the run
  with one line naming the row: an argmax over a NaN depends on the order of the choices, and a NaN
  faithfulness compared with a threshold counts as "not hallucinated".  Nothing of the chunk holding it is
  written, so a fixed run (another dtype, another model) can resume from the rows before it.
* Empty generations are kept in the detailed files (they are answers, and score as such) and counted in every
  metrics file as ``n_empty``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from aligner.core.io import AlignerError


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
    """An evaluation's ``--limit``: the first N rows; 0 or a negative number means all of them (the study's
    ``if limit > 0``)."""
    return -1 if limit is None or limit <= 0 else limit


def is_empty(text) -> bool:
    return not str(text or "").strip()


def count_empty(records: Iterable[dict], field: str = "generated") -> int:
    """How many records hold an empty (or whitespace-only) generation."""
    return sum(1 for r in records if is_empty(r.get(field)))
