#!/usr/bin/env python
"""Curriculum DPOP training with the chat template (first_improvement, "improved" variant).

Same trainer, data, curriculum and flags as train_dpop.py; the prompt is the model's chat template with the
system message "You are a helpful AI assistant. Use the provided context to answer the question." and the
user turn "Context: {context}\\n\\nQuestion: {prompt}", and the tokenizer's EOS token is appended to both
responses.

Example:
    python first_improvement/training/train_dpop_improved.py --model_path models/llama3-2-3b-instruct \\
        --data_dir final_data --output_dir outputs/first_improvement/improved --epochs 3
"""

from aligner.core.cli import parse_config, run_cli
from aligner.core.runinfo import setup_logging
from aligner.train.config import CurriculumData, DPOPTrainingConfig
from aligner.train.dpop_trainer import train_dpop
from aligner.train.preference import curriculum_levels

DEFAULTS = dict(model_path="models/llama3-2-3b-instruct", output_dir="outputs/first_improvement/dpop_improved",
                save_every_steps=250, logging_steps=10, prompt_format="chat")


def parse_args(argv=None):
    return parse_config((CurriculumData, DPOPTrainingConfig), argv, description=__doc__, defaults=DEFAULTS)


def main(argv=None):
    data, cfg = parse_args(argv)
    setup_logging()
    return train_dpop(cfg, curriculum_levels(data), run_args=(data, cfg))


if __name__ == "__main__":
    run_cli(main)
