#!/usr/bin/env python
"""Download the TruthfulQA truth judge (allenai/truthfulqa-truth-judge-llama2-7B) into models/.

evaluation/eval_truthfulqa.py reads it with --judge_model_path models/truthfulqa-truth-judge-llama2-7B.
`--include_info` also fetches the companion informativeness judge. Idempotent; HF_TOKEN is used when set.
"""

from aligner.core.cli import parse_config, run_cli
from aligner.core.downloads import DownloadTruthfulQAJudgeConfig, download_truthfulqa_judges


def parse_args(argv=None) -> DownloadTruthfulQAJudgeConfig:
    return parse_config(DownloadTruthfulQAJudgeConfig, argv, description=__doc__)


def main(argv=None):
    return download_truthfulqa_judges(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
