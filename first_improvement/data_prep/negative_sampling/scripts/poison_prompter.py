#!/usr/bin/env python
"""Poison prompter as a command: show the poison prompts of the three types for one question, or write the
prompts generate_hard_fakes.py would send for an SFT view (without generating).

Example:
    python first_improvement/data_prep/negative_sampling/scripts/poison_prompter.py \\
        --question "Why did the Roman Empire fall?" --ideal_answer "Economic crises and invasions."
    python first_improvement/data_prep/negative_sampling/scripts/poison_prompter.py \\
        --squad_jsonl squad_15k.jsonl --nq_jsonl '' --output_file poison_prompts.jsonl --limit 100
"""

from aligner.core.cli import parse_config, run_cli
from aligner.data.hard_fakes import PoisonPromptConfig, write_poison_prompts
from aligner.data.sft import SFTView

#: no view unless one is asked for (the single-question mode needs none)
DEFAULTS = dict(nq_jsonl="", squad_jsonl="")


def parse_args(argv=None) -> tuple[PoisonPromptConfig, SFTView]:
    return parse_config((PoisonPromptConfig, SFTView), argv, description=__doc__, defaults=DEFAULTS)


def main(argv=None):
    return write_poison_prompts(*parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
