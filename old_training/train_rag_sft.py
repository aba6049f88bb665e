#!/usr/bin/env python
"""Supervised fine-tuning of the instruct model on RAG records (the study's older approach), LoRA, TRL SFTTrainer.

Input: JSON lines such as train_nq_rag.jsonl / squad_15k.jsonl, one {question, context (or contexts), answers}
record per line (answers: a list, a string, or SQuAD's {"text": [...]}; the first non-empty answer is the
target; records without one are skipped and counted). Each record becomes a conversational prompt-completion
example: system "You are a helpful AI assistant. Use the provided context to answer the question.", user
"Context: {context}\\n\\nQuestion: {question}", assistant = the answer. TRL renders it with the model's chat
template and, for prompt-completion data, puts the loss on the completion (answer + end-of-turn) only.
Contexts are cut, by tokens, so that the whole example fits --max_length; the answer is never cut.
The logic lives in aligner/sft_train.py.

Example:
    python old_training/train_rag_sft.py --model_path models/llama3-2-3b-instruct \
        --data_files outputs/data/train_nq_rag.jsonl,outputs/data/squad_15k.jsonl --output_dir outputs/rag_sft
"""

import argparse

from aligner.core.cli import run_cli
from aligner.core.runinfo import setup_logging
from aligner.train.sft import RagSFTConfig, train_rag_sft


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("paths")
    g.add_argument("--model_path", default="models/llama3-2-3b-instruct",
                   help="instruct model folder or hub id (default: models/llama3-2-3b-instruct)")
    g.add_argument("--data_files", required=True, help="comma-separated RAG JSONL files (required)")
    g.add_argument("--output_dir", default="outputs/old_training/rag_sft",
                   help="adapter, checkpoints, logs (default: outputs/old_training/rag_sft)")
    g.add_argument("--limit", type=int, default=-1, help="use the first N usable records; -1 = all (default: -1)")
    g.add_argument("--resume", action="store_true",
                   help="continue from the latest checkpoint in --output_dir (default: off)")
    g = p.add_argument_group("LoRA")
    g.add_argument("--lora_r", type=int, default=16, help="LoRA rank (default: 16)")
    g.add_argument("--lora_alpha", type=int, default=32, help="LoRA scaling alpha (default: 32)")
    g.add_argument("--lora_dropout", type=float, default=0.05, help="dropout on the LoRA input (default: 0.05)")
    g.add_argument("--target_modules", default="q_proj,v_proj",
                   help="comma-separated module names, or all-linear (default: q_proj,v_proj)")
    g = p.add_argument_group("training")
    g.add_argument("--max_length", type=int, default=1024, help="tokens per example, context cut to fit (default: 1024)")
    g.add_argument("--epochs", type=float, default=1.0, help="passes over the training data (default: 1)")
    g.add_argument("--max_steps", type=int, default=-1, help="optimizer steps; overrides --epochs when > 0 (default: -1)")
    g.add_argument("--per_device_batch_size", type=int, default=4, help="examples per device per micro-batch (default: 4)")
    g.add_argument("--grad_accum_steps", type=int, default=4, help="micro-batches per optimizer step (default: 4)")
    g.add_argument("--lr", type=float, default=2e-4, help="peak learning rate (default: 2e-4)")
    g.add_argument("--warmup_ratio", type=float, default=0.03, help="share of steps for LR warmup (default: 0.03)")
    g.add_argument("--weight_decay", type=float, default=0.0, help="AdamW weight decay (default: 0.0)")
    g.add_argument("--logging_steps", type=int, default=10, help="optimizer steps between log lines (default: 10)")
    g.add_argument("--save_steps", type=int, default=500, help="checkpoint every N steps (default: 500)")
    g.add_argument("--save_total_limit", type=int, default=2, help="checkpoints kept (default: 2)")
    g.add_argument("--gradient_checkpointing", action="store_true", help="trade compute for memory (default: off)")
    g.add_argument("--dtype", default="auto",
                   help="model dtype: auto (bf16 on GPU, fp32 on CPU), fp32, bf16, fp16 (default: auto)")
    g.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")
    g.add_argument("--seed", type=int, default=42, help="seed for initialisation, shuffling and the split (default: 42)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    files = [f.strip() for f in args.data_files.split(",") if f.strip()]
    return train_rag_sft(RagSFTConfig.from_args(args), files, run_args=args)


if __name__ == "__main__":
    run_cli(main)
