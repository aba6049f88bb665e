#!/usr/bin/env python
"""Write the controlled open-book world (fictional people with default "memory" values, contexts that sometimes
state other values) in the project's formats: warm-start SFT rows, SQuAD-style rows, curriculum fakes, teacher
pairs, held-out HaluEval rows, the word vocabulary for make_tiny_model.py --word_vocab, and world.json.

Example:
    python scripts/make_world.py --output_dir outputs/world/data --seed 0
"""

from aligner.core.cli import parse_config, run_cli
from aligner.data.sources.world import WorldConfig
from aligner.data.world_files import WorldFilesConfig, write_world_files


def parse_args(argv=None) -> tuple[WorldFilesConfig, WorldConfig]:
    return parse_config((WorldFilesConfig, WorldConfig), argv, description=__doc__)


def main(argv=None):
    files, world = parse_args(argv)
    counts = write_world_files(world, files)
    print(", ".join(f"{k}={v}" for k, v in counts.items()))
    return counts


if __name__ == "__main__":
    run_cli(main)
