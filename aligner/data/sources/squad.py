"""SQuAD v2 CSV: answers cells in any of the formats found in the wild (NumPy reprs, JSON, dicts), and the
seeded answerable / unanswerable sample."""

from __future__ import annotations

import ast
import csv
import json
import logging
import os
import re
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


#: strings pandas' ``read_csv`` turns into NaN by default (the study read its CSV with pandas, and ``str(NaN)``
#: is "nan", which its parser takes for "no answer")
PANDAS_NA_STRINGS = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                               "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})
# The study's repair of NumPy reprs (create_squad_training.py:28): the group stops at the first ")", so an
# answer containing ")" leaves "array(" in the string, literal_eval fails and the row counts as unanswerable.
_STUDY_ARRAY = re.compile(r"array\(([^)]+)\s*,\s*dtype=[^)]+\)")


def study_answer_texts(cell) -> list:
    """The answer texts the study's parser (create_squad_training.py:22-41) finds in a cell, read as pandas reads
    it: the regex repair, ``ast.literal_eval``, and no answer for anything that fails (its ``except`` branch).
    Used with ``--study_compat`` only: it misreads every NumPy-repr answer containing ")"."""
    s = "nan" if cell is None or str(cell) in PANDAS_NA_STRINGS else str(cell)
    cleaned = _STUDY_ARRAY.sub(r"\1", s)
    if not cleaned or cleaned == "nan":
        return []
    try:
        value = ast.literal_eval(cleaned)
    except Exception:  # the study's fallback, whatever failed
        return []
    if not isinstance(value, dict):
        raise AnswersParseError(f"the study's parser reads a {type(value).__name__}, not a dict (its code stops here)")
    return list(value.get("text", []) or [])


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
    #: rows whose answerable/unanswerable class differs between this project's parser and the study's
    parsers_disagree: int = 0


def _row_answers(row: dict, path: Path, line: int, study_parser: bool, stats: SquadReadStats
                 ) -> tuple[list[str], list[int]]:
    """(answer texts, starts) of a row: this project's parser, or the study's with ``study_parser``; the rows
    where the two disagree on answerable vs unanswerable are counted either way."""
    cell = row.get("answers")
    try:
        parsed = parse_answers_cell(cell)
        ours = [t.strip() for t in parsed["text"] if t and t.strip()]
    except AnswersParseError as exc:
        if not study_parser:
            raise DataError(path, f"cannot read the answers cell ({exc}): {str(cell)[:80]!r}", line) from None
        parsed, ours = {"answer_start": []}, None
    try:
        theirs = study_answer_texts(cell)
    except AnswersParseError as exc:
        if study_parser:
            raise DataError(path, f"{exc}: {str(cell)[:80]!r}", line) from None
        theirs = None
    if ours is None or theirs is None or bool(ours) != bool(theirs):
        stats.parsers_disagree += 1
    if not study_parser:
        return ours, parsed["answer_start"][:len(ours)]
    return theirs, parsed["answer_start"][:len(theirs)] if ours == theirs else []


