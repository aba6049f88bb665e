#!/usr/bin/env python
"""Stage 3 (SQuAD v2 validation set): create_squad_training.py with the validation defaults (--csv_file
datasets/squad2/validation.csv, 667 answerable + 333 unanswerable rows, --output_file val_squad.jsonl, and a CSV of
at most 1,000 rows taken whole and shuffled, as the study's validation script); the reading, sampling and record
format are the same.

Example:
    python first_improvement/data_prep/scripts/create_squad_validation.py --csv_file datasets/squad2/validation.csv
"""

from aligner.core.cli import parse_config, run_cli
from aligner.data.sft import SquadConfig, make_squad_set

#: the validation set's settings where they differ from SquadConfig's
DEFAULTS = dict(csv_file="datasets/squad2/validation.csv", output_file="val_squad.jsonl", n_answerable=667,
                n_unanswerable=333, whole_file_when_small=True)


def parse_args(argv=None) -> SquadConfig:
    return parse_config(SquadConfig, argv, description=__doc__, defaults=DEFAULTS)


def main(argv=None):
    return make_squad_set(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
