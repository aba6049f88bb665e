#!/usr/bin/env python
"""Download a model (or any Hugging Face repository) into a local folder, e.g. models/.

Gated models (Llama) need a token with access: `export HF_TOKEN=hf_...`. Running it again is a no-op when the
folder still holds the files of the same request (a download manifest is kept in the folder).

Examples:
    python scripts/download_model.py --repo_id meta-llama/Llama-3.2-3B-Instruct --output_dir models/llama3-2-3b-instruct
    python scripts/download_model.py --repo_id mrhello291/llama3-3.2-instuct-dpop --output_dir models/dpop-adapters \
        --allow_patterns "dpop_old_strat/*"
"""

import argparse
from pathlib import Path

from aligner.core.cli import run_cli
from aligner.core.hub import snapshot

DEFAULT_REPO = "meta-llama/Llama-3.2-3B-Instruct"
DEFAULT_OUTPUT = "models/llama3-2-3b-instruct"
DEFAULT_IGNORE = "original/*"


def split_patterns(value):
    return [p.strip() for p in value.split(",") if p.strip()] if value else None


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo_id", default=DEFAULT_REPO, help=f"Hugging Face repository id (default: {DEFAULT_REPO})")
    p.add_argument("--output_dir", default=DEFAULT_OUTPUT, help=f"local folder for the files (default: {DEFAULT_OUTPUT})")
    p.add_argument("--allow_patterns", default=None,
                   help="comma-separated glob patterns of files to fetch, e.g. '*.json,*.safetensors' (default: all)")
    p.add_argument("--ignore_patterns", default=DEFAULT_IGNORE,
                   help="comma-separated glob patterns to skip; the default skips Meta's duplicate original/ "
                        f"checkpoint; '' for none (default: {DEFAULT_IGNORE})")
    p.add_argument("--revision", default=None, help="branch, tag or commit (default: the main branch)")
    p.add_argument("--repo_type", choices=["model", "dataset"], default="model", help="hub repository type (default: model)")
    p.add_argument("--force", action="store_true", help="download again even if the folder is complete (default: off)")
    p.add_argument("--verify", action="store_true",
                   help="re-hash every file against the manifest before skipping (default: sizes only)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    print(f"{args.repo_id} -> {Path(args.output_dir).resolve()}")
    result = run_cli(snapshot, args.repo_id, args.output_dir, repo_type=args.repo_type,
                     allow_patterns=split_patterns(args.allow_patterns),
                     ignore_patterns=split_patterns(args.ignore_patterns), revision=args.revision,
                     force=args.force, verify=args.verify)
    print(f"done: {result.describe()}")
    return result


if __name__ == "__main__":
    main()
