#!/usr/bin/env python
"""DPOP training on the teacher-guided hard pairs (further_improvement, the study's "latest model" recipe).

Data: a seeded mix of the first --hard_limit pairs of hard_fakes_vllm.jsonl and the first --medium_limit pairs of
dpo_pairs_medium.jsonl (either field spelling: prompt/question, context/knowledge, chosen/ideal_answer,
rejected/fake_answer), trained as one stage.  --curriculum instead runs them as a curriculum, medium level
first (the study's stated next step).  Chat-template prompts with the study's system prompt of this recipe ("You
are a careful and honest assistant. ...") and EOS-terminated responses, beta 0.1, lambda 1, lr 2e-5, grad-accum
16, cosine schedule with 50 warmup steps, AdamW weight decay 0.01, beta*Delta clamped to +-50 in the DPO term,
LoRA on q,k,v,o (the study's script).  --study_compat reproduces its tokenization: two BOS, the last prompt token
scored, the context cut to the study's token budget (and decoded with the tokenizer's clean-up, as transformers
4.56 did) and then whole sequences cut from the right at --max_length (the longer answer's EOS is lost),
identical pairs and pairs with an empty field kept ('' for a missing one), 'knowledge' read only when there is no
'context' key, the last partial optimizer step dropped (the study steps it at lr 0).

Example:
    python further_improvement/training/train_dpop.py --model_path models/llama3-2-3b-instruct \\
        --data_dir final_data --output_dir outputs/further_improvement/dpop
"""

from aligner.core.cli import parse_config, run_cli
from aligner.train.config import RECIPE_DEFAULTS, DPOPTrainingConfig, LatestRecipeData
from aligner.train.trainer import train_recipe


def parse_args(argv=None):
    return parse_config((LatestRecipeData, DPOPTrainingConfig), argv, description=__doc__,
                        defaults=RECIPE_DEFAULTS["latest"])


def main(argv=None):
    return train_recipe(*parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
