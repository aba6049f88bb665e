#!/usr/bin/env python
"""Fine-tune a sequence classifier to tell faithful from hallucinated answers given their context.

Data: the *_fakes_with_context.jsonl files of the data preparation ({data_index, question, context,
ideal_answer, fake_answer}). Every distinct (context, ideal_answer) is a faithful example (label 1,
"consistent"), every distinct (context, fake_answer) a hallucinated one (label 0, "hallucinated"). The
held-out split is made by data_index, so no context is in both splits. The model reads the pair
(context, answer) - the order the HaluEval step-2 judge uses for (knowledge, answer) - with the context cut
first when too long. Saved with id2label {0: hallucinated, 1: consistent}, so the output folder can be
passed to evaluation/eval_haleval_llm_step2.py --judge_model_path.
The logic lives in aligner/faithfulness_classifier.py.

Example:
    python old_training/fine_tune_deberta.py --data_dir outputs/data --output_dir models/deberta-faithfulness
"""

import argparse
import sys

from aligner.core.cli import run_cli
from aligner.core.runinfo import setup_logging
from aligner.train.classifier import FaithfulnessClassifierConfig, fakes_files, train_faithfulness_classifier


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("paths")
    g.add_argument("--model_path", default="microsoft/deberta-v3-base",
                   help="classifier to start from, folder or hub id (default: microsoft/deberta-v3-base)")
    g.add_argument("--data_files", default=None,
                   help="comma-separated *_fakes_with_context.jsonl files (default: none)")
    g.add_argument("--data_dir", default=None,
                   help="or a folder: every *_fakes_with_context.jsonl in it; one of the two is required "
                        "(default: none)")
    g.add_argument("--output_dir", default="models/deberta-faithfulness-judge",
                   help="the fine-tuned judge (default: models/deberta-faithfulness-judge)")
    g.add_argument("--limit", type=int, default=-1, help="records read per file; -1 = all (default: -1)")
    g = p.add_argument_group("data")
    g.add_argument("--eval_fraction", type=float, default=0.1,
                   help="share of data_index groups held out (default: 0.1)")
    g.add_argument("--include_question", action="store_true",
                   help="prefix the context with the question (default: off, as the step-2 judge sees "
                        "only knowledge and answer)")
    g.add_argument("--balance", action="store_true",
                   help="down-sample hallucinated training examples to the number of faithful ones (default: off)")
    g.add_argument("--max_length", type=int, default=512, help="tokens per pair, context cut first (default: 512)")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=float, default=2.0, help="passes over the training data (default: 2)")
    g.add_argument("--max_steps", type=int, default=-1, help="overrides --epochs when > 0 (default: -1)")
    g.add_argument("--batch_size", type=int, default=16, help="per device, train and eval (default: 16)")
    g.add_argument("--grad_accum_steps", type=int, default=1, help="micro-batches per optimizer step (default: 1)")
    g.add_argument("--lr", type=float, default=2e-5, help="peak learning rate (default: 2e-5)")
    g.add_argument("--weight_decay", type=float, default=0.01, help="AdamW weight decay (default: 0.01)")
    g.add_argument("--warmup_ratio", type=float, default=0.1, help="share of steps for LR warmup (default: 0.1)")
    g.add_argument("--logging_steps", type=int, default=50, help="optimizer steps between log lines (default: 50)")
    g.add_argument("--dtype", default="fp32", help="weights dtype; mixed precision via --bf16 (default: fp32)")
    g.add_argument("--bf16", action="store_true", help="bf16 mixed precision on GPU (default: off)")
    g.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")
    g.add_argument("--seed", type=int, default=42, help="seed for initialisation, shuffling and the split (default: 42)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    files = fakes_files(args.data_files, args.data_dir)
    if not files:
        print("error: no input: pass --data_files or a --data_dir holding *_fakes_with_context.jsonl",
              file=sys.stderr)
        raise SystemExit(1)
    return train_faithfulness_classifier(FaithfulnessClassifierConfig.from_args(args), files, run_args=args)


if __name__ == "__main__":
    run_cli(main)
