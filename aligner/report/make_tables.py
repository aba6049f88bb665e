"""What ``scripts/make_tables.py`` does: the tables of every benchmark under a results folder (stdout, and a
file), the grouped bar chart, and the training curves of DPOP runs; its settings generate the script's parser."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.io import atomic_write_text
from aligner.report.plots import plot_results, plot_training_curves
from aligner.report.tables import Report, collect_results, compare, render


@dataclass(kw_only=True)
class TablesConfig:
    results_dir: str = field(default="evaluation/results", metadata={
        "help": "folder of benchmark folders with metrics_<run>.json"})
    baseline: str = field(default="baseline", metadata={"help": "the run compared against"})
    runs: list[str] | None = field(default=None, metadata={
        "help": "comma-separated runs to show, in this order (default: every run found)", "sep": ","})
    format: str = field(default="md", metadata={"help": "output format", "choices": ["md", "csv", "latex"]})
    n_boot: int = field(default=1000, metadata={"help": "bootstrap resamples for the intervals; 0 turns them off"})
    seed: int = field(default=0, metadata={"help": "bootstrap seed"})
    plot: str | None = field(default=None, metadata={"help": "write a grouped bar chart to this PNG (default: none)"})
    output: str | None = field(default=None, metadata={
        "help": "also write the tables to this file (default: stdout only)"})
    train_log: list[str] = field(default_factory=list, metadata={
        "help": "a train_log.jsonl to plot as training curves (loss, reward accuracy and margin per stage) into "
                "--train_plot_dir/training_NAME.png; repeatable", "append": True, "metavar": "NAME=PATH"})
    train_plot_dir: str = field(default=".", metadata={"help": "folder for the training-curve PNGs"})

    def __post_init__(self):
        for item in self.train_log:
            if "=" not in item:
                raise ValueError(f"--train_log takes NAME=PATH, got {item!r}")


def make_tables(cfg: TablesConfig) -> Report:
    """Print the tables (and write them, the bar chart and the training curves where asked); returns the report."""
    benches = collect_results(cfg.results_dir)
    if not benches:
        raise FileNotFoundError(f"no metrics_*.json files under {cfg.results_dir}")
    report = compare(benches, baseline=cfg.baseline, runs=cfg.runs, n_boot=cfg.n_boot, seed=cfg.seed)
    text = render(report, cfg.format)
    sys.stdout.write(text)
    if cfg.output:
        atomic_write_text(cfg.output, text)
        print(f"tables written to {cfg.output}", file=sys.stderr)
    if cfg.plot:
        print(f"bar chart written to {plot_results(report, cfg.plot)}", file=sys.stderr)
    for item in cfg.train_log:
        name, _, path = item.partition("=")
        out = plot_training_curves(path, Path(cfg.train_plot_dir) / f"training_{name}.png")
        print(f"training curves written to {out}", file=sys.stderr)
    return report