def read_squad_csv(path: str | os.PathLike, skip_invalid: bool = False, stats: SquadReadStats | None = None,
                   study_parser: bool = False) -> list[SquadRow]:
    """Rows of a SQuAD v2 CSV export (columns question, context, answers; id and title optional), in file order.

    A bad answers cell or an empty question/context raises ``DataError`` naming the file and the line the
    row starts on, or is skipped and counted with ``skip_invalid``.  ``study_parser`` (``--study_compat``) keeps
    every row as the study did (raw text, empty fields too) and classifies it with the study's parser.
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
            question, context = row.get("question") or "", row.get("context") or ""
            if not study_parser:
                question, context = question.strip(), context.strip()
            try:
                if not study_parser and (not question or not context):
                    raise DataError(path, "empty question or context", line)
                texts, starts = _row_answers(row, path, line, study_parser, stats)
            except DataError:
                if not skip_invalid:
                    raise
                stats.skipped += 1
                stats.skipped_lines.append(line)
                continue
            rows.append(SquadRow(id=str(row.get("id") or f"row{n}"), title=str(row.get("title") or ""),
                                 question=question, context=context, answers=texts, answer_starts=starts, line=line))
            stats.rows += 1
            if texts:
                stats.answerable += 1
            else:
                stats.unanswerable += 1
    if stats.skipped:
        logger.warning("%s: skipped %d bad row(s) (lines %s)", path, stats.skipped, stats.skipped_lines[:10])
    if stats.parsers_disagree:
        logger.warning("%s: the study's answers parser classifies %d row(s) differently from this project's (answers "
                       "containing ')' in NumPy reprs)", path, stats.parsers_disagree)
    return rows


def squad_sample_counts(n_answerable: int, n_unanswerable: int, available_answerable: int,
                        available_unanswerable: int) -> tuple[int, int]:
    """How many answerable and unanswerable rows to take (create_squad_training.py:58-67): the unanswerable
    count first (capped at what exists), the rest of the total answerable, and when the answerable pool runs
    short, more unanswerable rows up to the total.  A negative count takes the whole pool."""
    if n_answerable < 0 or n_unanswerable < 0:
        return (available_answerable if n_answerable < 0 else min(n_answerable, available_answerable),
                available_unanswerable if n_unanswerable < 0 else min(n_unanswerable, available_unanswerable))
    total = n_answerable + n_unanswerable
    n_unans = min(n_unanswerable, available_unanswerable)
    n_ans = min(total - n_unans, available_answerable)
    if n_ans == available_answerable:
        n_unans = min(total - n_ans, available_unanswerable)
    return n_ans, n_unans


def pandas_sample(pool: Sequence, n: int, seed: int) -> list:
    """``DataFrame.sample(n, random_state=seed)`` on rows in ``pool`` order: pandas draws
    ``RandomState(seed).choice(len, n, replace=False)``, which is ``RandomState(seed).permutation(len)[:n]``."""
    import numpy as np

    if n <= 0:
        return []
    order = np.random.RandomState(seed).permutation(len(pool))[:n]
    return [pool[i] for i in order]


def sample_squad(rows: Sequence[SquadRow], n_answerable: int, n_unanswerable: int, seed: int = 42,
                 whole_file_when_small: bool = False) -> tuple[list[SquadRow], dict]:
    """The study's sample (create_squad_training.py:44-90): the answerable and unanswerable pools in file
    order, each sampled as pandas ``.sample(n, random_state=seed)`` does, concatenated unanswerable first and
    shuffled with ``.sample(frac=1, random_state=seed)``.  ``whole_file_when_small`` (the study's validation
    script): a file of at most n_answerable + n_unanswerable rows is taken whole, shuffled in file order."""
    ans = [r for r in rows if r.has_answer]
    unans = [r for r in rows if not r.has_answer]
    total = n_answerable + n_unanswerable
    if whole_file_when_small and n_answerable >= 0 and n_unanswerable >= 0 and len(rows) <= total:
        both = pandas_sample(list(rows), len(rows), seed)
        n_ans, n_unans = len(ans), len(unans)
    else:
        n_ans, n_unans = squad_sample_counts(n_answerable, n_unanswerable, len(ans), len(unans))
        both = pandas_sample(pandas_sample(unans, n_unans, seed) + pandas_sample(ans, n_ans, seed),
                             n_ans + n_unans, seed)
    info = {"available_answerable": len(ans), "available_unanswerable": len(unans),
            "sampled_answerable": n_ans, "sampled_unanswerable": n_unans}
    if n_ans < n_answerable:
        logger.warning("asked for %d answerable rows, %d taken (%d available)", n_answerable, n_ans, len(ans))
    if n_unans < n_unanswerable:
        logger.warning("asked for %d unanswerable rows, %d taken (%d available)", n_unanswerable, n_unans,
                       len(unans))
    return both, info
