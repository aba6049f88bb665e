#!/usr/bin/env python
"""DPOP training on the teacher-guided hard pairs (further_improvement, the study's "latest model" recipe).

Data: a seeded mix of the first --hard_limit pairs of hard_fakes_vllm.jsonl and the first --medium_limit pairs of
dpo_pairs_medium.jsonl (either field spelling: prompt/question, context/knowledge, chosen/ideal_answer,
rejected/fake_answer), trained as one stage.  --curriculum instead runs them as a curriculum, medium level
first (the study's stated next step).  Chat-template prompts with EOS-terminated responses, beta 0.1,
lr 2e-5, grad-accum 16, cosine schedule with 50 warmup steps, LoRA on q,k,v,o (the study's script).

Example:
    python further_improvement/training/train_dpop.py --model_path models/llama3-2-3b-instruct \\
        --data_dir final_data --output_dir outputs/further_improvement/dpop
"""

import argparse
from pathlib import Path

from aligner.core.cli import run_cli
from aligner.train.config import DPOPTrainingConfig
from aligner.train.dpop_trainer import add_training_args

DEFAULTS = DPOPTrainingConfig(model_path="models/llama3-2-3b-instruct", output_dir="outputs/further_improvement/dpop",
                              beta=0.1, lam=1.0, lr=2e-5, warmup_steps=50, lr_scheduler="cosine",
                              per_device_batch_size=1, grad_accum_steps=16, epochs=None, save_every_steps=500,
                              logging_steps=10, prompt_format="chat",
                              lora_target_modules=("q_proj", "k_proj", "v_proj", "o_proj"))
HARD_FILE = "hard_fakes_vllm.jsonl"
MEDIUM_FILE = "dpo_pairs_medium.jsonl"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", "--data-dir", dest="data_dir", default="final_data",
                   help=f"folder holding {HARD_FILE} and {MEDIUM_FILE} (default: %(default)s)")
    p.add_argument("--hard_file", default=None, help=f"teacher-guided hard pairs (default: DATA_DIR/{HARD_FILE})")
    p.add_argument("--medium_file", default=None, help=f"medium pairs (default: DATA_DIR/{MEDIUM_FILE})")
    p.add_argument("--hard_limit", type=int, default=6000, help="first N hard pairs used (default: %(default)s)")
    p.add_argument("--medium_limit", type=int, default=600, help="first N medium pairs used (default: %(default)s)")
    p.add_argument("--mix_seed", type=int, default=42, help="seed of the hard+medium mix shuffle (default: %(default)s)")
    p.add_argument("--curriculum", action="store_true",
                   help="medium then hard as curriculum levels instead of one mixed stage; --epochs then defaults "
                        "to every stage (default: off)")
    p.add_argument("--prompt_format", choices=["chat", "plain"], default=DEFAULTS.prompt_format,
                   help="chat template + EOS, or the plain context+question format (default: %(default)s)")
    add_training_args(p, DEFAULTS)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from aligner.core.runinfo import setup_logging
    from aligner.train.dpop_trainer import config_from_args, train_dpop
    from aligner.train.preference import load_level, mixed_level

    setup_logging()
    data_dir = Path(args.data_dir)
    hard_path = Path(args.hard_file) if args.hard_file else data_dir / HARD_FILE
    medium_path = Path(args.medium_file) if args.medium_file else data_dir / MEDIUM_FILE
    # The teacher may produce no usable pair (a small teacher writing no valid JSON): train on what there is.
    hard = load_level(hard_path, "hard", limit=args.hard_limit, skip_invalid=args.skip_invalid, allow_empty=True)
    medium = load_level(medium_path, "medium", limit=args.medium_limit, skip_invalid=args.skip_invalid,
                        allow_empty=True)
    print(f"selection: {len(hard.pairs)} hard + {len(medium.pairs)} medium pairs")
    if not hard.pairs and not medium.pairs:
        raise SystemExit(f"no usable pairs in {hard_path} or {medium_path}")
    if args.curriculum:
        levels = [medium, hard]
        if args.epochs is None:
            args.epochs = len(levels) + 1
    else:
        levels = [mixed_level([hard, medium], seed=args.mix_seed)]
        if args.epochs is None:
            args.epochs = 1
    cfg = config_from_args(args, prompt_format=args.prompt_format)
    return train_dpop(cfg, levels, run_args=vars(args))


if __name__ == "__main__":
    run_cli(main)
