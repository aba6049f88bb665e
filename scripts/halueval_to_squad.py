#!/usr/bin/env python
"""Write a slice of HaluEval QA rows as a SQuAD v2-format CSV (question, context = knowledge,
answers = right_answer as NumPy reprs), so `make data` can run on real text without a SQuAD download.

The demo takes its slice from rows disjoint from the ones it evaluates on (--start past --eval_rows).

Example:
    python scripts/halueval_to_squad.py --data_path ../shared/data/halueval/qa_data.json \\
        --output_file outputs/demo/data/squad_from_halueval.csv --start 1000 --n 300
"""

from aligner.core.cli import parse_config, run_cli
from aligner.data.sft import HaluEvalSquadSliceConfig, write_halueval_squad_slice


def parse_args(argv=None) -> HaluEvalSquadSliceConfig:
    return parse_config(HaluEvalSquadSliceConfig, argv, description=__doc__)


def main(argv=None):
    return write_halueval_squad_slice(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
