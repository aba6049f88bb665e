#!/usr/bin/env python
"""Stage 3 (SQuAD v2 training set): CSV export -> answers cells repaired (NumPy reprs such as
`{'text': array([...], dtype=object), ...}`) -> answerable / unanswerable split -> 10000 + 5000 sampled
(seeded) -> normalised JSON lines {id, title, question, context, answers, answer_starts, has_answer}.

Unanswerable questions get answers = [NO_ANSWER_TARGET] (see DatasetPrep.md) and has_answer = false.

Example:
    python first_improvement/data_prep/scripts/create_squad_training.py --csv_file datasets/squad2/train.csv --output_file squad_15k.jsonl
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from aligner.io import DataError  # noqa: E402
from aligner.runinfo import setup_logging, write_run_config  # noqa: E402
from aligner.sft_data import NO_ANSWER_TARGET, run_squad  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--csv_file", default="datasets/squad2/train.csv",
                   help="SQuAD v2 CSV with columns question, context, answers (id, title optional) (default: %(default)s)")
    p.add_argument("--output_file", default="squad_15k.jsonl", help="normalised JSON lines (default: %(default)s)")
    p.add_argument("--n_answerable", type=int, default=10000, help="answerable rows sampled, -1 = all (default: %(default)s)")
    p.add_argument("--n_unanswerable", type=int, default=5000, help="unanswerable rows sampled, -1 = all (default: %(default)s)")
    p.add_argument("--no_answer_target", default=NO_ANSWER_TARGET,
                   help="answer given to unanswerable questions (default: %(default)r)")
    p.add_argument("--limit", type=int, default=-1,
                   help="keep at most this many of the shuffled sample, -1 = all (default: %(default)s)")
    p.add_argument("--seed", type=int, default=42, help="sampling and shuffling seed (default: %(default)s)")
    p.add_argument("--skip_invalid", action="store_true",
                   help="skip (and count) rows with unreadable answers instead of stopping (default: %(default)s)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    out_dir = Path(args.output_file).resolve().parent
    write_run_config(out_dir, args)
    counts = run_squad(args.csv_file, args.output_file, args.n_answerable, args.n_unanswerable, seed=args.seed,
                       limit=args.limit, no_answer_target=args.no_answer_target, skip_invalid=args.skip_invalid)
    write_run_config(out_dir, args, extra={"counts": counts})
    print(json.dumps(counts, indent=2))
    return counts


if __name__ == "__main__":
    try:
        main()
    except DataError as err:
        sys.exit(f"error: {err}")
