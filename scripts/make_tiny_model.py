#!/usr/bin/env python
"""Build a tiny Llama-architecture model (causal LM or 2-label classifier) for offline tests and the demo.

Example:
    python scripts/make_tiny_model.py --output_dir models/tiny-llama
    python scripts/make_tiny_model.py --output_dir models/tiny-judge --kind seq_cls
"""

from aligner.core.cli import parse_config, run_cli
from aligner.testing.tiny import TinyModelConfig, TinyModelOutput, make_tiny_model


def parse_args(argv=None) -> tuple[TinyModelOutput, TinyModelConfig]:
    return parse_config((TinyModelOutput, TinyModelConfig), argv, description=__doc__)


def main(argv=None):
    return make_tiny_model(*parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
