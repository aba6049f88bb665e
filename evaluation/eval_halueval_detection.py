#!/usr/bin/env python
"""HaluEval's own benchmark, hallucination detection (Li et al. 2023), on its qa, dialogue and summarization splits.

For each sample a seeded coin shows the model the right or the hallucinated answer (response, summary); the model
answers Yes (hallucinated) or No after HaluEval's instruction and system prompt for the split.  --scoring generate
(the paper's): greedy, the answer parsed as HaluEval's evaluate.py parses it, neither or both of Yes/No = invalid;
--scoring loglik: log p(" Yes") against log p(" No").  Reports accuracy, the invalid count, the Yes rate and the
accuracy on each gold label, per split, in OUTPUT_DIR/<split>/metrics_RUN.json with detailed_RUN.jsonl beside it.

The data: evaluation/HaluEval/data/<split>_data.json (--data_dir); fetch the two splits the study did not use with
    python scripts/download_data.py --what halueval --halueval_splits qa,dialogue,summarization

Example (the base and two adapters on one loaded base, 200 samples per split):
    python evaluation/eval_halueval_detection.py --model_path models/llama3-2-3b-instruct \\
        --lora_path none outputs/train/dpop_best outputs/train/dpop_last --run_name cmp --limit 200
"""

from aligner.core.cli import parse_config, run_cli
from aligner.eval.tasks.halueval_detection import HaluEvalDetectionConfig, run_halueval_detection


def parse_args(argv=None) -> HaluEvalDetectionConfig:
    return parse_config(HaluEvalDetectionConfig, argv, description=__doc__)


def main(argv=None):
    return run_halueval_detection(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
