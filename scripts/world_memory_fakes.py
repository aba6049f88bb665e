#!/usr/bin/env python
"""The open-book world's hard fakes: the memory answer of every conflict item of a view the project's own stages
built from the world's squad.csv (create_squad_training.py, generate_easy_fakes.py --view_file), keyed by the view's
data_index, in the format fix_fakes.py reads (--hard_file).

Example:
    python scripts/world_memory_fakes.py --view_file prep/easy/sft_view.jsonl --items_file world/items.jsonl \\
        --output_file prep/hard/memory_fakes.jsonl
"""

from aligner.core.cli import parse_config, run_cli
from aligner.data.world_files import MemoryFakesConfig, write_memory_fakes


def parse_args(argv=None) -> MemoryFakesConfig:
    return parse_config(MemoryFakesConfig, argv, description=__doc__)


def main(argv=None):
    counts = write_memory_fakes(parse_args(argv))
    print(counts)
    return counts


if __name__ == "__main__":
    run_cli(main)
