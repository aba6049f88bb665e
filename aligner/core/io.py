"""Data I/O: validated JSONL/JSON/CSV/parquet reading, atomic writes, append-with-resume.

Every reader reports problems as ``DataError`` naming the file and the 1-based line (or row)
number, or, when the caller asks for ``skip_invalid=True``, skips the line, counts it and logs
the count once.  Nothing here returns a silently shortened dataset.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class AlignerError(Exception):
    """A problem the user can fix (bad input, a missing file or model, an unreachable hub, a wrong setting): the
    scripts end with its one-line message instead of a traceback (``aligner.core.cli.run_cli``)."""


class DataError(AlignerError, ValueError):
    """A problem with an input file; the message always names the file and, when known, the line."""

    def __init__(self, path: str | os.PathLike, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


@dataclass
class ReadStats:
    """Filled by the readers when given: how many records were kept and which lines were skipped."""

    n_read: int = 0
    n_skipped: int = 0
    skipped_lines: list[int] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


#: what a reader may expect of a field: a type or a tuple of types (``type(None)`` for null)
FieldTypes = dict[str, type | tuple[type, ...]]

_TYPE_WORDS = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list",
               dict: "an object", type(None): "null"}


def _type_words(expected: type | tuple[type, ...]) -> str:
    kinds = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(_TYPE_WORDS.get(k, k.__name__) for k in kinds)


def _shown_value(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def check_types(record: dict, types: FieldTypes, path: str | os.PathLike, line: int | None) -> None:
    """Each field of ``types`` that the record holds has one of its types (an int is no string; a bool no int); a
    ``DataError`` names the file, the line and the field otherwise."""
    for key, expected in types.items():
        if key not in record:
            continue
        value = record[key]
        kinds = expected if isinstance(expected, tuple) else (expected,)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok:
            raise DataError(path, f"field '{key}' must be {_type_words(expected)}, got {type(value).__name__} "
                                  f"{_shown_value(value)}", line)


def _validate(record: Any, required: Sequence[str], path: str | os.PathLike, line: int,
              allow_empty: bool, types: FieldTypes | None = None) -> None:
    if not isinstance(record, dict):
        raise DataError(path, f"expected a JSON object, got {_type_words(type(record))}", line)
    missing = [k for k in required if k not in record]
    if missing:
        raise DataError(path, f"missing required field(s) {missing}", line)
    if types:
        check_types(record, types, path, line)
    if not allow_empty:
        empty = [k for k in required if record[k] is None or (isinstance(record[k], str) and not record[k].strip())]
        if empty:
            raise DataError(path, f"empty value for required field(s) {empty}", line)


def json_error(exc: json.JSONDecodeError, text: str) -> str:
    """Where and why ``text`` (one line) is not JSON: the column of the error, and whether the line ends there (a
    line cut short, as a crash or a truncated copy leaves it)."""
    body = text.rstrip("\r\n")
    cut = exc.pos >= len(body.rstrip()) or exc.msg.startswith("Unterminated string")
    what = exc.msg if exc.msg.endswith(" at") else exc.msg + " at"
    return (f"invalid JSON: {what} column {exc.pos + 1} of {len(body)}"
            + (f" (the line ends at column {len(body)}: cut short?)" if cut else ""))


def open_text(path: str | os.PathLike):
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


def _array_instead(path: Path, lineno: int) -> DataError:
    return DataError(path, "this file is one JSON array ('[' ...), but JSON lines are expected here: one object per "
                           "line (convert it with: jq -c '.[]' FILE > FILE.jsonl)", lineno)


def iter_json_lines(path: str | os.PathLike, check: Callable[[Any, Path, int], None] | None = None, *,
                    skip_invalid: bool = False, on_skip: Callable[[DataError, int], None] | None = None
                    ) -> Iterator[tuple[int, Any]]:
    """(line number, record) for each non-blank line of a JSON-lines file (``.gz`` too).

    A line that is not JSON, or that ``check(record, path, line)`` rejects with a ``DataError``, stops the read
    with that error (file, line and column), or with ``skip_invalid`` is passed to ``on_skip`` and left out.  A
    file that is one JSON array is said to be one (it is no malformed line to skip).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    first = True
    with open_text(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            starts_array, first = first and raw.lstrip().startswith("["), False
            try:
                try:
                    record = json.loads(raw.rstrip("\r\n"))  # a cut line then fails where it ends, not on line 2
                except json.JSONDecodeError as exc:
                    if starts_array:
                        raise _array_instead(path, lineno) from None
                    raise DataError(path, json_error(exc, raw), lineno) from None
                if starts_array and isinstance(record, list):
                    raise _array_instead(path, lineno)
                if check is not None:
                    check(record, path, lineno)
            except DataError as err:
                if not skip_invalid or starts_array:
                    raise
                if on_skip is not None:
                    on_skip(err, lineno)
                continue
            yield lineno, record


def iter_jsonl(path: str | os.PathLike, required: Sequence[str] = (), *, skip_invalid: bool = False,
               allow_empty: bool = False, stats: ReadStats | None = None,
               types: FieldTypes | None = None) -> Iterator[dict]:
    """Yield the records of a JSON-lines file, validating each against ``required`` fields and ``types``.

    Blank lines are ignored.  A malformed line raises ``DataError`` with its line number, or is
    skipped and counted in ``stats`` when ``skip_invalid`` is true.
    """
    stats = stats if stats is not None else ReadStats()

    def skipped(err: DataError, lineno: int) -> None:
        stats.n_skipped += 1
        stats.skipped_lines.append(lineno)
        stats.reasons.append(str(err))

    def check(record, where, lineno):
        _validate(record, required, where, lineno, allow_empty, types)

    for _, record in iter_json_lines(path, check, skip_invalid=skip_invalid, on_skip=skipped):
        stats.n_read += 1
        yield record
    if stats.n_skipped:
        shown = ", ".join(map(str, stats.skipped_lines[:10]))
        more = " ..." if stats.n_skipped > 10 else ""
        logger.warning("%s: skipped %d malformed line(s) (lines %s%s)", path, stats.n_skipped, shown, more)


def read_jsonl(path: str | os.PathLike, required: Sequence[str] = (), *, skip_invalid: bool = False,
               allow_empty: bool = False, limit: int | None = None,
               stats: ReadStats | None = None, types: FieldTypes | None = None) -> list[dict]:
    """Read a JSON-lines file into a list (see ``iter_jsonl``); ``limit`` < 0 or None means all."""
    out: list[dict] = []
    if limit is not None and limit == 0:
        return out
    for rec in iter_jsonl(path, required, skip_invalid=skip_invalid, allow_empty=allow_empty, stats=stats,
                          types=types):
        out.append(rec)
        # stop before reading (and validating) the line after the last one wanted
        if limit is not None and limit >= 0 and len(out) >= limit:
            break
    return out


def read_records(path: str | os.PathLike, required: Sequence[str] = (), *, skip_invalid: bool = False,
                 allow_empty: bool = False, limit: int | None = None,
                 stats: ReadStats | None = None, types: FieldTypes | None = None) -> list[dict]:
    """Read records from .jsonl, .json (a JSON array, or JSON lines as HaluEval ships it), .csv or .parquet."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    suffix = path.suffix.lower()
    if suffix == ".json":
        with path.open("r", encoding="utf-8") as fh:
            head = fh.read(1 << 16).lstrip()
        if head.startswith("["):
            rows = read_json(path)
            return _validate_rows(rows, path, required, skip_invalid, allow_empty, limit, stats, "element", types)
        return read_jsonl(path, required, skip_invalid=skip_invalid, allow_empty=allow_empty, limit=limit,
                          stats=stats, types=types)
    if suffix == ".csv":
        return read_csv(path, required, limit=limit)
    if suffix == ".parquet":
        import pandas as pd

        rows = pd.read_parquet(path).to_dict(orient="records")
        return _validate_rows(rows, path, required, skip_invalid, allow_empty, limit, stats, "row", types)
    return read_jsonl(path, required, skip_invalid=skip_invalid, allow_empty=allow_empty, limit=limit,
                      stats=stats, types=types)


def _validate_rows(rows: Any, path: Path, required: Sequence[str], skip_invalid: bool, allow_empty: bool,
                   limit: int | None, stats: ReadStats | None, unit: str,
                   types: FieldTypes | None = None) -> list[dict]:
    if not isinstance(rows, list):
        raise DataError(path, "expected a list of records")
    stats = stats if stats is not None else ReadStats()
    out = []
    for i, rec in enumerate(rows, start=1):
        if limit is not None and limit >= 0 and len(out) >= limit:
            break
        try:
            _validate(rec, required, path, i, allow_empty, types)
        except DataError as err:
            if not skip_invalid:
                raise DataError(path, str(err).split(": ", 1)[-1] + f" ({unit} {i})", i) from None
            stats.n_skipped += 1
            stats.skipped_lines.append(i)
            continue
        stats.n_read += 1
        out.append(rec)
    return out


@contextlib.contextmanager
def open_csv(path: str | os.PathLike, required_columns: Sequence[str] = ()) -> Iterator[csv.DictReader]:
    """A ``csv.DictReader`` over a CSV with a header; a missing file or column is an error naming the file (and
    the columns the header has)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    with path.open("r", encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in required_columns if c not in header]
        if missing:
            raise DataError(path, f"missing column(s) {missing}; the header has {header}", 1)
        yield reader


def read_csv(path: str | os.PathLike, required_columns: Sequence[str] = (), *, limit: int | None = None) -> list[dict]:
    """Read a CSV with a header into dicts; a missing column is an error naming the file and the columns."""
    with open_csv(path, required_columns) as reader:
        rows = []
        for row in reader:
            if limit is not None and limit >= 0 and len(rows) >= limit:
                break
            rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------------

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    A crash leaves either the old file or the new one, never half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """``atomic_write_bytes`` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, default=_json_default) + "\n")


def write_jsonl_atomic(path: str | os.PathLike, records: Iterable[dict]) -> Path:
    lines = [json.dumps(r, ensure_ascii=False, default=_json_default) for r in records]
    return atomic_write_text(path, "".join(line + "\n" for line in lines))


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(path, f"invalid JSON at column {exc.colno} ({exc.msg})", exc.lineno) from None


def _json_default(obj: Any) -> Any:
    # numpy / torch scalars show up in metric dicts; store them as plain numbers.
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# ---------------------------------------------------------------------------------------------
# Append-with-resume for per-sample outputs
# ---------------------------------------------------------------------------------------------

class ResumableJsonlWriter:
    """Per-sample output file that is appended to as work is done and can be resumed after a crash.

    With ``resume=True`` the existing records are loaded (``records``, and their keys in ``done``);
    a torn last line, left by a crash in the middle of a write, is dropped and the file truncated to
    the last complete record.  With ``resume=False`` an existing file is started afresh.
    Every ``append`` is flushed and fsync'd so a crash loses at most the record being written.
    """

    def __init__(self, path: str | os.PathLike, key: str | Callable[[dict], Any] | None = None,
                 resume: bool = False, fsync: bool = True, keep_records: bool = True,
                 on_existing: Callable[[int, dict], None] | None = None):
        """``keep_records=False``: only the keys are kept in memory (``records`` stays empty), for outputs too
        large to hold; ``on_existing(line, record)`` sees each record of a resumed file as it is read."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._key = (lambda r: r[key]) if isinstance(key, str) else key
        self.fsync = fsync
        self.keep_records = keep_records
        self.on_existing = on_existing
        self.records: list[dict] = []
        self.done: set = set()
        if resume and self.path.exists():
            self._load_existing()
            mode = "a"
        else:
            mode = "w"
        self._fh = self.path.open(mode, encoding="utf-8")

    def _load_existing(self) -> None:
        data = self.path.read_bytes()
        good_end = 0
        pos = 0
        lineno = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            if nl == -1:
                logger.warning("%s: dropping a torn last line (%d bytes) left by an interrupted run",
                               self.path, len(data) - pos)
                break
            lineno += 1
            raw = data[pos:nl]
            if raw.strip():
                try:
                    rec = json.loads(raw)
                except json.JSONDecodeError:
                    if data.find(b"\n", nl + 1) == -1 and not data[nl + 1:].strip():
                        logger.warning("%s: dropping a torn last line %d", self.path, lineno)
                        break
                    raise DataError(self.path, "invalid JSON in an earlier output; cannot resume safely",
                                    lineno) from None
                if self.on_existing is not None:
                    self.on_existing(lineno, rec)
                if self.keep_records:
                    self.records.append(rec)
                if self._key is not None:
                    self.done.add(self._key(rec))
            pos = nl + 1
            good_end = pos
        if good_end != len(data):
            with self.path.open("r+b") as fh:
                fh.truncate(good_end)

    def append(self, record: dict) -> None:
        self._fh.write(json.dumps(record, ensure_ascii=False, default=_json_default) + "\n")
        self._fh.flush()
        if self.fsync:
            os.fsync(self._fh.fileno())
        if self.keep_records:
            self.records.append(record)
        if self._key is not None:
            self.done.add(self._key(record))

    def extend(self, records: Iterable[dict]) -> None:
        for rec in records:
            self._fh.write(json.dumps(rec, ensure_ascii=False, default=_json_default) + "\n")
            if self.keep_records:
                self.records.append(rec)
            if self._key is not None:
                self.done.add(self._key(rec))
        self._fh.flush()
        if self.fsync:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> ResumableJsonlWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


LARGE_FILE = 256 << 20  # bigger inputs (NQ shards, model weights) get a cheap fingerprint, not a full hash


def file_digest(path: Path) -> str:
    """sha256 of the file; for files over LARGE_FILE, sha256 of (size, first and last MiB) instead, so a
    re-run does not read tens of GB of Natural Questions shards just to decide it can skip a stage."""
    size = path.stat().st_size
    if size <= LARGE_FILE:
        return sha256_file(path)
    h = hashlib.sha256(f"large:{size}:".encode())
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 20))
        fh.seek(size - (1 << 20))
        h.update(fh.read(1 << 20))
    return h.hexdigest()
