"""RAG supervised fine-tuning, the study's older approach (old_training/train_rag_sft.py is its command).

A LoRA adapter (or, with ``full_finetune``, the whole model) is trained with TRL's SFTTrainer on prompt-completion
examples: the prompt is ``aligner.prompts.dpo_chat_messages(context, question)``, the completion the record's first
non-empty answer.
As the data is prompt-completion, TRL computes the loss on the completion (answer and end of turn) only.
``fit_context`` shortens the context, token-wise, until the example fits ``max_length``; answers stay whole.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.io import DataError, ReadStats, iter_jsonl, write_json_atomic
from aligner.core.models import load_causal_lm, resolve_device
from aligner.core.runinfo import setup_logging, write_run_config
from aligner.prompts import dpo_chat_messages, render_chat

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class RagSFTConfig:
    """Everything a RAG SFT run needs (``old_training/train_rag_sft.py`` generates its flags from these fields)."""

    # paths
    model_path: str = field(default="models/llama3-2-3b-instruct", metadata={
        "help": "instruct model folder or hub id", "group": "paths"})
    data_files: list[str] = field(metadata={"help": "comma-separated RAG JSONL files", "sep": ",", "group": "paths"})
    output_dir: str = field(default="outputs/old_training/rag_sft", metadata={
        "help": "adapter, checkpoints, logs", "group": "paths"})
    limit: int = field(default=-1, metadata={"help": "use the first N usable records; -1 = all", "group": "paths"})
    resume: bool = field(default=False, metadata={
        "help": "continue from the latest checkpoint in --output_dir", "group": "paths"})
    # LoRA
    lora_r: int = field(default=16, metadata={"help": "LoRA rank", "group": "LoRA"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling alpha", "group": "LoRA"})
    lora_dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA input", "group": "LoRA"})
    target_modules: str = field(default="q_proj,v_proj", metadata={
        "help": "comma-separated module names, or all-linear", "group": "LoRA"})
    full_finetune: bool = field(default=False, metadata={
        "help": "train every weight instead of a LoRA adapter and save the whole model (the demo's warm start of a "
                "random-init tiny model, whose frozen embeddings would cap what an adapter can learn)",
        "group": "LoRA"})
    # training
    max_length: int = field(default=1024, metadata={
        "help": "tokens per example, context cut to fit", "group": "training"})
    epochs: float = field(default=1.0, metadata={"help": "passes over the training data", "group": "training"})
    max_steps: int = field(default=-1, metadata={
        "help": "optimizer steps; overrides --epochs when > 0", "group": "training"})
    per_device_batch_size: int = field(default=4, metadata={
        "help": "examples per device per micro-batch", "group": "training"})
    grad_accum_steps: int = field(default=4, metadata={"help": "micro-batches per optimizer step", "group": "training"})
    lr: float = field(default=2e-4, metadata={"help": "peak learning rate", "group": "training"})
    warmup_ratio: float = field(default=0.03, metadata={"help": "share of steps for LR warmup", "group": "training"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay", "group": "training"})
    logging_steps: int = field(default=10, metadata={"help": "optimizer steps between log lines", "group": "training"})
    save_steps: int = field(default=500, metadata={"help": "checkpoint every N steps", "group": "training"})
    save_total_limit: int = field(default=2, metadata={"help": "checkpoints kept", "group": "training"})
    gradient_checkpointing: bool = field(default=False, metadata={
        "help": "trade compute for memory", "group": "training"})
    dtype: str = field(default="auto", metadata={
        "help": "model dtype: auto (bf16 on GPU, fp32 on CPU), fp32, bf16, fp16", "group": "training"})
    device: str = field(default="auto", metadata={"help": "cpu, cuda or auto", "group": "training"})
    seed: int = field(default=42, metadata={
        "help": "seed for initialisation, shuffling and the split", "group": "training"})


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
    skeleton = render_chat(tokenizer, dpo_chat_messages("", question) + [{"role": "assistant", "content": answer}],
                           add_generation_prompt=False)
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
    peft_config = None if cfg.full_finetune else LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, target_modules=targets,
        task_type="CAUSAL_LM")
    config = SFTConfig(
        output_dir=cfg.output_dir, num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_batch_size, gradient_accumulation_steps=cfg.grad_accum_steps,
        learning_rate=cfg.lr, warmup_steps=cfg.warmup_ratio, weight_decay=cfg.weight_decay,
        logging_steps=cfg.logging_steps, save_steps=cfg.save_steps, save_total_limit=cfg.save_total_limit,
        seed=cfg.seed, max_length=cfg.max_length, bf16=str(dtype) == "torch.bfloat16",
        fp16=str(dtype) == "torch.float16", use_cpu=dev.type == "cpu", report_to="none",
        gradient_checkpointing=cfg.gradient_checkpointing, completion_only_loss=True, packing=False,
        dataloader_num_workers=0,
    )
    return SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(list(examples)),
                      processing_class=tokenizer, peft_config=peft_config)


def train_rag_sft(cfg: RagSFTConfig):
    """Load the model, build the examples of ``cfg.data_files``, train the LoRA adapter and save it to
    ``cfg.output_dir`` (with run_config.json).

    Returns (trainer, train result).  Raises DataError when no record is usable."""
    setup_logging()
    from transformers.trainer_utils import get_last_checkpoint

    random.seed(cfg.seed)
    model, tokenizer = load_causal_lm(cfg.model_path, dtype=cfg.dtype, device=cfg.device)
    examples, counts = build_examples(cfg.data_files, tokenizer, cfg.max_length, cfg.limit)
    print("records: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    if not examples:
        raise DataError(",".join(map(str, cfg.data_files)),
                        "no usable records (each needs a question and a non-empty answer)")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_run_config(out, cfg, extra={"data_counts": counts})
    trainer = build_sft_trainer(cfg, model, tokenizer, examples)
    resume = get_last_checkpoint(str(out)) if cfg.resume else None
    result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(str(out))          # the LoRA adapter (adapter_config.json + weights), or the whole model
    tokenizer.save_pretrained(str(out))
    write_json_atomic(out / "train_results.json", {**result.metrics, "log_history": trainer.state.log_history,
                                                   "data_counts": counts})
    what = "model" if cfg.full_finetune else "adapter"
    print(f"{what} saved to {out} (train loss {result.metrics.get('train_loss', float('nan')):.4f})")
    return trainer, result
