#!/usr/bin/env python
"""Write a slice of HaluEval QA rows as a SQuAD v2-format CSV (question, context = knowledge,
answers = right_answer as NumPy reprs), so `make data` can run on real text without a SQuAD download.

The demo takes its slice from rows disjoint from the ones it evaluates on (--start past --eval_rows).

Example:
    python scripts/halueval_to_squad.py --data_path ../shared/data/halueval/qa_data.json \\
        --output_file outputs/demo/data/squad_from_halueval.csv --start 1000 --n 300
"""

import argparse
from pathlib import Path

from aligner.core.cli import run_cli
from aligner.core.io import read_records
from aligner.core.paths import halueval_path
from aligner.core.runinfo import write_run_config
from aligner.data.sft import halueval_to_squad_csv


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_path", default=str(halueval_path()), help="HaluEval qa_data.json (default: %(default)s)")
    p.add_argument("--output_file", required=True, help="the SQuAD-format CSV to write")
    p.add_argument("--start", type=int, default=1000, help="first HaluEval row used (0-based) (default: %(default)s)")
    p.add_argument("--n", type=int, default=300, help="number of rows (default: %(default)s)")
    p.add_argument("--eval_rows", type=int, default=50,
                   help="rows [0, eval_rows) are kept for evaluation; --start must not overlap them (default: %(default)s)")
    p.add_argument("--unanswerable_every", type=int, default=0,
                   help="every k-th row gets an empty answer (SQuAD v2 unanswerable); 0 = none (default: %(default)s)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.start < args.eval_rows:
        raise SystemExit(f"error: --start {args.start} overlaps the evaluation rows [0, {args.eval_rows})")
    rows = read_records(args.data_path, ["knowledge", "question", "right_answer"], limit=args.start + args.n)
    rows = rows[args.start:]
    if len(rows) < args.n:
        raise SystemExit(f"error: {args.data_path} has only {args.start + len(rows)} rows")
    halueval_to_squad_csv(rows, args.output_file, unanswerable_every=args.unanswerable_every)
    write_run_config(Path(args.output_file).parent, args, filename="halueval_to_squad_run_config.json",
                     extra={"rows": [args.start, args.start + len(rows)]})
    print(f"wrote {len(rows)} HaluEval rows [{args.start}, {args.start + len(rows)}) as SQuAD CSV "
          f"{args.output_file} (disjoint from evaluation rows [0, {args.eval_rows}))")


if __name__ == "__main__":
    run_cli(main)
