#!/usr/bin/env python
"""Stage 4: easy fakes (topic mismatch). Builds the unified SFT view of the NQ RAG and SQuAD records
{question, context, ideal_answer, data_index} and gives every item the ideal answer of a different,
randomly drawn item (seeded; never equal to its own answer, never an abstention of --abstention_target).

Output, one JSON object per line: {data_index, question, ideal_answer, fake_answer, type: easy_mismatch}.

Example:
    python first_improvement/data_prep/negative_sampling/scripts/generate_easy_fakes.py \\
        --nq_jsonl data_prep/train_nq_rag.jsonl --squad_jsonl data_prep/squad_15k.jsonl --output_file easy_fakes.jsonl
"""

from aligner.core.cli import parse_config, run_cli
from aligner.data.negatives import EasyFakeConfig, write_easy_fakes
from aligner.data.sft import SFTView


def parse_args(argv=None) -> tuple[EasyFakeConfig, SFTView]:
    return parse_config((EasyFakeConfig, SFTView), argv, description=__doc__)


def main(argv=None):
    return write_easy_fakes(*parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
