"""Paired bootstrap over per-sample files: the records of two runs are matched question by question and
resampled together, giving a 95% interval of the change in a metric."""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from aligner.core.io import ReadStats, iter_jsonl
from aligner.core.paths import result_file
from aligner.eval.metrics.registry import declared

if TYPE_CHECKING:
    from aligner.report.tables import Benchmark

logger = logging.getLogger(__name__)

# Fields that identify a question across runs, in order of preference.
PAIR_KEYS = ("id", "data_index", "question_id", "question", "key")  # key: IFEval's prompt id


@dataclass
class BootstrapCI:
    low: float               # 95% interval of the absolute change (run - baseline)
    high: float
    rel_low: float | None    # 95% interval of the relative change, in percent
    rel_high: float | None
    n_pairs: int
    n_boot: int
    file: str
    consistent: bool         # the per-sample means reproduce both metric values (to 1e-6)

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def _pair_key_field(a: list[dict], b: list[dict]) -> str | None:
    for k in PAIR_KEYS:
        if a and b and all(k in r for r in a) and all(k in r for r in b):
            return k
    return None


def _keyed(records: list[dict], key: str | None) -> dict:
    """Key each record by (its id, occurrence number): a question asked twice pairs with its second asking."""
    seen: dict = {}
    out = {}
    for i, rec in enumerate(records):
        k = json.dumps(rec[key], sort_keys=True, default=str) if key else i
        n = seen.get(k, 0)
        seen[k] = n + 1
        out[(k, n)] = rec
    return out


def find_detailed(folder: Path, run: str, kinds: Sequence[str]) -> Path | None:
    """The first of the run's per-sample files of ``kinds`` (``aligner.core.paths.RESULT_FILES``) that exists."""
    for kind in kinds:
        p = result_file(folder, kind, run)
        if p.is_file():
            return p
    return None


def _read_detailed(path: Path, cache: dict) -> list[dict]:
    if path not in cache:
        stats = ReadStats()
        cache[path] = list(iter_jsonl(path, skip_invalid=True, stats=stats))
    return cache[path]


def paired_values(bench: Benchmark, metric: str, baseline: str, run: str,
                  cache: dict | None = None) -> tuple[np.ndarray, np.ndarray, str] | None:
    """The per-sample values of ``metric`` for baseline and run, matched by question; None without files."""
    spec = declared(metric)
    if spec is None or not spec.has_per_sample:
        return None
    cache = {} if cache is None else cache
    fb = find_detailed(bench.folder, baseline, spec.files)
    fr = find_detailed(bench.folder, run, spec.files)
    if fb is None or fr is None:
        return None
    rb, rr = _read_detailed(fb, cache), _read_detailed(fr, cache)
    key = _pair_key_field(rb, rr)
    if key is None and len(rb) != len(rr):
        logger.warning("%s vs %s: no shared question field and different lengths; no pairing possible", fb, fr)
        return None
    kb, kr = _keyed(rb, key), _keyed(rr, key)
    xs, ys = [], []
    for k, rec_b in kb.items():
        rec_r = kr.get(k)
        if rec_r is None:
            continue
        vb, vr = spec.value(rec_b), spec.value(rec_r)
        if vb is None or vr is None:
            continue
        xs.append(vb)
        ys.append(vr)
    if not xs:
        return None
    return np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64), f"{fb.name} / {fr.name}"


def _stable_seed(*parts: str) -> int:
    return zlib.crc32("\x1f".join(parts).encode("utf-8"))


def paired_bootstrap(base: np.ndarray, run: np.ndarray, n_boot: int = 1000, seed: int = 0,
                     chunk: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap means of paired samples: resample pair indices with replacement ``n_boot`` times.

    ``base`` and ``run`` are (n,) or (n, k) arrays (k metrics share the same resamples).  Returns the
    resampled means of base and of run, each (n_boot,) or (n_boot, k).
    """
    base = np.asarray(base, dtype=np.float64)
    run = np.asarray(run, dtype=np.float64)
    n = base.shape[0]
    rng = np.random.default_rng(seed)
    mb, mr = [], []
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(m, n))
        mb.append(base[idx].mean(axis=1))
        mr.append(run[idx].mean(axis=1))
    return np.concatenate(mb), np.concatenate(mr)


def bootstrap_ci(base: np.ndarray, run: np.ndarray, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float, float | None, float | None]:
    """Percentile intervals of the mean change (run - base) and of the relative change in percent."""
    mb, mr = paired_bootstrap(base, run, n_boot=n_boot, seed=seed)
    alpha = (1.0 - level) / 2.0
    q = [100 * alpha, 100 * (1 - alpha)]
    lo, hi = np.percentile(mr - mb, q)
    rel_lo = rel_hi = None
    if np.all(mb != 0):
        rlo, rhi = np.percentile((mr - mb) / mb * 100.0, q)
        rel_lo, rel_hi = float(rlo), float(rhi)
    return float(lo), float(hi), rel_lo, rel_hi


def run_values(bench: Benchmark, metric: str, run: str, cache: dict | None = None) -> np.ndarray | None:
    """The per-sample values of ``metric`` in one run's per-sample file; None without a file or values."""
    spec = declared(metric)
    if spec is None or not spec.has_per_sample:
        return None
    path = find_detailed(bench.folder, run, spec.files)
    if path is None:
        return None
    values = [spec.value(r) for r in _read_detailed(path, {} if cache is None else cache)]
    values = [v for v in values if v is not None]
    return np.asarray(values, dtype=np.float64) if values else None


def mean_ci(values: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (samples resampled with replacement): the
    one-run counterpart of ``bootstrap_ci``, from the same resampling (``paired_bootstrap``)."""
    mb, _ = paired_bootstrap(values, values, n_boot=n_boot, seed=seed)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.percentile(mb, [100 * alpha, 100 * (1 - alpha)])
    return float(lo), float(hi)
