#!/usr/bin/env python
"""Stage 6b: clean the hard fakes. Cuts explanations and "Note:" text, leading answer labels and wrapping
quotes; drops empty fakes and copies of the ideal answer (counted by reason).

Example:
    python first_improvement/data_prep/negative_sampling/scripts/hardfakeclearner.py \\
        --input_file hard_fakes.jsonl --output_file cleaned_hard_fakes.jsonl
"""

from aligner.core.cli import parse_config, run_cli
from aligner.data.hard_fakes import CleanFakesConfig, clean_hard_fake_file


def parse_args(argv=None) -> CleanFakesConfig:
    return parse_config(CleanFakesConfig, argv, description=__doc__)


def main(argv=None):
    return clean_hard_fake_file(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
