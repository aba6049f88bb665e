#!/usr/bin/env python
"""HaluEval QA, two-step flow, step 2: judge the step-1 answers for faithfulness to the knowledge.

Faithfulness is the judge's probability that the answer is consistent with the knowledge: Vectara HHEM
(its `predict` on (knowledge, answer) pairs; needs remote code) or any sequence-classification NLI model
(softmax, the entailment/consistent label from id2label).  An answer with faithfulness < 0.5 counts as a
hallucination.  BERTScore F1 and BLEU against the right answer are reported beside it.

Every predictions_*.jsonl in --predictions_dir is judged (or one --input_file): for predictions_RUN.jsonl
the outputs are OUTPUT_DIR/metrics_RUN.json (hallucination_rate, avg_faithfulness, avg_bert_f1, avg_bleu,
total), OUTPUT_DIR/detailed_RUN.jsonl and run_config.json.

Example:
    python evaluation/eval_haleval_llm_step2.py --predictions_dir evaluation/results/HaluevalLLM \\
        --judge_model_path models/hallucination_evaluation_model --output_dir evaluation/results/HaluevalLLM
"""

from aligner.core.cli import parse_config, run_cli
from aligner.eval.tasks.halueval_twostep import HaluEvalStep2Config, run_halueval_step2


def parse_args(argv=None) -> HaluEvalStep2Config:
    return parse_config(HaluEvalStep2Config, argv, description=__doc__)


def main(argv=None):
    cfg = parse_args(argv)
    return run_halueval_step2(cfg)


if __name__ == "__main__":
    run_cli(main)
