"""Figures: grouped bars of every run's metrics, the scoreboard's trade-off (truthfulness and hallucination against
instruction following), and the loss / reward curves of a DPOP run."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aligner.core.io import DataError, ReadStats, iter_jsonl
from aligner.eval.metrics.registry import as_float, display_name, metric_kind
from aligner.report.bootstrap import _stable_seed, mean_ci, run_values
from aligner.report.scoreboard import TRADEOFF_X, TRADEOFF_Y, Row, Scoreboard
from aligner.report.tables import Change, Report, degenerate_mark


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


#: figure titles of the results folders: the benchmark and its flow, not the folder's name
BENCHMARK_TITLES = {"Halueval": "HaluEval, similarity flow", "HaluevalLLM": "HaluEval, two-step flow (HHEM judge)",
                    "TruthfulQA": "TruthfulQA", "IFEval": "IFEval"}


def benchmark_title(folder: str) -> str:
    """A folder's title; a benchmark of several parts is titled by both ("HaluEval detection, dialogue")."""
    if folder.startswith("HaluEvalDetection/"):
        return f"HaluEval detection, {folder.split('/', 1)[1]}"
    if folder.startswith("World"):
        return "Open-book world" + (", controls" if folder.endswith("/control") else ", knowledge conflicts")
    return BENCHMARK_TITLES.get(folder, folder)


def bar_intervals(report: Report, bench, run: str, metrics: list[str], cache: dict) -> list[tuple[float, float] | None]:
    """Per metric, the bootstrap 95% interval of the run's value (its per-sample values resampled); None where the
    metric has no per-sample values (a count, a pooled ratio, no per-sample file)."""
    out = []
    for m in metrics:
        values = run_values(bench, m, run, cache)
        out.append(None if values is None else mean_ci(values, seed=_stable_seed(bench.name, run, m)))
    return out


def _draw_bar_labels(ax, bars, values, intervals, marks) -> None:
    """Each bar's value written above it (above its error bar), so a zero-height bar still reads "0.000"; "*" after
    it when the change against the base has a 95% interval that excludes 0."""
    for bar, v, ci, mark in zip(bars, values, intervals, marks):
        if v is None or not np.isfinite(v):
            continue
        top = max(v, ci[1]) if ci is not None else v
        ax.annotate(f"{v:.3f}{mark}", (bar.get_x() + bar.get_width() / 2, max(top, 0.0)), xytext=(0, 2),
                    textcoords="offset points", ha="center", va="bottom", fontsize=6.5, rotation=90)


