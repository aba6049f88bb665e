#!/usr/bin/env python
"""Curriculum DPOP training with the chat template (first_improvement, "improved" variant).

Same trainer, data, curriculum and flags as train_dpop.py; the prompt is the model's chat template with the
system message "You are a helpful AI assistant. Use the provided context to answer the question." and the
user turn "Context: {context}\\n\\nQuestion: {prompt}", and the tokenizer's EOS token is appended to both
responses.  The study's script for this recipe cannot run as committed; it was written for one AdamW and one
100-step-warmup linear schedule over the whole run, which is this script's default (--schedule global).
--study_compat reproduces its tokenization: two BOS, the last prompt token scored, whole sequences cut from the
right at --max_length (EOS first), identical pairs and pairs with an empty field kept, the context read from
'context' only, each stage's last partial optimizer step dropped.

Example:
    python first_improvement/training/train_dpop_improved.py --model_path models/llama3-2-3b-instruct \\
        --data_dir final_data --output_dir outputs/first_improvement/improved --epochs 3
"""

from aligner.core.cli import parse_config, run_cli
from aligner.train.config import RECIPE_DEFAULTS, CurriculumData, DPOPTrainingConfig
from aligner.train.trainer import train_recipe


def parse_args(argv=None):
    return parse_config((CurriculumData, DPOPTrainingConfig), argv, description=__doc__, defaults=RECIPE_DEFAULTS["improved"])


def main(argv=None):
    return train_recipe(*parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
