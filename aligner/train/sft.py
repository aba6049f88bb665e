"""RAG supervised fine-tuning, the study's older approach (old_training/train_rag_sft.py is its command).

A LoRA adapter is trained with TRL's SFTTrainer on prompt-completion examples: the prompt is
``aligner.prompts.dpo_chat_messages(context, question)``, the completion the record's first non-empty answer.
As the data is prompt-completion, TRL computes the loss on the completion (answer and end of turn) only.
``fit_context`` shortens the context, token-wise, until the example fits ``max_length``; answers stay whole.
"""

from __future__ import annotations

import argparse
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from aligner.core.io import DataError, ReadStats, iter_jsonl, write_json_atomic
from aligner.core.models import load_causal_lm, resolve_device
from aligner.core.runinfo import write_run_config
from aligner.prompts import dpo_chat_messages

logger = logging.getLogger(__name__)


@dataclass
class RagSFTConfig:
    """Everything a RAG SFT run needs besides the data files (defaults: the script's flags)."""

    model_path: str = "models/llama3-2-3b-instruct"
    output_dir: str = "outputs/old_training/rag_sft"
    limit: int = -1
    resume: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: str = "q_proj,v_proj"   # comma-separated names, or all-linear
    max_length: int = 1024
    epochs: float = 1.0
    max_steps: int = -1
    per_device_batch_size: int = 4
    grad_accum_steps: int = 4
    lr: float = 2e-4
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    logging_steps: int = 10
    save_steps: int = 500
    save_total_limit: int = 2
    gradient_checkpointing: bool = False
    dtype: str = "auto"
    device: str = "auto"
    seed: int = 42

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RagSFTConfig:
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


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
# training
# ---------------------------------------------------------------------------------------------

def build_sft_trainer(cfg: RagSFTConfig, model, tokenizer, examples: Sequence[dict]):
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    dev = resolve_device(cfg.device)
    dtype = next(model.parameters()).dtype
    targets = cfg.target_modules if cfg.target_modules == "all-linear" else \
        [t.strip() for t in cfg.target_modules.split(",") if t.strip()]
    peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                             target_modules=targets, task_type="CAUSAL_LM")
    config = SFTConfig(
        output_dir=cfg.output_dir, num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_batch_size, gradient_accumulation_steps=cfg.grad_accum_steps,
        learning_rate=cfg.lr, warmup_steps=cfg.warmup_ratio, weight_decay=cfg.weight_decay,
        logging_steps=cfg.logging_steps, save_steps=cfg.save_steps, save_total_limit=cfg.save_total_limit,
        seed=cfg.seed, max_length=cfg.max_length, bf16=str(dtype) == "torch.bfloat16",
        fp16=str(dtype) == "torch.float16", use_cpu=dev.type == "cpu", report_to="none",
        activation_checkpointing=cfg.gradient_checkpointing, completion_only_loss=True, packing=False,
        dataloader_num_workers=0,
    )
    return SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(list(examples)),
                      processing_class=tokenizer, peft_config=peft_config)


def train_rag_sft(cfg: RagSFTConfig, data_files: Sequence[str], run_args=None):
    """Load the model, build the examples, train the LoRA adapter and save it to ``cfg.output_dir``.

    Returns (trainer, train result).  Raises DataError when no record is usable."""
    from transformers.trainer_utils import get_last_checkpoint

    random.seed(cfg.seed)
    model, tokenizer = load_causal_lm(cfg.model_path, dtype=cfg.dtype, device=cfg.device)
    examples, counts = build_examples(data_files, tokenizer, cfg.max_length, cfg.limit)
    print("records: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    if not examples:
        raise DataError(",".join(map(str, data_files)),
                        "no usable records (each needs a question and a non-empty answer)")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_run_config(out, run_args if run_args is not None else vars(cfg), extra={"data_counts": counts})
    trainer = build_sft_trainer(cfg, model, tokenizer, examples)
    resume = get_last_checkpoint(str(out)) if cfg.resume else None
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(str(out))          # the LoRA adapter (adapter_config.json + weights)
    tokenizer.save_pretrained(str(out))
    write_json_atomic(out / "train_results.json", {**result.metrics, "log_history": trainer.state.log_history,
                                                   "data_counts": counts})
    print(f"adapter saved to {out} (train loss {result.metrics.get('train_loss', float('nan')):.4f})")
    return trainer, result
