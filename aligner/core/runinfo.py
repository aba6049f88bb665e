"""Run records: every stage writes ``run_config.json`` (flags, versions, git commit, host, time) beside its outputs."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import importlib.metadata
import json
import logging
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aligner.core.io import write_json_atomic
from aligner.core.paths import REPO_ROOT

TRACKED_PACKAGES = (
    "torch", "transformers", "peft", "trl", "accelerate", "tokenizers", "datasets", "sentence-transformers",
    "bert-score", "sacrebleu", "rouge-score", "faiss-cpu", "spacy", "vllm", "bitsandbytes", "numpy", "lm-eval",
    "tensorboard", "deepspeed",
)


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(repo: Path = REPO_ROOT) -> dict[str, Any]:
    """The checkout's HEAD and whether the tree has uncommitted changes (None when not a git checkout)."""
    def run(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def run_record(args: argparse.Namespace | dict | None = None, extra: dict | None = None) -> dict:
    if dataclasses.is_dataclass(args):
        flags = dataclasses.asdict(args)
    elif isinstance(args, (list, tuple)):  # several config dataclasses of one script
        flags = {k: v for a in args for k, v in dataclasses.asdict(a).items()}
    else:
        flags = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})
    record = {
        "flags": flags,
        "argv": list(sys.argv),
        "start_time": now_iso(),
        "hostname": socket.gethostname(),
        "git": git_commit(),
        "versions": package_versions(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    if extra:
        record.update(extra)
    return record


def write_run_config(output_dir: str | os.PathLike, args: argparse.Namespace | dict | None = None,
                     extra: dict | None = None, filename: str = "run_config.json") -> Path:
    """Write the run record next to a stage's outputs, atomically; returns its path."""
    path = Path(output_dir) / filename
    write_json_atomic(path, run_record(args, extra))
    return path


def start_stage(output_dir: str | os.PathLike, args: argparse.Namespace | dict | None) -> Path:
    """How a data stage starts: logging set up and a first run_config.json beside its outputs (flags, no
    counts yet: scripts/make_data.py does not take the stage as done until ``finish_stage``); returns the folder."""
    setup_logging()
    write_run_config(output_dir, args)
    return Path(output_dir)


def finish_stage(output_dir: str | os.PathLike, args: argparse.Namespace | dict | None, counts: dict) -> dict:
    """How a data stage ends: its counts go into run_config.json beside its outputs (scripts/make_data.py
    treats a run_config.json with counts as a completed stage) and to stdout; returns the counts."""
    write_run_config(output_dir, args, extra={"counts": counts})
    print(json.dumps(counts, indent=2))
    return counts


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")


class PhaseTimer:
    """Seconds spent per phase of a run (this invocation only): ``with timer("mc"): ...``."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - t0, 3)
