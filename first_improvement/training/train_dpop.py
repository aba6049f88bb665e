#!/usr/bin/env python
"""Curriculum DPOP training of a LoRA adapter (first_improvement, the study's "best model" recipe).

Levels (easy, medium, hard) come from --data_files in order, or from --data_dir holding dpo_pairs_easy.jsonl,
dpo_pairs_medium.jsonl and dpo_pairs_hard.jsonl.  --epochs K runs the first K curriculum stages
(1 = easy; 2 = + first 50% medium; 3 = + first 60% hard; 4 = everything).  Prompts are the plain
"context + question" format of the study's first run.

Examples:
    python first_improvement/training/train_dpop.py \\
        --model_path models/llama3-2-3b-instruct \\
        --data_files final_data/dpo_pairs_easy.jsonl,final_data/dpo_pairs_medium.jsonl,final_data/dpo_pairs_hard.jsonl \\
        --output_dir outputs/first_improvement/best_run --epochs 3
    accelerate launch --config_file configs/accelerate/ddp.yaml first_improvement/training/train_dpop.py ...
"""

import argparse

from aligner.core.cli import run_cli
from aligner.core.paths import PAIR_FILES
from aligner.train.config import DPOPTrainingConfig
from aligner.train.dpop_trainer import add_training_args

DEFAULTS = DPOPTrainingConfig(model_path="models/llama3-2-3b-instruct", output_dir="outputs/first_improvement/dpop",
                              beta=0.3, lam=50.0, lr=2e-4, warmup_steps=100, lr_scheduler="linear",
                              per_device_batch_size=1, grad_accum_steps=8, epochs=4, save_every_steps=250,
                              logging_steps=10, lora_target_modules=("q_proj", "v_proj"))
PROMPT_FORMAT = "plain"


def parse_args(argv=None, description: str = __doc__, defaults: DPOPTrainingConfig = DEFAULTS):
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_files", default=None,
                   help="comma-separated pair files, easiest level first (default: none; see --data_dir)")
    p.add_argument("--data_dir", "--data-dir", dest="data_dir", default=None,
                   help=f"folder holding {', '.join(PAIR_FILES)} (default: none)")
    add_training_args(p, defaults)
    return p.parse_args(argv)


def main(argv=None, prompt_format: str = PROMPT_FORMAT, args=None):
    args = args if args is not None else parse_args(argv)
    from aligner.core.runinfo import setup_logging
    from aligner.train.dpop_trainer import config_from_args, train_dpop
    from aligner.train.preference import load_levels, resolve_data_files

    setup_logging()
    files = resolve_data_files(args.data_files, args.data_dir, PAIR_FILES)
    levels = load_levels(files, skip_invalid=args.skip_invalid)
    cfg = config_from_args(args, prompt_format=prompt_format)
    return train_dpop(cfg, levels, run_args={**vars(args), "prompt_format": prompt_format})


if __name__ == "__main__":
    run_cli(main)
