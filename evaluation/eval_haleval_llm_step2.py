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

import argparse
import logging
from pathlib import Path

from aligner.core.cli import run_cli
from aligner.core.io import write_json_atomic
from aligner.core.runinfo import setup_logging, write_run_config
from aligner.data.sources.halueval import load_predictions
from aligner.eval.tasks.halueval import (
    FAITHFULNESS_THRESHOLD,
    aggregate_faithfulness,
    run_file_name,
    run_name_from_file,
    run_step2_judging,
)

logger = logging.getLogger("eval_haleval_llm_step2")
HHEM = "vectara/hallucination_evaluation_model"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--predictions_dir", default=None,
                   help="folder whose predictions_*.jsonl files are all judged (default: None)")
    p.add_argument("--input_file", default=None, help="one predictions file to judge instead (default: None)")
    p.add_argument("--judge_model_path", default=HHEM,
                   help=f"HHEM or an NLI sequence classifier, folder or hub id (default: {HHEM})")
    p.add_argument("--output_dir", default="evaluation/results/HaluevalLLM",
                   help="where metrics_RUN.json / detailed_RUN.jsonl go (default: %(default)s)")
    p.add_argument("--run_name", default=None,
                   help="output name for --input_file (default: None, the predictions file's name without "
                        "'predictions_')")
    p.add_argument("--batch_size", type=int, default=32, help="judge batch size (default: 32)")
    p.add_argument("--bertscore_model", default="microsoft/deberta-v3-large",
                   help="BERTScore backbone; 'none' skips BERTScore (reported as null) "
                        "(default: microsoft/deberta-v3-large)")
    p.add_argument("--bertscore_num_layers", type=int, default=None,
                   help="BERTScore layer, for backbones bert_score does not know (default: None)")
    p.add_argument("--trust_remote_code", action=argparse.BooleanOptionalAction, default=True,
                   help="let the judge run its own code, as HHEM needs; --no-trust_remote_code refuses "
                        "(default: true)")
    p.add_argument("--judge_label", default=None,
                   help="the judge's label meaning consistent/entailment, when id2label does not make it plain "
                        "(default: None, found from id2label)")
    p.add_argument("--threshold", type=float, default=FAITHFULNESS_THRESHOLD,
                   help=f"faithfulness below this counts as hallucinated (default: {FAITHFULNESS_THRESHOLD})")
    p.add_argument("--dtype", default="auto", help="judge dtype: auto, fp16, bf16, fp32 (default: auto)")
    p.add_argument("--resume", action="store_true",
                   help="continue interrupted judging from the detailed files (default: off, start afresh)")
    args = p.parse_args(argv)
    if bool(args.predictions_dir) == bool(args.input_file):
        p.error("give exactly one of --predictions_dir and --input_file")
    return args


def prediction_files(args) -> list[tuple[Path, str]]:
    if args.input_file:
        path = Path(args.input_file)
        if not path.is_file():
            raise SystemExit(f"--input_file {path} does not exist")
        return [(path, args.run_name or run_name_from_file(path, "predictions"))]
    files = sorted(Path(args.predictions_dir).glob("predictions_*.jsonl"))
    if not files:
        raise SystemExit(f"no predictions_*.jsonl in {args.predictions_dir}; run eval_haleval_llm_step1.py first")
    return [(f, run_name_from_file(f, "predictions")) for f in files]


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    from aligner.eval.metrics.judges import load_faithfulness_judge
    from aligner.eval.metrics.similarity import load_bertscorer

    files = prediction_files(args)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_run_config(out, args, extra={"predictions": [str(f) for f, _ in files]})
    judge = load_faithfulness_judge(args.judge_model_path, batch_size=args.batch_size, dtype=args.dtype,
                                    trust_remote_code=args.trust_remote_code, positive_label=args.judge_label)
    bertscorer = load_bertscorer(args.bertscore_model, args.bertscore_num_layers, batch_size=args.batch_size)
    results = {}
    for path, run in files:
        predictions = load_predictions(path)
        detailed = out / run_file_name("detailed", run, ext="jsonl")
        logger.info("judging %d predictions from %s -> %s", len(predictions), path, detailed)
        records = run_step2_judging(predictions, judge, bertscorer, detailed, resume=args.resume,
                                    chunk_size=max(args.batch_size * 8, 64), threshold=args.threshold)
        metrics = aggregate_faithfulness(records)
        write_json_atomic(out / run_file_name("metrics", run), metrics)
        logger.info("%s: hallucination rate %.4f, faithfulness %.4f, BERTScore %s, BLEU %.4f (%d)", run,
                    metrics["hallucination_rate"], metrics["avg_faithfulness"], metrics["avg_bert_f1"],
                    metrics["avg_bleu"], metrics["total"])
        results[run] = metrics
    return results


if __name__ == "__main__":
    run_cli(main)
