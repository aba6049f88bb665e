#!/usr/bin/env python
"""HaluEval QA, similarity flow: the model answers from the context; the answer counts as hallucinated when
its sentence embedding is closer to HaluEval's hallucinated answer than to the right one.  BERTScore F1,
sentence BLEU and ROUGE-L against the right answer are reported beside it.

Writes OUTPUT_DIR/metrics_RUN.json, OUTPUT_DIR/detailed_RUN.jsonl (one record per sample, appended as it
goes; --resume continues an interrupted run) and OUTPUT_DIR/run_config.json.  With several adapters in
--lora_path, each is evaluated on the one loaded base and the files are named ..._RUN_<adapter>.

Examples:
    python evaluation/eval_halueval.py --model_path models/llama3-2-3b-instruct \\
        --run_name simple_halueval --output_dir evaluation/results/Halueval
    python evaluation/eval_halueval.py --model_path models/llama3-2-3b-instruct --lora_path "none,dpop_out" \\
        --run_name cmp --output_dir evaluation/results/Halueval
    python evaluation/eval_halueval.py --from_detailed evaluation/results/Halueval/detailed_baseline.jsonl \\
        --output_dir evaluation/results/Halueval
"""

from aligner.core.cli import parse_config, run_cli
from aligner.eval.tasks.halueval import HaluEvalSimilarityConfig, run_halueval_similarity


def parse_args(argv=None) -> HaluEvalSimilarityConfig:
    return parse_config(HaluEvalSimilarityConfig, argv, description=__doc__)


def main(argv=None):
    cfg = parse_args(argv)
    return run_halueval_similarity(cfg)


if __name__ == "__main__":
    run_cli(main)
