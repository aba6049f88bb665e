#!/usr/bin/env python
"""Print the study's result tables from the metric files, with paired bootstrap intervals where possible.

For every benchmark folder under --results_dir (Halueval, HaluevalLLM, TruthfulQA, or any folder holding
metrics_<run>.json files): a summary table (metric x run) and, per run, the absolute and relative change
against --baseline, relative = (run - baseline) / baseline x 100, with a verdict that knows the metric's
direction (hallucination rate: lower is better). Where the per-sample files (detailed_<run>.jsonl,
detailed_gen_<run>.jsonl, detailed_mc_<run>.jsonl) exist for both runs, a paired bootstrap 95% interval of
each change is added (questions matched across runs; * marks an interval that excludes zero).

Example:
    python scripts/make_tables.py --results_dir evaluation/results --format md --plot outputs/results.png
"""

import argparse
import sys
from pathlib import Path

from aligner.core.io import DataError, atomic_write_text
from aligner.report.plots import plot_results, plot_training_curves
from aligner.report.tables import collect_results, compare, render


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results_dir", default="evaluation/results",
                   help="folder of benchmark folders with metrics_<run>.json (default: evaluation/results)")
    p.add_argument("--baseline", default="baseline", help="the run compared against (default: baseline)")
    p.add_argument("--runs", default=None,
                   help="comma-separated runs to show, in this order (default: every run found)")
    p.add_argument("--format", choices=["md", "csv", "latex"], default="md", help="output format (default: md)")
    p.add_argument("--n_boot", type=int, default=1000,
                   help="bootstrap resamples for the intervals; 0 turns them off (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    p.add_argument("--plot", default=None, help="write a grouped bar chart to this PNG (default: none)")
    p.add_argument("--output", default=None, help="also write the tables to this file (default: stdout only)")
    p.add_argument("--train_log", action="append", default=[], metavar="NAME=PATH",
                   help="a train_log.jsonl to plot as training curves (loss, reward accuracy and margin per stage) "
                        "into --train_plot_dir/training_NAME.png; repeatable (default: none)")
    p.add_argument("--train_plot_dir", default=".", help="folder for the training-curve PNGs (default: %(default)s)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    runs = [r.strip() for r in args.runs.split(",") if r.strip()] if args.runs else None
    try:
        benches = collect_results(args.results_dir)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    if not benches:
        print(f"error: no metrics_*.json files under {args.results_dir}", file=sys.stderr)
        raise SystemExit(1)
    report = compare(benches, baseline=args.baseline, runs=runs, n_boot=args.n_boot, seed=args.seed)
    text = render(report, args.format)
    sys.stdout.write(text)
    if args.output:
        atomic_write_text(args.output, text)
        print(f"tables written to {args.output}", file=sys.stderr)
    if args.plot:
        out = plot_results(report, args.plot)
        print(f"bar chart written to {out}", file=sys.stderr)
    for item in args.train_log:
        name, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"error: --train_log takes NAME=PATH, got {item!r}")
        out = plot_training_curves(path, Path(args.train_plot_dir) / f"training_{name}.png")
        print(f"training curves written to {out}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
