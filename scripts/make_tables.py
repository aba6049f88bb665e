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

from aligner.core.cli import parse_config, run_cli
from aligner.report.make_tables import TablesConfig, make_tables


def parse_args(argv=None) -> TablesConfig:
    return parse_config(TablesConfig, argv, description=__doc__)


def main(argv=None):
    return make_tables(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
