#!/usr/bin/env python
"""Stage 3 (SQuAD v2 training set): CSV export -> answers cells repaired (NumPy reprs such as
`{'text': array([...], dtype=object), ...}`) -> answerable / unanswerable split -> 10000 + 5000 sampled
(seeded) -> normalised JSON lines {id, title, question, context, answers, answer_starts, has_answer}.

Unanswerable questions get answers = [NO_ANSWER_TARGET] (see DatasetPrep.md) and has_answer = false.

Example:
    python first_improvement/data_prep/scripts/create_squad_training.py --csv_file datasets/squad2/train.csv --output_file squad_15k.jsonl
"""

from aligner.core.cli import parse_config, run_cli
from aligner.data.sft import SquadConfig, make_squad_set


def parse_args(argv=None) -> SquadConfig:
    return parse_config(SquadConfig, argv, description=__doc__)


def main(argv=None):
    return make_squad_set(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
