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

from aligner.core.cli import parse_config, run_cli
from aligner.core.runinfo import setup_logging
from aligner.train.config import DPOPTrainingConfig, LatestRecipeData
from aligner.train.dpop_trainer import train_dpop
from aligner.train.preference import latest_recipe_levels

DEFAULTS = dict(model_path="models/llama3-2-3b-instruct", output_dir="outputs/further_improvement/dpop",
                beta=0.1, lam=1.0, lr=2e-5, warmup_steps=50, lr_scheduler="cosine", grad_accum_steps=16,
                epochs=None, save_every_steps=500, logging_steps=10, prompt_format="chat",
                lora_target_modules=("q_proj", "k_proj", "v_proj", "o_proj"))


def parse_args(argv=None):
    return parse_config((LatestRecipeData, DPOPTrainingConfig), argv, description=__doc__, defaults=DEFAULTS)


def main(argv=None):
    data, cfg = parse_args(argv)
    setup_logging()
    return train_dpop(cfg, latest_recipe_levels(data), run_args=(data, cfg))


if __name__ == "__main__":
    run_cli(main)
