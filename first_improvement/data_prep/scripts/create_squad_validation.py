#!/usr/bin/env python
"""Stage 3 (SQuAD v2 validation set): create_squad_training.py with the validation defaults (--csv_file
datasets/squad2/validation.csv, 667 answerable + 333 unanswerable rows, --output_file val_squad.jsonl); the
repair, sampling and record format are the same.

Example:
    python first_improvement/data_prep/scripts/create_squad_validation.py --csv_file datasets/squad2/validation.csv
"""

import argparse

from aligner.core.cli import run_cli
from aligner.core.runinfo import setup_logging
from aligner.data.sft import add_squad_args, squad_stage


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_squad_args(p, csv_file="datasets/squad2/validation.csv", output_file="val_squad.jsonl",
                   n_answerable=667, n_unanswerable=333)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    return squad_stage(args)


if __name__ == "__main__":
    run_cli(main)
