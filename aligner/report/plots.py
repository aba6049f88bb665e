"""Figures: grouped bars of every run's metrics, the scoreboard's trade-off (truthfulness and hallucination against
instruction following), and the loss / reward curves of a DPOP run."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aligner.core.io import DataError, ReadStats, iter_jsonl
from aligner.eval.metrics.registry import as_float, display_name, metric_kind
from aligner.report.scoreboard import TRADEOFF_X, TRADEOFF_Y, Row, Scoreboard
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


def _first_row(sb: Scoreboard, specs) -> Row | None:
    return next((r for r in map(sb.row, specs) if r is not None and r.changes), None)


def _err(c: Change) -> tuple[float, float] | None:
    """(below, above) the point: the paired bootstrap 95% interval of the change as error-bar lengths."""
    if c.ci is None:
        return None
    return max(0.0, c.abs_change - c.ci.low), max(0.0, c.ci.high - c.abs_change)


@dataclass
class TradeoffPoint:
    run: str
    x: float                                   # change in instruction following
    y: float                                   # change in the panel's metric
    xerr: tuple[float, float] | None
    yerr: tuple[float, float] | None


def tradeoff_points(sb: Scoreboard) -> tuple[Row | None, list[tuple[Row, list[TradeoffPoint]]]]:
    """What ``plot_tradeoff`` draws: the x row (IFEval prompt-level strict) and, per panel (MC2, judged
    truthfulness, hallucination rate: those with data), one point per adapter that has both changes."""
    xrow = _first_row(sb, TRADEOFF_X)
    if xrow is None:
        return None, []
    panels = []
    for yrow in (r for r in (_first_row(sb, group) for group in TRADEOFF_Y) if r is not None):
        pts = [TradeoffPoint(run, xrow.changes[run].abs_change, yrow.changes[run].abs_change,
                             _err(xrow.changes[run]), _err(yrow.changes[run]))
               for run in sb.adapters if run in xrow.changes and run in yrow.changes]
        panels.append((yrow, pts))
    return xrow, panels


def _bars(err: tuple[float, float] | None):
    return None if err is None else [[err[0]], [err[1]]]


def plot_tradeoff(sb: Scoreboard, out_png: str | os.PathLike) -> Path | None:
    """The trade-off the study names: the change against the base in instruction following (x: IFEval
    prompt-level strict) against the change in truthfulness (MC2, judged truthfulness) and in the hallucination rate,
    one panel each, one point per adapter, error bars = the paired bootstrap 95% intervals of both changes; the base
    is the origin.  Lower-is-better axes are flipped, so up is better on every panel.  None (nothing drawn) without
    IFEval changes or without any truthfulness / hallucination change."""
    xrow, panels = tradeoff_points(sb)
    if xrow is None or not panels:
        return None
    plt = _pyplot()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 4.4), squeeze=False)
    for ax, (yrow, pts) in zip(axes[0], panels):
        ax.axhline(0, color="grey", lw=0.8)
        ax.axvline(0, color="grey", lw=0.8)
        ax.plot([0], [0], marker="s", color="black", ls="none", label=f"{sb.baseline} (base)")
        for pt in pts:
            ax.errorbar([pt.x], [pt.y], xerr=_bars(pt.xerr), yerr=_bars(pt.yerr), fmt="o", capsize=4,
                        color=colors[sb.adapters.index(pt.run) % len(colors)], label=pt.run)
        lower = metric_kind(yrow.spec.metric) == "lower"
        ax.set_xlabel(f"Δ {xrow.label}")
        ax.set_ylabel(f"Δ {yrow.short_label}\n({yrow.spec.source}" + (", axis flipped)" if lower else ")"))
        if lower:
            ax.invert_yaxis()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("change against the base, paired bootstrap 95% intervals: right = more instructions followed, "
                 "up = better", fontsize=10)
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
