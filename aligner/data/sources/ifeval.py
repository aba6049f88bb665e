"""IFEval prompts (Zhou et al. 2023): the Hugging Face ``google/IFEval`` train split, or a local JSON-lines file
in the same schema (google-research's ``input_data.jsonl``): ``key``, ``prompt``, ``instruction_id_list`` and
``kwargs`` (one dict of arguments per instruction).

The hub rows carry every argument name of every checker, mostly null; the local file only the ones an
instruction takes.  Null arguments are dropped here, so both read the same (lm-eval's checkers drop them too).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from aligner.core.io import AlignerError, DataError, read_jsonl

logger = logging.getLogger(__name__)

HF_DATASET = "google/IFEval"
HF_SPLIT = "train"
FIELDS = ("key", "prompt", "instruction_id_list", "kwargs")


class IFEvalDataUnavailableError(AlignerError, RuntimeError):
    """The hub dataset could not be loaded (offline, no cache); the message says what to pass instead."""


@dataclass
class IFEvalItem:
    key: int
    prompt: str
    instruction_id_list: list[str]
    kwargs: list[dict]

    def doc(self) -> dict:
        """The row as lm-evaluation-harness's IFEval task hands it to ``process_results``."""
        return {"key": self.key, "prompt": self.prompt, "instruction_id_list": list(self.instruction_id_list),
                "kwargs": [dict(k) for k in self.kwargs]}


def parse_item(row: dict, where, line: int | None = None) -> IFEvalItem:
    """One validated row; a ``DataError`` naming ``where`` (and ``line``) otherwise."""
    missing = [f for f in FIELDS if f not in row]
    if missing:
        raise DataError(where, f"missing field(s) {', '.join(missing)}", line)
    key, prompt, ids, kwargs = (row[f] for f in FIELDS)
    if isinstance(key, bool) or not isinstance(key, int):
        raise DataError(where, f"'key' must be an integer, got {key!r}", line)
    if not isinstance(prompt, str) or not prompt.strip():
        raise DataError(where, f"key {key}: 'prompt' must be a non-empty string", line)
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise DataError(where, f"key {key}: 'instruction_id_list' must be a non-empty list of strings", line)
    if not isinstance(kwargs, list) or len(kwargs) != len(ids) or not all(isinstance(k, dict) for k in kwargs):
        raise DataError(where, f"key {key}: 'kwargs' must be a list of {len(ids)} objects (one per instruction)",
                        line)
    return IFEvalItem(key=key, prompt=prompt, instruction_id_list=list(ids),
                      kwargs=[{k: v for k, v in kw.items() if v is not None} for kw in kwargs])


def _unique(items: list[IFEvalItem], where) -> list[IFEvalItem]:
    seen: set[int] = set()
    for i, it in enumerate(items, start=1):
        if it.key in seen:
            raise DataError(where, f"key {it.key} appears twice", i)
        seen.add(it.key)
    return items


def data_from_file(path: str | os.PathLike, limit: int | None = None) -> list[IFEvalItem]:
    rows = read_jsonl(path, required=FIELDS, limit=None if limit is None or limit < 0 else limit)
    return _unique([parse_item(r, path, i) for i, r in enumerate(rows, start=1)], path)


def data_from_hub(limit: int | None = None, name: str = HF_DATASET) -> list[IFEvalItem]:
    try:
        import datasets

        ds = datasets.load_dataset(name, split=HF_SPLIT)
    except Exception as exc:  # offline, unreachable, no cache: all mean "use a local file"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise IFEvalDataUnavailableError(
            f"could not load the Hugging Face dataset '{name}' ({HF_SPLIT} split): {first}. Offline? Pass "
            "--data_path with IFEval's input_data.jsonl (e.g. ../shared/data/ifeval/input_data.jsonl)") from None
    if limit is not None and limit >= 0:
        ds = ds.select(range(min(limit, len(ds))))
    rows = list(ds)
    return _unique([parse_item(dict(r), f"hf:{name}", i) for i, r in enumerate(rows, start=1)], f"hf:{name}")


def load_ifeval(data_path: str | os.PathLike | None = None, limit: int | None = None,
                hf_name: str = HF_DATASET) -> tuple[list[IFEvalItem], str]:
    """(items, source): the hub dataset by default, the local JSON-lines file ``data_path`` when given; the first
    ``limit`` rows (all when None or < 0)."""
    if data_path is None or str(data_path) == "":
        logger.info("loading %s from the Hugging Face hub (pass --data_path for a local file)", hf_name)
        return data_from_hub(limit, hf_name), f"hf:{hf_name}"
    path = Path(data_path)
    if not path.is_file():
        raise DataError(path, "file not found; pass IFEval's input_data.jsonl (e.g. "
                              "../shared/data/ifeval/input_data.jsonl) or no --data_path for the hub dataset")
    return data_from_file(path, limit), str(path)
