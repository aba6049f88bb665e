#!/usr/bin/env python
"""NER swapper as a command: build the entity knowledge base from a file of texts and swap the entities of
each text (or of the --text strings) for different ones of the same label.

Input: JSON lines (--field picks the text; a list value uses its first element) or plain text, one per line.
Output: JSON lines {text, swapped, swaps} (--output_file), else printed.

Example:
    python first_improvement/data_prep/negative_sampling/scripts/ner_swapper.py --input_file squad_15k.jsonl \\
        --field answers --spacy_model rule --text "George Washington was born in 1732."
"""

from aligner.core.cli import parse_config, run_cli
from aligner.data.ner import NERSwapConfig, swap_texts


def parse_args(argv=None) -> NERSwapConfig:
    return parse_config(NERSwapConfig, argv, description=__doc__)


def main(argv=None):
    return swap_texts(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
