#!/usr/bin/env python
"""IFEval: instruction following (541 prompts with verifiable instructions), for a base model and any number of
LoRA adapters; scored with lm-evaluation-harness's own IFEval checkers (pip install 'lm-eval[ifeval]').

Each prompt is one user turn of the model's chat template (fixed --date_string), answered greedily with up to
--max_new_tokens 1280 new tokens (the harness's setting).  Reported with lm-eval's names: prompt_level_strict_acc,
inst_level_strict_acc, prompt_level_loose_acc, inst_level_loose_acc.

Examples:
    python evaluation/eval_ifeval.py --model_path models/llama3-2-3b-instruct --run_name baseline
    python evaluation/eval_ifeval.py --model_path models/llama3-2-3b-instruct --lora_path none outputs/dpop \\
        --run_name cmp --data_path ../shared/data/ifeval/input_data.jsonl --nltk_data ../shared/data/nltk_data

Writes OUTPUT_DIR/metrics_RUN.json, OUTPUT_DIR/detailed_RUN.jsonl (key, prompt, response, per-instruction
verdicts; appended as it goes, --resume continues) and OUTPUT_DIR/run_config.json; with several adapters the
files are named ..._RUN_<adapter>.  The sentence checks need NLTK's punkt_tab data (python -m nltk.downloader
punkt_tab, or --nltk_data a folder holding it).
"""

from aligner.core.cli import parse_config, run_cli
from aligner.eval.tasks.ifeval import IFEvalConfig, run_ifeval


def parse_args(argv=None) -> IFEvalConfig:
    return parse_config(IFEvalConfig, argv, description=__doc__)


def main(argv=None):
    return run_ifeval(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
