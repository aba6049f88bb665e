#!/usr/bin/env python
"""HaluEval QA, two-step flow, step 1: generate answers to judge in step 2.

The model gets the system prompt "You are a precise and accurate assistant. Read the context and give the
shortest correct answer to the question." and the user turn "Context: {knowledge}\\n\\nQuestion: {question}"
(chat template, greedy).  Writes OUTPUT_DIR/predictions_RUN.jsonl ({question, knowledge, right_answer,
generated_text}, appended as it goes; --resume continues an interrupted run) or --output_file, and
run_config.json beside it.  Several adapters in --lora_path give predictions_RUN_<adapter>.jsonl each.

Example:
    python evaluation/eval_haleval_llm_step1.py --model_path models/llama3-2-3b-instruct \\
        --lora_path path/to/adapter_or_none --output_dir evaluation/results/HaluevalLLM --run_name my_run
"""

import argparse
import logging
from pathlib import Path

from aligner.core.cli import run_cli
from aligner.core.runinfo import setup_logging, write_run_config
from aligner.data.sources.halueval import DEFAULT_DATA_PATH, STEP1_FIELDS, load_halueval
from aligner.eval.tasks.halueval import run_file_name, run_step1_generation

logger = logging.getLogger("eval_haleval_llm_step1")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_path", required=True, help="generator model folder or hub id (required)")
    p.add_argument("--lora_path", default=None,
                   help="LoRA adapter folder(s), comma/space separated; 'none' = the base model (default: None)")
    p.add_argument("--output_dir", default="evaluation/results/HaluevalLLM",
                   help="where predictions_RUN.jsonl goes (default: evaluation/results/HaluevalLLM)")
    p.add_argument("--run_name", default=None,
                   help="names the predictions file; required unless --output_file is given (default: None)")
    p.add_argument("--output_file", default=None,
                   help="explicit predictions file, instead of OUTPUT_DIR/predictions_RUN.jsonl; one adapter only "
                        "(default: None)")
    p.add_argument("--data_path", default=DEFAULT_DATA_PATH,
                   help=f"HaluEval qa_data.json (JSON lines) (default: {DEFAULT_DATA_PATH})")
    p.add_argument("--limit", type=int, default=-1, help="the first N rows only; -1 = all (default: -1)")
    p.add_argument("--backend", choices=["auto", "hf", "vllm"], default="auto",
                   help="vllm when it imports and a GPU is present, else hf (default: auto)")
    p.add_argument("--batch_size", type=int, default=8, help="generation batch size (HF backend) (default: 8)")
    p.add_argument("--max_new_tokens", type=int, default=128, help="generation length limit (default: 128)")
    p.add_argument("--tensor_parallel_size", type=int, default=1, help="vLLM tensor parallelism (default: 1)")
    p.add_argument("--gpu_memory_utilization", type=float, default=0.9, help="vLLM GPU memory share (default: 0.9)")
    p.add_argument("--dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU), fp16, bf16, fp32 (default: auto)")
    p.add_argument("--chunk_size", type=int, default=0,
                   help="samples generated between two appends to the predictions file; 0 = 16 x batch_size for "
                        "hf, 1024 for vllm (default: 0)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its predictions file (default: off, start afresh)")
    args = p.parse_args(argv)
    if not args.run_name and not args.output_file:
        p.error("give --run_name (or --output_file)")
    return args


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    from aligner.core.models import parse_adapter_paths
    from aligner.lm.interface import load_lm

    n_adapters = len(parse_adapter_paths(args.lora_path))
    if args.output_file and n_adapters > 1:
        raise SystemExit("--output_file takes one adapter; with several, use --output_dir and --run_name")
    rows = load_halueval(args.data_path, args.limit, required=STEP1_FIELDS)
    logger.info("%d HaluEval rows from %s", len(rows), args.data_path)
    lm = load_lm(args.backend, args.model_path, args.lora_path, batch_size=args.batch_size, dtype=args.dtype,
                 tensor_parallel_size=args.tensor_parallel_size, gpu_memory_utilization=args.gpu_memory_utilization)
    backend = type(lm).__name__
    chunk = args.chunk_size or (1024 if backend == "VLLMLM" else 16 * args.batch_size)
    written = {}
    for name in lm.adapter_names:
        lm.set_adapter(name)
        path = Path(args.output_file) if args.output_file else \
            Path(args.output_dir) / run_file_name("predictions", args.run_name, name, n_adapters, "jsonl")
        write_run_config(path.parent, args, extra={"backend": backend, "n_rows": len(rows)},
                         filename="run_config_step1.json")  # step 2 may write into the same folder
        logger.info("generating with adapter %s -> %s", lm.adapter_paths.get(name) or "none", path)
        records = run_step1_generation(lm, rows, path, resume=args.resume, max_new_tokens=args.max_new_tokens,
                                       chunk_size=chunk)
        written[name or "base"] = str(path)
        logger.info("%d predictions in %s", len(records), path)
    return written


if __name__ == "__main__":
    run_cli(main)
