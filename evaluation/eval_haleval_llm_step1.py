#!/usr/bin/env python
"""HaluEval QA, two-step flow, step 1: generate answers to judge in step 2.

The model gets the system prompt "You are a precise and accurate assistant. Read the context and give the
shortest correct answer to the question." and the user turn "Context: {knowledge}\\n\\nQuestion: {question}"
(chat template, greedy).  Writes OUTPUT_DIR/predictions_RUN.jsonl ({index, question, knowledge, right_answer,
generated_text}, index = the data row; appended as it goes; --resume continues an interrupted run) or
--output_file, and run_config_step1.json beside it.  Several adapters in --lora_path give predictions_RUN_<adapter>.jsonl each.

Example:
    python evaluation/eval_haleval_llm_step1.py --model_path models/llama3-2-3b-instruct \\
        --lora_path path/to/adapter_or_none --output_dir evaluation/results/HaluevalLLM --run_name my_run
"""

from aligner.core.cli import parse_config, run_cli
from aligner.eval.tasks.halueval_twostep import HaluEvalStep1Config, run_halueval_step1


def parse_args(argv=None) -> HaluEvalStep1Config:
    return parse_config(HaluEvalStep1Config, argv, description=__doc__)


def main(argv=None):
    cfg = parse_args(argv)
    return run_halueval_step1(cfg)


if __name__ == "__main__":
    run_cli(main)
