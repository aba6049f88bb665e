"""Figures: grouped bars of every run's metrics, and the loss / reward curves of a DPOP run."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from aligner.core.io import DataError, ReadStats, iter_jsonl
from aligner.eval.metrics.registry import as_float, display_name, metric_kind
from aligner.report.tables import Change, Report


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_results(report: Report, out_png: str | os.PathLike) -> Path:
    """Grouped bars: one panel per benchmark, metrics on the x axis, one bar per run."""
    plt = _pyplot()
    benches = [b for b in report.benchmarks if report.runs.get(b.name)]
    if not benches:
        raise ValueError("nothing to plot: no metrics files found")
    fig, axes = plt.subplots(len(benches), 1, figsize=(10, 3.6 * len(benches)), squeeze=False)
    for ax, bench in zip(axes[:, 0], benches):
        order = report.runs[bench.name]
        metrics = [m for m in bench.metric_names(order) if metric_kind(m) != "count"]
        x = np.arange(len(metrics))
        width = 0.8 / max(1, len(order))
        for i, run in enumerate(order):
            vals = [bench.runs[run].values.get(m, np.nan) for m in metrics]
            bars = ax.bar(x + (i - (len(order) - 1) / 2) * width, vals, width, label=run)
            if run != report.baseline:
                for bar, c in zip(bars, _changes_for(report, bench.name, run, metrics)):
                    if c is not None and c.ci is not None and c.ci.excludes_zero:
                        ax.annotate("*", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                                    ha="center", va="bottom")
        ax.set_xticks(x)
        ax.set_xticklabels([display_name(m) + (" ↓" if metric_kind(m) == "lower" else "") for m in metrics],
                           rotation=15, ha="right")
        ax.set_title(bench.name)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    return _save_figure(plt, fig, out_png)


def _save_figure(plt, fig, out_png: str | os.PathLike) -> Path:
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _changes_for(report: Report, bench: str, run: str, metrics: list[str]) -> list[Change | None]:
    by_metric = {c.metric: c for c in report.changes.get(bench, {}).get(run, [])}
    return [by_metric.get(m) for m in metrics]


TRAIN_CURVES = (("loss", "loss"), ("rewards/accuracies", "reward accuracy"), ("rewards/margins", "reward margin"))


def read_train_log(train_log_path: str | os.PathLike) -> list[dict]:
    """The training log's step records (a torn last line from an interrupted run is skipped, and counted)."""
    stats = ReadStats()
    recs = [r for r in iter_jsonl(train_log_path, skip_invalid=True, stats=stats)
            if any(k in r for k, _ in TRAIN_CURVES)]
    if not recs:
        raise DataError(train_log_path, "no logging records with loss / rewards fields")
    return recs


def plot_training_curves(train_log_path: str | os.PathLike, out_png: str | os.PathLike) -> Path:
    """Loss, reward accuracy and reward margin against the optimizer step, one colour per curriculum stage.

    The x axis is the logged (global) optimizer step; a step logged twice (a run resumed from a checkpoint
    re-logs the steps after it) keeps its last record.  Without numeric steps the logging order is used.
    """
    plt = _pyplot()
    recs = read_train_log(train_log_path)
    by_step = all(isinstance(r.get("step"), (int, float)) and not isinstance(r.get("step"), bool) for r in recs)
    if by_step:
        recs = sorted({float(r["step"]): r for r in recs}.values(), key=lambda r: float(r["step"]))
        xs = [float(r["step"]) for r in recs]
    else:
        xs = list(range(1, len(recs) + 1))
    monotone = by_step
    stages = [str(r.get("stage", "")) for r in recs]
    stage_names = list(dict.fromkeys(stages))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(len(TRAIN_CURVES), 1, figsize=(9, 2.8 * len(TRAIN_CURVES)), sharex=True)
    for ax, (key, label) in zip(axes, TRAIN_CURVES):
        for si, stage in enumerate(stage_names):
            pts = [(x, as_float(r.get(key))) for x, r, s in zip(xs, recs, stages) if s == stage]
            pts = [(x, y) for x, y in pts if y is not None]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", ms=3, lw=1.2,
                        color=colors[si % len(colors)], label=f"stage {stage}" if stage else None)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if any(stage_names):
        axes[0].legend(fontsize=8, ncol=min(4, len(stage_names)))
    axes[-1].set_xlabel("optimizer step" if monotone else "logging step")
    fig.suptitle(f"training curves: {Path(train_log_path).parent.name or Path(train_log_path).name}")
    return _save_figure(plt, fig, out_png)
