"""The one resumable per-sample runner: every stage that produces one record per input item (evaluation,
hard fakes, teacher pairs, NQ retrieval) appends its records through here.

Rules, the same for every stage:

* Records are appended to a JSON-lines file as each chunk of items finishes (flushed and fsync'd), so a crash
  loses at most the chunk being worked on.
* Every record carries its item's key (a field, ``index`` by default); ``resume=True`` keeps the records on disk
  and works only on the items whose key is not there.  A torn last line left by a crash is dropped.
* Next to the file, ``<file>.fingerprint.json`` records what the records depend on (model, adapter, dtype,
  backend, prompt settings, data file hash ...).  Resuming with a different fingerprint is refused with one
  line naming what differs, so two different runs are never mixed in one file.
* ``check(record, item)`` lets a stage verify a kept record against its item (e.g. the same question text).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from aligner.core.io import DataError, ResumableJsonlWriter, file_digest, read_json, write_json_atomic

logger = logging.getLogger(__name__)

FINGERPRINT_SUFFIX = ".fingerprint.json"


class RunMismatchError(DataError):
    """A resumed output file was written by a different run."""


def fingerprint_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + FINGERPRINT_SUFFIX)


def path_identity(path: str | os.PathLike | None) -> str | None:
    """A model, adapter or data path as it identifies a run: absolute when it is a local path, else as given
    (a hub id)."""
    if path is None:
        return None
    p = Path(path).expanduser()
    return str(p.resolve()) if p.exists() else str(path)


def data_fingerprint(path: str | os.PathLike | None) -> str | None:
    """sha256 of a data file, or of a data folder's files (names and digests, e.g. a downloaded snapshot of a hub
    dataset); None for hub datasets or no file."""
    if path is None or not Path(path).exists():
        return None
    path = Path(path)
    if path.is_file():
        return file_digest(path)
    digests = [f"{f.relative_to(path).as_posix()}:{file_digest(f)}" for f in sorted(path.rglob("*")) if f.is_file()]
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


def _normalised(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def check_fingerprint(path: Path, fingerprint: dict | None, resume: bool) -> None:
    """Refuse to resume ``path`` (``resume``: its records are kept) when its stored fingerprint differs from
    ``fingerprint``; store the fingerprint otherwise."""
    if fingerprint is None:
        return
    fp_file = fingerprint_path(path)
    current = _normalised(fingerprint)
    if resume and fp_file.is_file():
        stored = read_json(fp_file)
        diff = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
        if diff:
            shown = "; ".join(f"{k}: {current.get(k)!r} now, {stored.get(k)!r} in the file" for k in diff[:3])
            raise RunMismatchError(path, f"was written by a different run ({shown}); pass another --run_name "
                                         "or --output_dir, or delete the file to start over")
    elif resume:
        logger.warning("%s has no %s (written by an older version); resuming without the run check", path,
                       FINGERPRINT_SUFFIX)
    write_json_atomic(fp_file, current)


def _as_chunks(items: Sequence, chunk: int | Callable[[Sequence], Iterable[Sequence]]) -> Iterable[Sequence]:
    if callable(chunk):
        return chunk(items)
    size = max(1, int(chunk))
    return (items[lo: lo + size] for lo in range(0, len(items), size))


def run_per_sample(path: str | os.PathLike, items: Sequence, make_records: Callable[[list], list[dict]], *,
                   key_of: Callable[[Any], Any], key: str = "index", chunk: int | Callable = 64,
                   resume: bool = False, fingerprint: dict | None = None,
                   check: Callable[[dict, Any], str | None] | None = None, desc: str = "samples",
                   unit: str = "sample", progress: bool = True, keep_records: bool = True) -> list[dict]:
    """Make one record per item of ``items`` into ``path`` (see the module docstring); returns the records of
    ``items`` in their order, those kept from an earlier run included (``keep_records=False``: none, and only the
    keys are held in memory, for outputs too large to hold, e.g. the full NQ RAG set).

    ``make_records(chunk_items)`` returns one record per item, in order; the runner sets ``record[key]``.
    ``chunk`` is a number of items or a function cutting the pending items into chunks.  ``check`` returns an
    error message when a kept record does not belong to its item.
    """
    from tqdm.auto import tqdm

    path = Path(path)
    existed = path.exists()
    by_key = {key_of(it): it for it in items}

    def check_kept(lineno: int, rec: dict) -> None:
        item = by_key.get(rec.get(key))
        problem = check(rec, item) if item is not None and check is not None else None
        if problem:
            raise RunMismatchError(path, f"record {rec.get(key)!r}: {problem}; it was written for other "
                                         "data. Delete it or run without --resume", lineno)

    # The records themselves first (the most specific message), then what they were made with.
    with ResumableJsonlWriter(path, key=lambda r: r.get(key), resume=resume, keep_records=keep_records,
                              on_existing=check_kept) as writer:
        check_fingerprint(path, fingerprint, resume and existed)
        todo = [it for it in items if key_of(it) not in writer.done]
        if len(todo) < len(items):
            logger.info("%s: %d of %d %ss already done, resuming", path, len(items) - len(todo), len(items), unit)
        bar = tqdm(total=len(items), initial=len(items) - len(todo), desc=desc, unit=unit, disable=not progress)
        for part in _as_chunks(todo, chunk):
            part = list(part)
            records = make_records(part)
            if len(records) != len(part):
                raise RuntimeError(f"{desc}: {len(records)} records for {len(part)} items")
            for it, rec in zip(part, records):
                rec[key] = key_of(it)
            writer.extend(records)
            bar.update(len(part))
        bar.close()
        kept = {r.get(key): r for r in writer.records}
    return [kept[k] for k in (key_of(it) for it in items) if k in kept]


class OutputExistsError(DataError):
    """A per-sample file of an earlier run is there and neither resuming nor overwriting was asked for."""


def refuse_to_overwrite(path: str | os.PathLike, resume: bool, overwrite: bool) -> None:
    """An existing per-sample file is resumed (``resume``: the fingerprint check decides) or replaced on purpose
    (``overwrite``: it and its fingerprint are deleted now), never silently overwritten: otherwise a one-line
    ``OutputExistsError``.  Evaluation stages call it before ``run_per_sample``."""
    path = Path(path)
    if resume or not path.is_file() or path.stat().st_size == 0:
        return
    if not overwrite:
        raise OutputExistsError(path, "holds the records of an earlier run; pass --resume to continue it (checked "
                                      "against its fingerprint) or --overwrite to start afresh")
    logger.info("%s: overwriting the earlier run's records (--overwrite)", path)
    path.unlink()
    fingerprint_path(path).unlink(missing_ok=True)
