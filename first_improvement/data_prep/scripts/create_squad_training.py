#!/usr/bin/env python
"""Stage 3 (SQuAD v2 training set): CSV export -> answers cells repaired (NumPy reprs such as
`{'text': array([...], dtype=object), ...}`) -> answerable / unanswerable split -> 10000 + 5000 sampled
(seeded) -> normalised JSON lines {id, title, question, context, answers, answer_starts, has_answer}.

Unanswerable questions get answers = [NO_ANSWER_TARGET] (see DatasetPrep.md) and has_answer = false.

Example:
    python first_improvement/data_prep/scripts/create_squad_training.py --csv_file datasets/squad2/train.csv --output_file squad_15k.jsonl
"""

import argparse

from aligner.core.cli import run_cli
from aligner.core.runinfo import setup_logging
from aligner.data.sft import add_squad_args, squad_stage


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_squad_args(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    return squad_stage(args)


if __name__ == "__main__":
    run_cli(main)
