#!/usr/bin/env python
"""Stage 7: context restore. Reattaches the question, context and ideal answer of the SFT view to every fake
by data_index, writing <kind>_fakes_with_context.jsonl for easy, medium and hard.

The view must be built from the same NQ/SQuAD files and --limit as the fakes; a fake whose question differs
from the view's question at its index stops the stage with the file and line (or is counted with
--skip_mismatched).

Output, one JSON object per line: {data_index, question, context, ideal_answer, fake_answer, type}.

Example:
    python first_improvement/data_prep/negative_sampling/scripts/fix_fakes.py --squad_jsonl squad_15k.jsonl \\
        --nq_jsonl train_nq_rag.jsonl --easy_file easy_fakes.jsonl --medium_file medium_fakes.jsonl \\
        --hard_file cleaned_hard_fakes.jsonl --output_dir .
"""

from aligner.core.cli import parse_config, run_cli
from aligner.data.negatives import RestoreContextConfig, restore_fake_files
from aligner.data.sft import SFTView


def parse_args(argv=None) -> tuple[RestoreContextConfig, SFTView]:
    return parse_config((RestoreContextConfig, SFTView), argv, description=__doc__)


def main(argv=None):
    return restore_fake_files(*parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
