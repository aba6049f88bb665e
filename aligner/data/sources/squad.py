"""SQuAD v2 CSV: answers cells in any of the formats found in the wild (NumPy reprs, JSON, dicts), and the
seeded answerable / unanswerable sample."""

from __future__ import annotations

import ast
import csv
import json
import logging
import os
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.io import DataError, open_csv

logger = logging.getLogger(__name__)

SQUAD_REQUIRED_COLUMNS = ("question", "context", "answers")


# Calls allowed inside an answers cell: NumPy array constructors and scalar wrappers (numpy 2 reprs
# show ``np.int32(5)``), each returning its first argument unchanged.
_ALLOWED_CALLS = {"array", "asarray", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                  "float16", "float32", "float64", "str_", "bytes_", "object_", "bool_", "list", "tuple"}


class AnswersParseError(ValueError):
    pass


def _literal(node: ast.AST):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        val = _literal(node.operand)
        return -val if isinstance(node.op, ast.USub) else val
    if isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name not in _ALLOWED_CALLS:
            raise AnswersParseError(f"call to {name!r} not allowed")
        if not node.args:
            return []
        return _literal(node.args[0])
    if isinstance(node, ast.Name) and node.id in ("nan", "None"):
        return None
    raise AnswersParseError(f"unexpected {type(node).__name__}")


def parse_answers_cell(cell) -> dict:
    """``{'text': [...], 'answer_start': [...]}`` from a SQuAD answers cell: NumPy repr, Python literal or JSON.

    An empty cell (or NaN) means no answer.  Anything else that cannot be read raises ``AnswersParseError``.
    """
    if cell is None:
        return {"text": [], "answer_start": []}
    if isinstance(cell, dict):
        value = cell
    else:
        s = str(cell).strip()
        if not s or s.lower() == "nan":
            return {"text": [], "answer_start": []}
        try:
            value = json.loads(s)
        except json.JSONDecodeError:
            try:
                tree = ast.parse(s, mode="eval")
            except SyntaxError as exc:
                raise AnswersParseError(f"not a dict literal ({exc.msg})") from None
            value = _literal(tree.body)
    if not isinstance(value, dict) or "text" not in value:
        raise AnswersParseError("expected a dict with a 'text' entry")
    texts = value.get("text")
    starts = value.get("answer_start", [])
    texts = [texts] if isinstance(texts, str) else list(texts or [])
    starts = [starts] if isinstance(starts, (int, float)) else list(starts or [])
    if not all(isinstance(t, str) for t in texts):
        raise AnswersParseError("answer texts must be strings")
    return {"text": texts, "answer_start": [int(x) for x in starts if x is not None]}


@dataclass
class SquadRow:
    id: str
    title: str
    question: str
    context: str
    answers: list[str]
    answer_starts: list[int]
    line: int

    @property
    def has_answer(self) -> bool:
        return bool(self.answers)


@dataclass
class SquadReadStats:
    rows: int = 0
    answerable: int = 0
    unanswerable: int = 0
    skipped: int = 0
    skipped_lines: list[int] = field(default_factory=list)


def read_squad_csv(path: str | os.PathLike, skip_invalid: bool = False, stats: SquadReadStats | None = None
                   ) -> list[SquadRow]:
    """Rows of a SQuAD v2 CSV export (columns question, context, answers; id and title optional).

    A bad answers cell or an empty question/context raises ``DataError`` naming the file and the line the
    row starts on, or is skipped and counted with ``skip_invalid``.
    """
    path = Path(path)
    stats = stats if stats is not None else SquadReadStats()
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    rows: list[SquadRow] = []
    with open_csv(path, SQUAD_REQUIRED_COLUMNS) as reader:
        start_line = reader.line_num + 1
        for n, row in enumerate(reader, start=1):
            line = start_line
            start_line = reader.line_num + 1
            try:
                question = (row.get("question") or "").strip()
                context = (row.get("context") or "").strip()
                if not question or not context:
                    raise DataError(path, "empty question or context", line)
                try:
                    parsed = parse_answers_cell(row.get("answers"))
                except AnswersParseError as exc:
                    cell = str(row.get("answers"))[:80]
                    raise DataError(path, f"cannot read the answers cell ({exc}): {cell!r}", line) from None
            except DataError:
                if not skip_invalid:
                    raise
                stats.skipped += 1
                stats.skipped_lines.append(line)
                continue
            texts = [t.strip() for t in parsed["text"] if t and t.strip()]
            rows.append(SquadRow(id=str(row.get("id") or f"row{n}"), title=str(row.get("title") or ""),
                                 question=question, context=context, answers=texts,
                                 answer_starts=parsed["answer_start"][:len(texts)], line=line))
            stats.rows += 1
            if texts:
                stats.answerable += 1
            else:
                stats.unanswerable += 1
    if stats.skipped:
        logger.warning("%s: skipped %d bad row(s) (lines %s)", path, stats.skipped, stats.skipped_lines[:10])
    return rows


def sample_squad(rows: Sequence[SquadRow], n_answerable: int, n_unanswerable: int, seed: int = 42
                 ) -> tuple[list[SquadRow], dict]:
    """Sample answerable and unanswerable rows separately (each capped at what is available; a negative
    count takes all), then shuffle the union with the same seed."""
    rng = random.Random(seed)
    ans = [r for r in rows if r.has_answer]
    unans = [r for r in rows if not r.has_answer]

    def take(pool, n):
        if n < 0 or n >= len(pool):
            return list(pool)
        return rng.sample(list(pool), n)

    picked_ans = take(ans, n_answerable)
    picked_unans = take(unans, n_unanswerable)
    both = picked_ans + picked_unans
    rng.shuffle(both)
    info = {"available_answerable": len(ans), "available_unanswerable": len(unans),
            "sampled_answerable": len(picked_ans), "sampled_unanswerable": len(picked_unans)}
    if len(picked_ans) < n_answerable:
        logger.warning("asked for %d answerable rows, only %d available", n_answerable, len(ans))
    if len(picked_unans) < n_unanswerable:
        logger.warning("asked for %d unanswerable rows, only %d available", n_unanswerable, len(unans))
    return both, info
