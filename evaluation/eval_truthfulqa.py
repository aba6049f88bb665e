#!/usr/bin/env python
"""TruthfulQA: exact MC1/MC2 and judged greedy generation, for a base model and any number of LoRA adapters.

Example (the study's command):
    python evaluation/eval_truthfulqa.py --model_path models/llama3-2-3b-instruct \\
        --judge_model_path models/truthfulqa-truth-judge-llama2-7B --run_name baseline \\
        --output_dir evaluation/results/TruthfulQA --limit -1 --mc_batch 64

Several adapters on one loaded base (files get the adapter's name: metrics_R_<adapter>.json ...):
    python evaluation/eval_truthfulqa.py ... --lora_path none outputs/dpop/epoch_1 outputs/dpop/epoch_2

Offline, with the TruthfulQA CSV instead of the Hugging Face dataset:
    python evaluation/eval_truthfulqa.py ... --data_path ../shared/data/truthfulqa/TruthfulQA.csv

Outputs in --output_dir: metrics_R.json, detailed_mc_R.jsonl, generations_R.jsonl (raw answers),
detailed_gen_R.jsonl (judged answers), run_config.json.  Only one model is in memory at a time: the policy
(all adapters) for MC and generation, then the judge.
"""

from aligner.core.cli import parse_config, run_cli
from aligner.eval.tasks.truthfulqa import TruthfulQAEvalConfig, run_truthfulqa_eval


def parse_args(argv=None) -> TruthfulQAEvalConfig:
    return parse_config(TruthfulQAEvalConfig, argv, description=__doc__)


def main(argv=None):
    return run_truthfulqa_eval(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
