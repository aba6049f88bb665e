#!/usr/bin/env python
"""Stage 8: curriculum preference pairs {prompt, context, chosen, rejected} per phase.

  easy   : ideal > easy fake
  medium : ideal > medium fake, hard fake > easy fake
  hard   : ideal > hard fake, hard fake > medium fake, medium fake > easy fake
(fake-vs-fake pairs use the first fake of each kind per item; chosen == rejected is never written).
--order shuffled (default, --seed 42): items in a seeded random order, each item's pairs adjacent, like the study's
string-hash order, so a prefix (the latest recipe's first 600 medium pairs) is a random sample; --order index:
data_index order (NQ first).

Output: dpo_pairs_easy.jsonl, dpo_pairs_medium.jsonl, dpo_pairs_hard.jsonl, each line
{prompt, context, chosen, rejected, data_index, phase, pair_type}.

Example:
    python first_improvement/data_prep/negative_sampling/scripts/create_dataset.py --input_dir . --output_dir final_data
"""

from aligner.core.cli import parse_config, run_cli
from aligner.data.pairs import CurriculumPairsConfig, write_curriculum_pairs


def parse_args(argv=None) -> CurriculumPairsConfig:
    return parse_config(CurriculumPairsConfig, argv, description=__doc__)


def main(argv=None):
    return write_curriculum_pairs(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
