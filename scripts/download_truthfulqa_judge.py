#!/usr/bin/env python
"""Download the TruthfulQA truth judge (allenai/truthfulqa-truth-judge-llama2-7B) into models/.

evaluation/eval_truthfulqa.py reads it with --judge_model_path models/truthfulqa-truth-judge-llama2-7B.
`--include_info` also fetches the companion informativeness judge. Idempotent; HF_TOKEN is used when set.
"""

import argparse
from pathlib import Path

from aligner.core.cli import run_cli
from aligner.core.hub import snapshot

TRUTH_JUDGE = "allenai/truthfulqa-truth-judge-llama2-7B"
INFO_JUDGE = "allenai/truthfulqa-info-judge-llama2-7B"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo_id", default=TRUTH_JUDGE, help=f"the truth judge repository (default: {TRUTH_JUDGE})")
    p.add_argument("--models_dir", default="models",
                   help="parent folder; the judge goes to MODELS_DIR/<repo name> (default: models)")
    p.add_argument("--include_info", action="store_true", help=f"also download {INFO_JUDGE} (default: off)")
    p.add_argument("--revision", default=None, help="branch, tag or commit (default: main)")
    p.add_argument("--force", action="store_true", help="download again even if present (default: off)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    repos = [args.repo_id] + ([INFO_JUDGE] if args.include_info else [])
    results = []
    for repo in repos:
        out = Path(args.models_dir) / repo.split("/")[-1]
        print(f"{repo} -> {out.resolve()}")
        result = run_cli(snapshot, repo, out, revision=args.revision, force=args.force)
        print(f"done: {result.describe()}")
        results.append(result)
    return results


if __name__ == "__main__":
    main()
