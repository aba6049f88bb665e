#!/usr/bin/env python
"""Stage 6a: hard fakes. Every item of the SFT view gets a poison prompt (logical flaw / causal error /
unverifiable claim, cycling by position) and the instruct model writes a fluent but wrong answer.
Batched, through the HF or vLLM backend; appended per batch, so --resume continues an interrupted run (of the
same model, prompts and sampling settings: anything else is refused).

Output, one JSON object per line: {data_index, question, ideal_answer, fake_answer, type: hard_<poison type>,
raw_output}. Clean it next with hardfakeclearner.py.

Example:
    python first_improvement/data_prep/negative_sampling/scripts/generate_hard_fakes.py \\
        --squad_jsonl data_prep/squad_15k.jsonl --nq_jsonl data_prep/train_nq_rag.jsonl \\
        --model_path models/llama3-2-3b-instruct --output_file hard_fakes.jsonl --resume
"""

from aligner.core.cli import parse_config, run_cli
from aligner.data.hard_fakes import HardFakeConfig, write_hard_fakes
from aligner.data.sft import SFTView


def parse_args(argv=None) -> tuple[HardFakeConfig, SFTView]:
    return parse_config((HardFakeConfig, SFTView), argv, description=__doc__)


def main(argv=None):
    return write_hard_fakes(*parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
