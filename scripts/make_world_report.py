#!/usr/bin/env python
"""The open-book world's report: per model, the memory-answer and right-answer rates on the held-out knowledge
conflicts (and the other answers, the similarity flow's metrics, the controls' right answers), each with its
bootstrap 95% interval and, for an adapter, its change against the base with the paired interval; the ablations
(two adapters compared on the same items); the chosen answers' log-prob over training; one figure.

Example:
    python scripts/make_world_report.py --results_dir outputs/demo/results/World --output outputs/demo/world.md \\
        --plot outputs/demo/world.png --train_log dpop=outputs/demo/world/train/dpop/train_log.jsonl
"""

from aligner.core.cli import parse_config, run_cli
from aligner.report.world import WorldReportConfig, make_world_report


def parse_args(argv=None) -> WorldReportConfig:
    return parse_config(WorldReportConfig, argv, description=__doc__)


def main(argv=None):
    text = make_world_report(parse_args(argv))
    print(text)
    return text


if __name__ == "__main__":
    run_cli(main)
