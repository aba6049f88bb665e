#!/usr/bin/env python
"""Supervised fine-tuning of the instruct model on RAG records (the study's older approach), LoRA, TRL SFTTrainer.

Input: JSON lines such as train_nq_rag.jsonl / squad_15k.jsonl, one {question, context (or contexts), answers}
record per line (answers: a list, a string, or SQuAD's {"text": [...]}; the first non-empty answer is the
target; records without one are skipped and counted). Each record becomes a conversational prompt-completion
example: system "You are a helpful AI assistant. Use the provided context to answer the question.", user
"Context: {context}\\n\\nQuestion: {question}", assistant = the answer. TRL renders it with the model's chat
template and, for prompt-completion data, puts the loss on the completion (answer + end-of-turn) only.
Contexts are cut, by tokens, so that the whole example fits --max_length; the answer is never cut.

Example:
    python old_training/train_rag_sft.py --model_path models/llama3-2-3b-instruct \
        --data_files outputs/data/train_nq_rag.jsonl,outputs/data/squad_15k.jsonl --output_dir outputs/rag_sft
"""

import argparse
import logging
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aligner.io import ReadStats, iter_jsonl, write_json_atomic  # noqa: E402
from aligner.models import load_causal_lm, resolve_device  # noqa: E402
from aligner.prompts import dpo_chat_messages  # noqa: E402
from aligner.runinfo import setup_logging, write_run_config  # noqa: E402

logger = logging.getLogger("train_rag_sft")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("paths")
    g.add_argument("--model_path", default="models/llama3-2-3b-instruct",
                   help="instruct model folder or hub id (default: models/llama3-2-3b-instruct)")
    g.add_argument("--data_files", required=True, help="comma-separated RAG JSONL files (required)")
    g.add_argument("--output_dir", default="outputs/old_training/rag_sft",
                   help="adapter, checkpoints, logs (default: outputs/old_training/rag_sft)")
    g.add_argument("--limit", type=int, default=-1, help="use the first N usable records; -1 = all (default: -1)")
    g.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --output_dir")
    g = p.add_argument_group("LoRA")
    g.add_argument("--lora_r", type=int, default=16, help="(default: 16)")
    g.add_argument("--lora_alpha", type=int, default=32, help="(default: 32)")
    g.add_argument("--lora_dropout", type=float, default=0.05, help="(default: 0.05)")
    g.add_argument("--target_modules", default="q_proj,v_proj",
                   help="comma-separated module names, or all-linear (default: q_proj,v_proj)")
    g = p.add_argument_group("training")
    g.add_argument("--max_length", type=int, default=1024, help="tokens per example, context cut to fit (default: 1024)")
    g.add_argument("--epochs", type=float, default=1.0, help="(default: 1)")
    g.add_argument("--max_steps", type=int, default=-1, help="optimizer steps; overrides --epochs when > 0 (default: -1)")
    g.add_argument("--per_device_batch_size", type=int, default=4, help="(default: 4)")
    g.add_argument("--grad_accum_steps", type=int, default=4, help="(default: 4)")
    g.add_argument("--lr", type=float, default=2e-4, help="(default: 2e-4)")
    g.add_argument("--warmup_ratio", type=float, default=0.03, help="share of steps for LR warmup (default: 0.03)")
    g.add_argument("--weight_decay", type=float, default=0.0, help="(default: 0.0)")
    g.add_argument("--logging_steps", type=int, default=10, help="(default: 10)")
    g.add_argument("--save_steps", type=int, default=500, help="checkpoint every N steps (default: 500)")
    g.add_argument("--save_total_limit", type=int, default=2, help="checkpoints kept (default: 2)")
    g.add_argument("--gradient_checkpointing", action="store_true", help="trade compute for memory (default: off)")
    g.add_argument("--dtype", default="auto", help="model dtype: auto (bf16 on GPU, fp32 on CPU), fp32, bf16, fp16")
    g.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")
    g.add_argument("--seed", type=int, default=42, help="(default: 42)")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# records -> prompt-completion examples
# ---------------------------------------------------------------------------------------------

def first_answer(rec: dict) -> str | None:
    """The target answer: the first non-empty one of answers (list / str / {'text': [...]}) or ideal_answer."""
    for key in ("answers", "answer", "ideal_answer"):
        val = rec.get(key)
        if isinstance(val, dict):
            val = val.get("text")
        if isinstance(val, str):
            val = [val]
        if isinstance(val, (list, tuple)):
            for a in val:
                if isinstance(a, str) and a.strip():
                    return a.strip()
    return None


