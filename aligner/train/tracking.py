"""Experiment tracking for the DPOP trainer (``--report_to none|tensorboard|wandb``) through accelerate's trackers.

The tracker gets the same metric names and values as ``train_log.jsonl`` (every numeric field of a record but
``step``, which is the tracker's step), from the main process only.  TensorBoard writes event files under
``OUTPUT/runs/dpop/`` (its hyperparameter view in a timestamped folder beside them); W&B runs with the output
folder as its ``dir`` (set ``WANDB_MODE=offline`` to keep it local).  ``Accelerator.end_training`` closes them.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from aligner.core.io import AlignerError

TRACKER_DIR = "runs"
TRACKER_PROJECT = "dpop"
TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}


def tracker_hparams(cfg) -> dict:
    """A config's settings as tracker hyperparameters (TensorBoard takes only bool, int, float and str values)."""
    out = {}
    for k, v in asdict(cfg).items():
        if isinstance(v, (list, tuple)):
            v = ",".join(map(str, v))
        out[k] = v if isinstance(v, (bool, int, float, str)) else str(v)
    return out


def start_tracker(acc, report_to: str, output_dir: Path, cfg) -> None:
    """Start accelerate's ``report_to`` tracker on ``acc`` (nothing for ``none``); a missing package is an
    ``AlignerError`` that says what to install."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS
    from accelerate.utils import is_tensorboard_available, is_wandb_available

    if report_to == "none":
        return
    available = {"tensorboard": is_tensorboard_available, "wandb": is_wandb_available}[report_to]()
    if not available:
        raise AlignerError(f"--report_to {report_to} needs the {TRACKER_PACKAGES[report_to]} package: "
                           f"pip install {TRACKER_PACKAGES[report_to]}")
    cls = LOGGER_TYPE_TO_CLASS[report_to]
    if cls.requires_logging_directory:
        tracker = cls(TRACKER_PROJECT, str(Path(output_dir) / TRACKER_DIR))
    else:
        tracker = cls(TRACKER_PROJECT, dir=str(output_dir), name=Path(output_dir).name)
    acc.log_with = [tracker]  # a tracker instance: init_trackers adopts it, starts it and stores the config
    acc.init_trackers(TRACKER_PROJECT, config=tracker_hparams(cfg))


def log_record(acc, record: dict) -> None:
    """Send one train_log.jsonl record to the started trackers (a no-op without any)."""
    if acc.trackers:
        acc.log({k: v for k, v in record.items() if k != "step" and isinstance(v, (int, float))}, step=record["step"])
