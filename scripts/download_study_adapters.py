#!/usr/bin/env python
"""Download the study's published LoRA adapters (mrhello291/llama3-3.2-instuct-dpop): dpop_old_strat, the study's
best model, to OUTPUT_DIR/dpop_best and dpop_new_strat, its latest model, to OUTPUT_DIR/dpop_last (flat adapter
folders, with a source.json naming the hub folder). `make reproduce-eval` evaluates them beside the base.

Example:
    python scripts/download_study_adapters.py --output_dir models/study_adapters
"""

from aligner.core.cli import parse_config, run_cli
from aligner.core.downloads import DownloadStudyAdaptersConfig, download_study_adapters


def parse_args(argv=None) -> DownloadStudyAdaptersConfig:
    return parse_config(DownloadStudyAdaptersConfig, argv, description=__doc__)


def main(argv=None):
    return download_study_adapters(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
