#!/usr/bin/env python
"""Stage 3 (SQuAD v2 training set): CSV export -> answers cells read (NumPy reprs such as
`{'text': array([...], dtype=object), ...}`) -> answerable / unanswerable pools in file order -> 10000 + 5000
sampled as the study did (pandas .sample(n, random_state=42) on each pool, unanswerable first, then
.sample(frac=1, random_state=42)) -> JSON lines {id, title, question, context, answers, answer_starts, has_answer}.

Unanswerable questions are written with answers [] and has_answer false (the SFT view leaves them out, as the
study's generators did). --study_compat classifies rows with the study's answers parser, which misreads every
NumPy-repr answer containing ")" as unanswerable, so the same CSV gives exactly the study's rows in its order.

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
