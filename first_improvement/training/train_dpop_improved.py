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

import dataclasses
import importlib.util
from pathlib import Path

from aligner.core.cli import run_cli

# The sibling script holds the flags and the data handling; load it under its own name.
_spec = importlib.util.spec_from_file_location("first_improvement_train_dpop", Path(__file__).with_name("train_dpop.py"))
base = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(base)

PROMPT_FORMAT = "chat"
DEFAULTS = dataclasses.replace(base.DEFAULTS, output_dir="outputs/first_improvement/dpop_improved",
                               prompt_format=PROMPT_FORMAT)


def parse_args(argv=None):
    return base.parse_args(argv, description=__doc__, defaults=DEFAULTS)


def main(argv=None):
    return base.main(prompt_format=PROMPT_FORMAT, args=parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
