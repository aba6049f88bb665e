#!/usr/bin/env python
"""Curriculum DPOP training of a LoRA adapter (first_improvement, the study's "best model" recipe).

Levels (easy, medium, hard) come from --data_files in order, or from --data_dir holding dpo_pairs_easy.jsonl,
dpo_pairs_medium.jsonl and dpo_pairs_hard.jsonl.  --epochs K runs the first K curriculum stages
(1 = easy; 2 = + first 50% medium; 3 = + first 60% hard; 4 = everything; the study's script always ran all
four: it parses --epochs but ignores it).  Prompts are the plain "context + question" format of the study's first
run.  As the study's script: a new AdamW (weight decay 0.01) and a new 100-step-warmup linear schedule for every
stage (--schedule per_stage; --schedule global for one over the run).  --study_compat reproduces the study's code
where it has a plain bug (README, "Differences from the study"): context, question and answer glued, the last
prompt token scored, whole sequences cut from the right at --max_length, each stage's last partial optimizer
step dropped, identical pairs and pairs with an empty field kept, the context read from 'context' only.

Examples:
    python first_improvement/training/train_dpop.py \\
        --model_path models/llama3-2-3b-instruct \\
        --data_files final_data/dpo_pairs_easy.jsonl,final_data/dpo_pairs_medium.jsonl,final_data/dpo_pairs_hard.jsonl \\
        --output_dir outputs/first_improvement/best_run
    accelerate launch --config_file configs/accelerate/ddp.yaml first_improvement/training/train_dpop.py ...
"""

from aligner.core.cli import parse_config, run_cli
from aligner.train.config import RECIPE_DEFAULTS, CurriculumData, DPOPTrainingConfig
from aligner.train.trainer import train_recipe


def parse_args(argv=None):
    return parse_config((CurriculumData, DPOPTrainingConfig), argv, description=__doc__, defaults=RECIPE_DEFAULTS["first"])


def main(argv=None):
    return train_recipe(*parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