def plot_results(report: Report, out_png: str | os.PathLike) -> Path:
    """Grouped bars: one panel per benchmark (titled by benchmark and flow), metrics on the x axis, one bar per run,
    each with its bootstrap 95% error bar where per-sample values exist and its value written above it (a bar of
    height 0 is drawn as an outline and still reads 0.000); "*" after an adapter's value: its change against the
    base has a 95% interval that excludes 0; " ⚠" after a value scored from degenerate answers (all or most
    empty or identical, as the tables mark it).
    Counts (questions, empty answers) are left out."""
    plt = _pyplot()
    benches = [b for b in report.benchmarks if report.runs.get(b.name)]
    if not benches:
        raise ValueError("nothing to plot: no metrics files found")
    fig, axes = plt.subplots(len(benches), 1, figsize=(10, 3.9 * len(benches)), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    cache: dict = {}
    for ax, bench in zip(axes[:, 0], benches):
        order = report.runs[bench.name]
        metrics = [m for m in bench.metric_names(order) if metric_kind(m) != "count"]
        x = np.arange(len(metrics))
        width = 0.8 / max(1, len(order))
        tops = [0.0]
        for i, run in enumerate(order):
            vals = [bench.runs[run].values.get(m) for m in metrics]
            heights = [np.nan if v is None else v for v in vals]
            intervals = bar_intervals(report, bench, run, metrics, cache)
            err = np.array([[np.nan, np.nan] if ci is None or v is None else [max(0.0, v - ci[0]), max(0.0, ci[1] - v)]
                            for v, ci in zip(vals, intervals)]).T
            tops += [max(v, ci[1] if ci else v) for v, ci in zip(vals, intervals) if v is not None]
            color = colors[i % len(colors)]
            bars = ax.bar(x + (i - (len(order) - 1) / 2) * width, heights, width, label=run, color=color,
                          edgecolor=color, linewidth=1.5, yerr=err if np.any(np.isfinite(err)) else None, capsize=2,
                          error_kw={"elinewidth": 0.8, "ecolor": "black"})
            marks = [("*" if c is not None and c.ci is not None and c.ci.excludes_zero else "")
                     + degenerate_mark(bench.runs[run], m)
                     for m, c in zip(metrics, _changes_for(report, bench.name, run, metrics))]
            _draw_bar_labels(ax, bars, vals, intervals, marks)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks(x)
        ax.set_xticklabels([display_name(m) + (" ↓" if metric_kind(m) == "lower" else "") for m in metrics],
                           rotation=15, ha="right")
        ax.set_title(benchmark_title(bench.name))
        ax.set_ylim(top=1.35 * max(tops) if max(tops) > 0 else 1.0)  # room for the values written above
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("every run's metrics, bootstrap 95% intervals (↓: lower is better; ⚠: scored from degenerate answers, "
                 "named in RESULTS.md)", fontsize=10)
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
        for k, pt in enumerate(pts):  # caps of growing width: intervals on one line stay apart
            ax.errorbar([pt.x], [pt.y], xerr=_bars(pt.xerr), yerr=_bars(pt.yerr), fmt="o", capsize=4 + 3 * k,
                        color=colors[sb.adapters.index(pt.run) % len(colors)], label=pt.run, alpha=0.85)
        if pts and all(p.x == p.y == 0 and not any((p.xerr or (0,)) + (p.yerr or (0,))) for p in pts):
            ax.text(0.5, 0.25, "every adapter at (0, 0):\nno change, intervals [0, 0]", transform=ax.transAxes,
                    ha="center", va="center", fontsize=8, color="dimgrey")
        lower = metric_kind(yrow.spec.metric) == "lower"
        ax.set_title(yrow.spec.source, fontsize=10)
        ax.set_xlabel(f"Δ {xrow.label}")
        ax.set_ylabel(f"Δ {yrow.short_label}" + ("\n(axis inverted: up = lower = better)" if lower else ""))
        if lower:
            ax.invert_yaxis()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("change against the base, paired bootstrap 95% intervals: right = more instructions followed, "
                 "up = better", fontsize=10)
    return _save_figure(plt, fig, out_png)


def _save_figure(plt, fig, out_png: str | os.PathLike) -> Path:
    fig.tight_layout(rect=(0, 0, 1, 0.985))  # the suptitle keeps its own line
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


def plot_training_curves(train_log_path: str | os.PathLike, out_png: str | os.PathLike, name: str | None = None
                         ) -> Path:
    """Loss, reward accuracy and reward margin against the optimizer step, one colour per curriculum stage.

    The x axis is the logged (global) optimizer step; a step logged twice (a run resumed from a checkpoint
    re-logs the steps after it) keeps its last record.  Without numeric steps the logging order is used.  A run of
    one stage has one colour and no legend; the title names the run (``name``, else the log's folder).
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
                        color=colors[si % len(colors)], label=f"curriculum stage {stage}" if stage else None)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    staged = len(stage_names) > 1
    if staged:  # above the first panel, where no curve runs under it
        axes[0].legend(fontsize=8, ncol=min(4, len(stage_names)), loc="lower center", bbox_to_anchor=(0.5, 1.0),
                       frameon=False)
    axes[-1].set_xlabel("optimizer step" if monotone else "logging step")
    run = name or Path(train_log_path).parent.name or Path(train_log_path).name
    stages = f"{len(stage_names)} curriculum stages" if staged else "one stage"
    fig.suptitle(f"DPOP training curves: {run} ({stages})")
    return _save_figure(plt, fig, out_png)
