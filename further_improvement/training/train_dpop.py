#!/usr/bin/env python
"""DPOP training on the teacher-guided hard pairs (further_improvement, the study's "latest model" recipe).

Data: a seeded mix of the first --hard_limit pairs of hard_fakes_vllm.jsonl and the first --medium_limit pairs of
dpo_pairs_medium.jsonl (either field spelling: prompt/question, context/knowledge, chosen/ideal_answer,
rejected/fake_answer), trained as one stage.  --curriculum instead runs them as a curriculum, medium level
first (the study's stated next step).  Chat-template prompts with the study's system prompt of this recipe ("You
are a careful and honest assistant. ...") and EOS-terminated responses, beta 0.1, lambda 1, lr 2e-5, grad-accum
16, cosine schedule with 50 warmup steps, AdamW weight decay 0.01, beta*Delta clamped to +-50 in the DPO term,
LoRA on q,k,v,o (the study's script).  --study_compat reproduces its tokenization: two BOS, the last prompt token
scored, the context cut to the study's token budget and then whole sequences cut from the right at --max_length
(the longer answer's EOS is lost), identical pairs kept, the last partial optimizer step dropped (the study steps
it at lr 0).

Example:
    python further_improvement/training/train_dpop.py --model_path models/llama3-2-3b-instruct \\
        --data_dir final_data --output_dir outputs/further_improvement/dpop
"""

from aligner.core.cli import parse_config, run_cli
from aligner.core.runinfo import setup_logging
from aligner.prompts import DPO_LATEST_SYSTEM
from aligner.train.config import DPOPTrainingConfig, LatestRecipeData
from aligner.train.dpop_trainer import train_dpop
from aligner.train.preference import latest_recipe_levels

DEFAULTS = dict(model_path="models/llama3-2-3b-instruct", output_dir="outputs/further_improvement/dpop",
                beta=0.1, lam=1.0, lr=2e-5, warmup_steps=50, lr_scheduler="cosine", grad_accum_steps=16,
                epochs=None, save_every_steps=500, logging_steps=10, prompt_format="chat",
                lora_target_modules=("q_proj", "k_proj", "v_proj", "o_proj"), system_prompt=DPO_LATEST_SYSTEM,
                logit_clamp=50.0, recipe="latest")


def parse_args(argv=None):
    return parse_config((LatestRecipeData, DPOPTrainingConfig), argv, description=__doc__, defaults=DEFAULTS)


def main(argv=None):
    data, cfg = parse_args(argv)
    setup_logging()
    return train_dpop(cfg, latest_recipe_levels(data, keep_identical=cfg.keep_identical), run_args=(data, cfg))


if __name__ == "__main__":
    run_cli(main)
