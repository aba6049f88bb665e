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

import argparse
import logging
from pathlib import Path

from aligner.core.cli import run_cli
from aligner.core.io import write_json_atomic, write_jsonl_atomic
from aligner.core.runinfo import setup_logging, write_run_config
from aligner.data.sources.halueval import DEFAULT_DATA_PATH, load_halueval
from aligner.eval.tasks.halueval import (
    SIMILARITY_METHOD,
    aggregate_similarity,
    rescore_detailed,
    run_file_name,
    run_name_from_file,
    run_similarity_eval,
)

logger = logging.getLogger("eval_halueval")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_path", default=None,
                   help="generator model folder or hub id (required unless --from_detailed) (default: None)")
    p.add_argument("--lora_path", default=None,
                   help="LoRA adapter folder(s), comma/space separated; 'none' = the base model; several are "
                        "evaluated one after another on one loaded base (default: None, the base model)")
    p.add_argument("--run_name", default=None,
                   help="names the output files metrics_RUN.json / detailed_RUN.jsonl (required unless "
                        "--from_detailed, where it defaults to the detailed file's name + '_rescored') (default: None)")
    p.add_argument("--data_path", default=DEFAULT_DATA_PATH,
                   help=f"HaluEval qa_data.json (JSON lines) (default: {DEFAULT_DATA_PATH})")
    p.add_argument("--output_dir", default="evaluation/results/Halueval",
                   help="where the metrics and detailed files go (default: evaluation/results/Halueval)")
    p.add_argument("--batch_size", type=int, default=8,
                   help="generation batch size (HF backend); also the embedding/BERTScore batch (default: 8)")
    p.add_argument("--limit", type=int, default=-1, help="evaluate the first N rows only; -1 = all (default: -1)")
    p.add_argument("--max_new_tokens", type=int, default=128, help="generation length limit (default: 128)")
    p.add_argument("--embed_model", default="all-mpnet-base-v2",
                   help="sentence-transformers model for sim_right/sim_halluc (default: all-mpnet-base-v2)")
    p.add_argument("--bertscore_model", default="microsoft/deberta-v3-large",
                   help="BERTScore backbone; 'none' skips BERTScore (reported as null) "
                        "(default: microsoft/deberta-v3-large)")
    p.add_argument("--bertscore_num_layers", type=int, default=None,
                   help="BERTScore layer; needed for backbones bert_score does not know (default: None, "
                        "bert_score's choice for the model)")
    p.add_argument("--backend", choices=["auto", "hf", "vllm"], default="auto",
                   help="generation backend: vllm when it imports and a GPU is present, else hf (default: auto)")
    p.add_argument("--tensor_parallel_size", type=int, default=1, help="vLLM tensor parallelism (default: 1)")
    p.add_argument("--gpu_memory_utilization", type=float, default=0.7,
                   help="vLLM GPU memory share, leaving room for the scorers (default: 0.7)")
    p.add_argument("--dtype", default="auto", help="model dtype: auto (bf16 on GPU, fp32 on CPU), fp16, bf16, fp32 "
                                                   "(default: auto)")
    p.add_argument("--chunk_size", type=int, default=0,
                   help="samples generated and scored between two appends to the detailed file; 0 = 16 x "
                        "batch_size for hf, 1024 for vllm (default: 0)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its detailed file (default: off, start afresh)")
    p.add_argument("--from_detailed", default=None,
                   help="re-score an existing detailed file (BLEU, ROUGE-L, hallucination rate, margin) without "
                        "any model, and write metrics for it (default: None)")
    args = p.parse_args(argv)
    if args.from_detailed is None and (not args.model_path or not args.run_name):
        p.error("--model_path and --run_name are required (unless --from_detailed)")
    return args


def rescore(args) -> dict:
    records, metrics = rescore_detailed(args.from_detailed)
    run = args.run_name or run_name_from_file(args.from_detailed, "detailed") + "_rescored"
    out = Path(args.output_dir)
    result = {"model": args.model_path, "lora_path": args.lora_path, "method": SIMILARITY_METHOD, **metrics,
              "rescored_from": str(args.from_detailed)}
    write_jsonl_atomic(out / run_file_name("detailed", run, ext="jsonl"), records)
    write_json_atomic(out / run_file_name("metrics", run), result)
    write_run_config(out, args)
    logger.info("re-scored %s: %s", args.from_detailed, result)
    return result


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    if args.from_detailed:
        return rescore(args)

    from aligner.eval.metrics.similarity import EmbeddingSimilarity, load_bertscorer
    from aligner.lm.interface import load_lm

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = load_halueval(args.data_path, args.limit)
    logger.info("%d HaluEval rows from %s", len(rows), args.data_path)
    lm = load_lm(args.backend, args.model_path, args.lora_path, batch_size=args.batch_size, dtype=args.dtype,
                 tensor_parallel_size=args.tensor_parallel_size, gpu_memory_utilization=args.gpu_memory_utilization)
    backend = type(lm).__name__
    write_run_config(out, args, extra={"backend": backend, "n_rows": len(rows)})
    embedder = EmbeddingSimilarity(args.embed_model, batch_size=max(args.batch_size, 32))
    bertscorer = load_bertscorer(args.bertscore_model, args.bertscore_num_layers, batch_size=max(args.batch_size, 32))
    chunk = args.chunk_size or (1024 if backend == "VLLMLM" else 16 * args.batch_size)

    results = {}
    names = list(lm.adapter_names)
    for name in names:
        lm.set_adapter(name)
        lora = lm.adapter_paths.get(name)
        detailed = out / run_file_name("detailed", args.run_name, name, len(names), "jsonl")
        logger.info("evaluating %s (adapter: %s) -> %s", args.model_path, lora or "none", detailed)
        records = run_similarity_eval(lm, rows, embedder, bertscorer, detailed, resume=args.resume,
                                      max_new_tokens=args.max_new_tokens, chunk_size=chunk)
        metrics = {"model": args.model_path, "lora_path": lora, "method": SIMILARITY_METHOD,
                   **aggregate_similarity(records)}
        write_json_atomic(out / run_file_name("metrics", args.run_name, name, len(names)), metrics)
        logger.info("%s: hallucination rate %.4f, margin %.4f, BERTScore %s, BLEU %.4f, ROUGE-L %.4f (%d samples)",
                    name or "base", metrics["hallucination_rate"], metrics["avg_confidence_margin"],
                    metrics["avg_bert_score"], metrics["avg_bleu"], metrics["avg_rouge_l"], metrics["total_samples"])
        results[name or "base"] = metrics
    return results


if __name__ == "__main__":
    run_cli(main)
