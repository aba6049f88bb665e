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

import argparse
from pathlib import Path

from aligner.data.sources.truthfulqa import HF_DATASET
from aligner.eval.tasks.truthfulqa import TruthfulQAEvalConfig


def parse_args(argv=None):
    d = TruthfulQAEvalConfig(run_name="")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_path", default=None,
                   help="policy model folder or hub id (required unless --judge_only) (default: None)")
    p.add_argument("--lora_path", nargs="*", default=None,
                   help="LoRA adapter folder(s), space or comma separated; 'none' = the base model. Several are "
                        "evaluated in turn on one loaded base (default: None = the base model only)")
    p.add_argument("--judge_model_path", default=None,
                   help="truth judge (allenai/truthfulqa-truth-judge-llama2-7B style causal LM); without it "
                        "answers are generated but not judged (default: None)")
    p.add_argument("--run_name", required=True, help="name used in every output file name (required)")
    p.add_argument("--output_dir", default=d.output_dir, help=f"where outputs go (default: {d.output_dir})")
    p.add_argument("--data_path", default=None,
                   help="local data instead of the Hugging Face dataset: the TruthfulQA CSV, or JSON/JSONL/parquet "
                        "rows in the HF schema (question, mc1_targets, mc2_targets) (default: None = hub)")
    p.add_argument("--hf_dataset", default=HF_DATASET,
                   help=f"hub dataset with the multiple_choice and generation configs (default: {HF_DATASET})")
    p.add_argument("--limit", type=int, default=d.limit, help=f"first N questions; -1 = all (default: {d.limit})")
    p.add_argument("--mc_batch", type=int, default=d.mc_batch,
                   help=f"MC choices scored per forward pass, across questions (default: {d.mc_batch})")
    p.add_argument("--no_share_prefix", action="store_true",
                   help="score every (question, choice) as its own sequence instead of packing a question's "
                        "choices behind one copy of its prefix (same numbers; default: off)")
    p.add_argument("--gen_batch_size", type=int, default=d.gen_batch_size,
                   help=f"prompts per generate call, left padded (HF backend) (default: {d.gen_batch_size})")
    p.add_argument("--max_new_tokens", type=int, default=d.max_new_tokens,
                   help=f"greedy answer length (default: {d.max_new_tokens})")
    p.add_argument("--stop_sequences", nargs="*", default=None,
                   help="cut answers at these strings; '\\n' is a newline, e.g. --stop_sequences '\\nQ:' "
                        "(default: none, as the study)")
    p.add_argument("--judge_batch_size", type=int, default=d.judge_batch_size,
                   help=f"judge sequences per forward (two per answer) (default: {d.judge_batch_size})")
    p.add_argument("--backend", choices=["hf", "vllm", "auto"], default=d.backend,
                   help="generation backend; auto = vLLM when installed with a GPU. MC log-likelihoods and the "
                        f"judge always use the exact HF path (default: {d.backend})")
    p.add_argument("--tensor_parallel_size", type=int, default=d.tensor_parallel_size,
                   help=f"vLLM tensor parallel GPUs (default: {d.tensor_parallel_size})")
    p.add_argument("--gpu_memory_utilization", type=float, default=d.gpu_memory_utilization,
                   help=f"vLLM share of GPU memory (default: {d.gpu_memory_utilization})")
    p.add_argument("--dtype", default=d.dtype, help=f"auto = bf16 on CUDA, fp32 on CPU (default: {d.dtype})")
    p.add_argument("--device", default=d.device, help=f"HF device (default: {d.device})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"vLLM seed (greedy decoding) (default: {d.seed})")
    p.add_argument("--skip_mc", action="store_true", help="no MC scoring (default: off)")
    p.add_argument("--skip_generation", action="store_true", help="no generation and no judging (default: off)")
    p.add_argument("--judge_only", default=None, metavar="DETAILED.jsonl",
                   help="only judge the answers in this JSONL (question, generated), e.g. generations_R.jsonl "
                        "of an earlier run; writes detailed_gen_R.jsonl and gen fields of metrics_R.json "
                        "(default: None)")
    p.add_argument("--resume", action="store_true",
                   help="keep per-sample files already written and skip the questions they hold (default: off)")
    p.add_argument("--no_progress", action="store_true", help="no progress bars (default: off)")
    return p.parse_args(argv)


def decode_escapes(text: str) -> str:
    """Shells pass '\\n' literally; stop sequences such as '\\nQ:' mean a newline."""
    return text.replace("\\n", "\n").replace("\\t", "\t")


def main(argv=None):
    from aligner.core.io import DataError
    from aligner.core.models import ModelLoadError
    from aligner.core.runinfo import setup_logging, write_run_config
    from aligner.data.sources.truthfulqa import DatasetUnavailableError
    from aligner.eval.tasks.truthfulqa import EvalConfigError, run_truthfulqa_eval

    args = parse_args(argv)
    setup_logging()
    if not args.judge_only and not args.model_path:
        raise SystemExit("error: --model_path is required (unless --judge_only)")
    stops = [decode_escapes(s) for s in args.stop_sequences] if args.stop_sequences else None
    cfg = TruthfulQAEvalConfig(
        run_name=args.run_name, output_dir=args.output_dir, model_path=args.model_path, lora_path=args.lora_path,
        judge_model_path=args.judge_model_path, data_path=args.data_path, hf_dataset=args.hf_dataset,
        limit=args.limit, mc_batch=args.mc_batch, share_prefix=not args.no_share_prefix,
        gen_batch_size=args.gen_batch_size, max_new_tokens=args.max_new_tokens, stop_sequences=stops,
        judge_batch_size=args.judge_batch_size, backend=args.backend, tensor_parallel_size=args.tensor_parallel_size,
        gpu_memory_utilization=args.gpu_memory_utilization, dtype=args.dtype, device=args.device, seed=args.seed,
        skip_mc=args.skip_mc, skip_generation=args.skip_generation, judge_only=args.judge_only, resume=args.resume,
        progress=not args.no_progress)
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    write_run_config(args.output_dir, args)
    try:
        results = run_truthfulqa_eval(cfg)
    except (DataError, ModelLoadError, DatasetUnavailableError, EvalConfigError) as exc:
        raise SystemExit(f"error: {exc}") from None
    for name, m in results.items():
        print(f"{name}: mc1={m['mc1']} mc2={m['mc2']} gen_truthfulness={m['gen_truthfulness']} "
              f"gen_avg_prob={m['gen_avg_prob']} n_questions={m['n_questions']}")
    return results


if __name__ == "__main__":
    main()
