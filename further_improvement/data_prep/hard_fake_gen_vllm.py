#!/usr/bin/env python
"""Stage 9 (latest model): teacher-guided hard pairs. A larger instruct model (the study: Llama-3.1-8B-Instruct
under vLLM) rewrites each raw fact into a polished true sentence and the same sentence with one fabricated
detail, answering in JSON {"chosen_sentence", "rejected_sentence"}; the error kind cycles logical flaw /
causal error / unverifiable. Runs on vLLM when available, else (slowly) on the Hugging Face backend.

Files: --raw_file (every generation, appended per batch, --resume continues), --output_file
hard_fakes_vllm.jsonl {data_index, question, origin_raw_fact, knowledge, chosen, rejected, type, parse_method},
--pairs_file dpo_pairs_hard_improved.jsonl {prompt, context, chosen, rejected, data_index, phase, pair_type, type}.

Example:
    python further_improvement/data_prep/hard_fake_gen_vllm.py --model_path models/Llama-3.1-8B-Instruct \\
        --nq_path data_prep/train_nq_rag.jsonl --squad_path data_prep/squad_15k.jsonl --output_dir final_data
"""

import argparse

from aligner.core.cli import run_cli
from aligner.core.io import ResumableJsonlWriter, write_jsonl_atomic
from aligner.core.runinfo import finish_stage, start_stage
from aligner.data.sft import add_sft_view_args, sft_view_from_args
from aligner.prompts import POISON_TYPES, TEACHER_CONTEXT_CHARS


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_path", default="models/Llama-3.1-8B-Instruct", help="the teacher model (default: %(default)s)")
    p.add_argument("--backend", choices=["auto", "hf", "vllm"], default="auto",
                   help="vllm when installed with a GPU (auto), else Hugging Face (default: %(default)s)")
    p.add_argument("--output_dir", default=".", help="folder of the three output files (default: %(default)s)")
    p.add_argument("--output_file", default="hard_fakes_vllm.jsonl", help="teacher records, in --output_dir (default: %(default)s)")
    p.add_argument("--pairs_file", default="dpo_pairs_hard_improved.jsonl", help="DPO pairs, in --output_dir (default: %(default)s)")
    p.add_argument("--raw_file", default="hard_fakes_vllm.raw.jsonl",
                   help="raw generations (resumable), in --output_dir (default: %(default)s)")
    p.add_argument("--chat_format", choices=["llama3", "template"], default="llama3",
                   help="Llama-3 chat format written literally, or the tokenizer's chat template (default: %(default)s)")
    p.add_argument("--poison_types", nargs="+", default=list(POISON_TYPES), choices=list(POISON_TYPES),
                   help="error kinds cycled over the items (default: %(default)s)")
    p.add_argument("--max_context_chars", type=int, default=TEACHER_CONTEXT_CHARS,
                   help="context characters shown to the teacher (default: %(default)s)")
    p.add_argument("--max_input_tokens", type=int, default=3000, help="prompts longer than this are dropped (default: %(default)s)")
    p.add_argument("--max_new_tokens", type=int, default=1024, help="tokens generated per item (default: %(default)s)")
    p.add_argument("--temperature", type=float, default=0.6, help="sampling temperature (default: %(default)s)")
    p.add_argument("--top_p", type=float, default=0.95, help="nucleus sampling (default: %(default)s)")
    p.add_argument("--batch_size", type=int, default=64, help="prompts per generate call (default: %(default)s)")
    p.add_argument("--min_sentence_chars", type=int, default=10, help="shortest acceptable sentence (default: %(default)s)")
    p.add_argument("--context_budget_chars", type=int, default=7500,
                   help="context + question + longer answer must fit in this many characters (default: %(default)s)")
    p.add_argument("--min_context_chars", type=int, default=500,
                   help="drop a pair when less context than this would remain (default: %(default)s)")
    p.add_argument("--dtype", default="auto", help="auto, bf16, fp16, fp32 (default: %(default)s)")
    p.add_argument("--device", default="auto", help="HF backend device (default: %(default)s)")
    p.add_argument("--max_model_len", type=int, default=4096, help="vLLM context length (default: %(default)s)")
    p.add_argument("--gpu_memory_utilization", type=float, default=0.9, help="vLLM memory share (default: %(default)s)")
    p.add_argument("--tensor_parallel_size", type=int, default=1, help="vLLM GPUs (default: %(default)s)")
    p.add_argument("--seed", type=int, default=42, help="sampling seed (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="keep the generations already in --raw_file (default: %(default)s)")
    p.add_argument("--no_progress", action="store_true", help="no progress bars (default: %(default)s)")
    add_sft_view_args(p, path_flags=True)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from aligner.data.teacher import generate_teacher_outputs, improved_pairs, teacher_records
    from aligner.lm.interface import load_lm

    out_dir = start_stage(args.output_dir, args)
    view, vstats = sft_view_from_args(args)
    lm = load_lm(args.backend, args.model_path, batch_size=args.batch_size, dtype=args.dtype, device=args.device,
                 max_model_len=args.max_model_len, gpu_memory_utilization=args.gpu_memory_utilization,
                 tensor_parallel_size=args.tensor_parallel_size, seed=args.seed)
    with ResumableJsonlWriter(out_dir / args.raw_file, key="data_index", resume=args.resume) as writer:
        gen_counts = generate_teacher_outputs(
            lm, view, writer, poison_types=args.poison_types, chat_format=args.chat_format,
            max_context_chars=args.max_context_chars, max_input_tokens=args.max_input_tokens,
            batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
            top_p=args.top_p, seed=args.seed, progress=not args.no_progress)
        raw = list(writer.records)
    records, counts = teacher_records(raw, view, min_chars=args.min_sentence_chars,
                                      budget_chars=args.context_budget_chars, min_context_chars=args.min_context_chars)
    pairs = improved_pairs(records)
    write_jsonl_atomic(out_dir / args.output_file, records)
    write_jsonl_atomic(out_dir / args.pairs_file, pairs)
    counts = {"backend": type(lm).__name__, **vstats, **dict(gen_counts), **dict(sorted(counts.items())),
              "pairs": len(pairs)}
    return finish_stage(out_dir, args, counts)


if __name__ == "__main__":
    run_cli(main)
