#!/usr/bin/env python
"""Download a model (or any Hugging Face repository) into a local folder, e.g. models/.

Gated models (Llama) need a token with access: `export HF_TOKEN=hf_...`. Running it again is a no-op when the
folder still holds the files of the same request (a download manifest is kept in the folder).

Examples:
    python scripts/download_model.py --repo_id meta-llama/Llama-3.2-3B-Instruct --output_dir models/llama3-2-3b-instruct
    python scripts/download_model.py --repo_id mrhello291/llama3-3.2-instuct-dpop --output_dir models/dpop-adapters \\
        --allow_patterns "dpop_old_strat/*"
"""

from aligner.core.cli import parse_config, run_cli
from aligner.core.downloads import DownloadModelConfig, download_model


def parse_args(argv=None) -> DownloadModelConfig:
    return parse_config(DownloadModelConfig, argv, description=__doc__)


def main(argv=None):
    return download_model(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
