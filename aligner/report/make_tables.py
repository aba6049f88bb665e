"""What ``scripts/make_tables.py`` does: the three-axis scoreboard and its trade-off figure, the comparison with
the study's published numbers (``--published``), the tables of every benchmark under a results folder (stdout, and
a file), the grouped bar chart, and the training curves of DPOP runs; its settings generate the script's parser."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.io import AlignerError, atomic_write_text
from aligner.core.paths import REPO_ROOT
from aligner.report.plots import plot_results, plot_tradeoff, plot_training_curves
from aligner.report.published import compare_published, render_published
from aligner.report.scoreboard import build_scoreboard, render_scoreboard
from aligner.report.tables import Benchmark, Report, RunMetrics, collect_results, compare, render


@dataclass(kw_only=True)
class TablesConfig:
    results_dir: str = field(default="evaluation/results", metadata={
        "help": "folder of benchmark folders with metrics_<run>.json"})
    baseline: str = field(default="baseline", metadata={
        "help": "the run compared against; when no run has the default name, the folder's one run without an adapter "
                "(default: baseline)"})
    exclude: list[str] = field(default_factory=list, metadata={
        "help": "comma-separated benchmark folders to leave out, with their subfolders (e.g. World: the demo's world "
                "has a report of its own)", "sep": ","})
    runs: list[str] | None = field(default=None, metadata={
        "help": "comma-separated runs to show, in this order (default: every run found)", "sep": ","})
    format: str = field(default="md", metadata={"help": "output format", "choices": ["md", "csv", "latex"]})
    n_boot: int = field(default=1000, metadata={"help": "bootstrap resamples for the intervals; 0 turns them off"})
    seed: int = field(default=0, metadata={"help": "bootstrap seed"})
    plot: str | None = field(default=None, metadata={"help": "write a grouped bar chart to this PNG (default: none)"})
    scoreboard: bool = field(default=True, metadata={
        "flag": "--no_scoreboard", "help": "leave out the three-axis scoreboard (hallucination, truthfulness, "
                                           "instruction following per adapter)"})
    tradeoff_plot: str | None = field(default=None, metadata={
        "help": "write the scoreboard's trade-off figure (change in truthfulness and hallucination against the change "
                "in IFEval instruction following, one point per adapter, 95% error bars) to this PNG (default: none)"})
    published: str | None = field(default=None, metadata={
        "help": "a folder of the study's published metric files (e.g. ../shared/data/seed_results): adds, per metric "
                "and run, published and reproduced values, their difference and whether the published value lies in "
                "the reproduced 95% interval (default: none)"})
    published_runs: list[str] = field(default_factory=list, metadata={
        "help": "published run = reproduced run pairs when the names do not match by themselves (default: baseline "
                "= --baseline, R = the run named R or ending in _R)", "sep": ",", "metavar": "PUB=RUN,..."})
    output: str | None = field(default=None, metadata={
        "help": "also write the tables to this file (default: stdout only)"})
    train_log: list[str] = field(default_factory=list, metadata={
        "help": "a train_log.jsonl to plot as training curves (loss, reward accuracy and margin per stage) into "
                "--train_plot_dir/training_NAME.png; repeatable", "append": True, "metavar": "NAME=PATH"})
    train_plot_dir: str = field(default=".", metadata={"help": "folder for the training-curve PNGs"})

    def __post_init__(self):
        for item in [*self.train_log, *self.published_runs]:
            if "=" not in item:
                raise ValueError(f"--train_log and --published_runs take NAME=VALUE items, got {item!r}")


def _readme_from(output: str | None) -> str:
    """The README's path as a link from the written tables (relative to their folder)."""
    base = Path(output).resolve().parent if output else Path.cwd()
    return os.path.relpath(REPO_ROOT / "README.md", base)


def report_text(cfg: TablesConfig, report: Report) -> str:
    """The scoreboard (and its figure), the published comparison, then every benchmark's tables."""
    parts = []
    if cfg.scoreboard:
        sb = build_scoreboard(report)
        figure = plot_tradeoff(sb, cfg.tradeoff_plot) if cfg.tradeoff_plot and cfg.format == "md" else None
        if figure is not None:
            print(f"trade-off figure written to {figure}", file=sys.stderr)
            out_dir = Path(cfg.output).resolve().parent if cfg.output else Path.cwd()
            figure = os.path.relpath(Path(figure).resolve(), out_dir)
        if cfg.format != "csv":
            parts.append(render_scoreboard(sb, cfg.format, figure))
    if cfg.published and cfg.format != "csv":
        given = dict(item.split("=", 1) for item in cfg.published_runs)
        rows = compare_published(collect_results(cfg.published), report, n_boot=cfg.n_boot, seed=cfg.seed,
                                 given=given)
        parts.append(render_published(rows, cfg.format, _readme_from(cfg.output), cfg.published))
    parts.append(render(report, cfg.format))
    return "\n".join(p for p in parts if p)


DEFAULT_BASELINE = "baseline"
NO_ADAPTER = ("", "none", "null", "base")


def _is_base_run(rm: RunMetrics) -> bool:
    """A run of the model without an adapter: its metrics file says ``lora_path: null``, or its name says base."""
    lora = rm.info.get("lora_path")
    return (lora is not None and lora.strip().lower() in NO_ADAPTER) or rm.run == "base" or rm.run.endswith("_base")


def choose_baseline(benches: list[Benchmark], baseline: str, results_dir: str) -> str:
    """``baseline`` when some benchmark has that run.  Without one, and with the default name, the folder's one run
    without an adapter (said on stderr); else one line naming the runs there is."""
    if any(baseline in b.runs for b in benches):
        return baseline
    runs = sorted({r for b in benches for r in b.runs})
    base_runs = sorted({rm.run for b in benches for rm in b.runs.values() if _is_base_run(rm)})
    if baseline == DEFAULT_BASELINE and len(base_runs) == 1:
        print(f"no run named '{baseline}' under {results_dir}: comparing against '{base_runs[0]}', the run without an "
              "adapter (--baseline picks another)", file=sys.stderr)
        return base_runs[0]
    why = (f"several runs without an adapter ({', '.join(base_runs)})" if len(base_runs) > 1 else
           "no run without an adapter to take instead" if baseline == DEFAULT_BASELINE else "")
    raise AlignerError(f"no run named '{baseline}' under {results_dir}" + (f" and {why}" if why else "")
                       + f"; pass --baseline with one of: {', '.join(runs)}")


def make_tables(cfg: TablesConfig) -> Report:
    """Print the tables (and write them, the bar chart and the training curves where asked); returns the report."""
    benches = [b for b in collect_results(cfg.results_dir)
               if not any(b.name == x or b.name.startswith(f"{x}/") for x in cfg.exclude)]
    if not benches:
        raise FileNotFoundError(f"no metrics_*.json files under {cfg.results_dir}")
    baseline = choose_baseline(benches, cfg.baseline, cfg.results_dir)
    report = compare(benches, baseline=baseline, runs=cfg.runs, n_boot=cfg.n_boot, seed=cfg.seed)
    text = report_text(cfg, report)
    sys.stdout.write(text)
    if cfg.output:
        atomic_write_text(cfg.output, text)
        print(f"tables written to {cfg.output}", file=sys.stderr)
    if cfg.plot:
        print(f"bar chart written to {plot_results(report, cfg.plot)}", file=sys.stderr)
    for item in cfg.train_log:
        name, _, path = item.partition("=")
        out = plot_training_curves(path, Path(cfg.train_plot_dir) / f"training_{name}.png", name=name)
        print(f"training curves written to {out}", file=sys.stderr)
    return report