def record_context(rec: dict) -> str:
    ctx = rec.get("context")
    if isinstance(ctx, str) and ctx.strip():
        return ctx.strip()
    ctxs = rec.get("contexts")
    if isinstance(ctxs, (list, tuple)):
        return "\n\n".join(str(c).strip() for c in ctxs if str(c).strip())
    return ""


def fit_context(tokenizer, context: str, question: str, answer: str, max_length: int) -> tuple[str, bool] | None:
    """Cut the context (by tokens, from its end) so prompt + answer fit ``max_length``; None if the answer can't."""
    skeleton = tokenizer.apply_chat_template(
        dpo_chat_messages("", question) + [{"role": "assistant", "content": answer}], tokenize=False)
    fixed = len(tokenizer(skeleton, add_special_tokens=False)["input_ids"]) + 4  # +4: merges at the seams
    budget = max_length - fixed
    if budget <= 0:
        return None
    ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    if len(ids) <= budget:
        return context, False
    return tokenizer.decode(ids[:budget], skip_special_tokens=True).rstrip(), True


def build_examples(files, tokenizer, max_length: int, limit: int = -1) -> tuple[list[dict], dict]:
    counts = {"read": 0, "no_answer": 0, "no_question": 0, "too_long": 0, "context_truncated": 0, "used": 0,
              "malformed_lines": 0}
    examples = []
    for path in files:
        stats = ReadStats()
        for rec in iter_jsonl(path, skip_invalid=True, stats=stats):
            if 0 <= limit <= len(examples):
                break
            counts["read"] += 1
            question = str(rec.get("question") or "").strip()
            answer = first_answer(rec)
            if not question:
                counts["no_question"] += 1
                continue
            if answer is None:
                counts["no_answer"] += 1
                continue
            fitted = fit_context(tokenizer, record_context(rec), question, answer, max_length)
            if fitted is None:
                counts["too_long"] += 1
                continue
            context, cut = fitted
            counts["context_truncated"] += int(cut)
            examples.append({"prompt": dpo_chat_messages(context, question),
                             "completion": [{"role": "assistant", "content": answer}]})
        counts["malformed_lines"] += stats.n_skipped
    counts["used"] = len(examples)
    return examples, counts


# ---------------------------------------------------------------------------------------------

def build_trainer(args, model, tokenizer, examples):
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    dev = resolve_device(args.device)
    dtype = next(model.parameters()).dtype
    targets = args.target_modules if args.target_modules == "all-linear" else \
        [t.strip() for t in args.target_modules.split(",") if t.strip()]
    peft_config = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                             target_modules=targets, task_type="CAUSAL_LM")
    config = SFTConfig(
        output_dir=args.output_dir, num_train_epochs=args.epochs, max_steps=args.max_steps,
        per_device_train_batch_size=args.per_device_batch_size, gradient_accumulation_steps=args.grad_accum_steps,
        learning_rate=args.lr, warmup_steps=args.warmup_ratio, weight_decay=args.weight_decay,
        logging_steps=args.logging_steps, save_steps=args.save_steps, save_total_limit=args.save_total_limit,
        seed=args.seed, max_length=args.max_length, bf16=str(dtype) == "torch.bfloat16",
        fp16=str(dtype) == "torch.float16", use_cpu=dev.type == "cpu", report_to="none",
        activation_checkpointing=args.gradient_checkpointing, completion_only_loss=True, packing=False,
        dataloader_num_workers=0,
    )
    return SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(examples),
                      processing_class=tokenizer, peft_config=peft_config)


def latest_checkpoint(output_dir: str) -> str | None:
    ckpts = sorted(Path(output_dir).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return str(ckpts[-1]) if ckpts else None


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    random.seed(args.seed)
    files = [f.strip() for f in args.data_files.split(",") if f.strip()]
    model, tokenizer = load_causal_lm(args.model_path, dtype=args.dtype, device=args.device)
    examples, counts = build_examples(files, tokenizer, args.max_length, args.limit)
    print("records: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    if not examples:
        print("error: no usable records (each needs a question and a non-empty answer)", file=sys.stderr)
        raise SystemExit(1)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_run_config(out, args, extra={"data_counts": counts})
    trainer = build_trainer(args, model, tokenizer, examples)
    resume = latest_checkpoint(args.output_dir) if args.resume else None
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(str(out))          # the LoRA adapter (adapter_config.json + weights)
    tokenizer.save_pretrained(str(out))
    write_json_atomic(out / "train_results.json", {**result.metrics, "log_history": trainer.state.log_history,
                                                   "data_counts": counts})
    print(f"adapter saved to {out} (train loss {result.metrics.get('train_loss', float('nan')):.4f})")
    return trainer, result


if __name__ == "__main__":
    main()
