"""Bit-identical reruns on one machine: the environment a stage runs in, and the torch settings read from it.

A float sum depends on its order, and the order depends on how many threads split it (OpenMP and MKL may pick
fewer threads on a busy machine), on the kernels torch chooses, and, through set and dict order, on Python's
string hashing.  ``reproducible_env`` fixes all three for a child process; ``apply_from_env`` (called by
``aligner.core.cli.run_cli``, so by every script) sets torch's thread count and deterministic algorithms from it.
Seeds are each stage's own ``--seed``.
"""

from __future__ import annotations

import os

from aligner.core.availability import TRUTHY

THREADS_VAR = "ALIGNER_NUM_THREADS"
DETERMINISTIC_VAR = "ALIGNER_DETERMINISTIC"


def reproducible_env(threads: int, deterministic_kernels: bool = False) -> dict[str, str]:
    """Environment variables for a child process whose outputs must be the same bytes on every rerun.

    On a CPU, torch's kernels give the same bytes for a fixed thread count: the demo's reruns are bit-identical
    without torch's deterministic algorithms, which made its tiny models' training 3.7x slower (the world's warm
    start: 6 instead of 23 steps/s, measured on 2 idle cores).  ``deterministic_kernels`` turns them on, for CUDA,
    where the default kernels are not."""
    n = str(int(threads))
    env = {
        "PYTHONHASHSEED": "0",                  # set / dict iteration order of strings
        "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, THREADS_VAR: n,
        "OMP_DYNAMIC": "FALSE", "MKL_DYNAMIC": "FALSE",   # no fewer threads when the machine is busy
        "TOKENIZERS_PARALLELISM": "false",
    }
    if deterministic_kernels:
        env.update({DETERMINISTIC_VAR: "1", "CUBLAS_WORKSPACE_CONFIG": ":4096:8"})  # what deterministic cuBLAS needs
    return env


def apply_from_env() -> None:
    """``torch.set_num_threads`` from ``ALIGNER_NUM_THREADS`` and deterministic algorithms (a warning, not an error,
    where an op has no deterministic kernel) when ``ALIGNER_DETERMINISTIC`` is set; nothing (torch not even
    imported) otherwise."""
    threads = os.environ.get(THREADS_VAR, "").strip()
    deterministic = os.environ.get(DETERMINISTIC_VAR, "").strip().lower() in TRUTHY
    if not threads and not deterministic:
        return
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
