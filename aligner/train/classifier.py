"""A faithfulness judge fine-tuned from the curriculum fakes (old_training/fine_tune_deberta.py is its command).

Examples come from *_fakes_with_context.jsonl: (context, ideal_answer) is label 1 "consistent",
(context, fake_answer) label 0 "hallucinated", each distinct pair once.  Train and held-out sets are split by
data_index so that they share no context.  The input is the pair (context, answer), as the HaluEval step-2
judge reads (knowledge, answer), and truncation cuts the context first.  The saved id2label
{0: hallucinated, 1: consistent} lets ``evaluation/eval_haleval_llm_step2.py --judge_model_path`` use it.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.io import DataError, ReadStats, iter_jsonl, write_json_atomic, write_jsonl_atomic
from aligner.core.models import ModelLoadError, load_seq_cls, resolve_device
from aligner.core.runinfo import setup_logging, write_run_config
from aligner.prompts import faithfulness_premise

logger = logging.getLogger(__name__)

ID2LABEL = {0: "hallucinated", 1: "consistent"}
LABEL2ID = {v: k for k, v in ID2LABEL.items()}
REQUIRED = ("data_index", "context", "ideal_answer", "fake_answer")
FAKES_GLOB = "*_fakes_with_context.jsonl"


@dataclass(kw_only=True)
class FaithfulnessClassifierConfig:
    """Everything a classifier run needs (``old_training/fine_tune_deberta.py`` generates its flags from these)."""

    # paths
    model_path: str = field(default="microsoft/deberta-v3-base", metadata={
        "help": "classifier to start from, folder or hub id", "group": "paths"})
    data_files: str | None = field(default=None, metadata={
        "help": "comma-separated *_fakes_with_context.jsonl files (default: none)", "group": "paths"})
    data_dir: str | None = field(default=None, metadata={
        "help": "or a folder: every *_fakes_with_context.jsonl in it; one of the two is required (default: none)",
        "group": "paths"})
    output_dir: str = field(default="models/deberta-faithfulness-judge", metadata={
        "help": "the fine-tuned judge", "group": "paths"})
    limit: int = field(default=-1, metadata={"help": "records read per file; -1 = all", "group": "paths"})
    # data
    eval_fraction: float = field(default=0.1, metadata={"help": "share of data_index groups held out", "group": "data"})
    include_question: bool = field(default=False, metadata={
        "help": "prefix the context with the question (default: off, as the step-2 judge sees only knowledge and "
                "answer)", "group": "data"})
    balance: bool = field(default=False, metadata={
        "help": "down-sample hallucinated training examples to the number of faithful ones", "group": "data"})
    max_length: int = field(default=512, metadata={"help": "tokens per pair, context cut first", "group": "data"})
    # training
    epochs: float = field(default=2.0, metadata={"help": "passes over the training data", "group": "training"})
    max_steps: int = field(default=-1, metadata={"help": "overrides --epochs when > 0", "group": "training"})
    batch_size: int = field(default=16, metadata={"help": "per device, train and eval", "group": "training"})
    grad_accum_steps: int = field(default=1, metadata={"help": "micro-batches per optimizer step", "group": "training"})
    lr: float = field(default=2e-5, metadata={"help": "peak learning rate", "group": "training"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay", "group": "training"})
    warmup_ratio: float = field(default=0.1, metadata={"help": "share of steps for LR warmup", "group": "training"})
    logging_steps: int = field(default=50, metadata={"help": "optimizer steps between log lines", "group": "training"})
    dtype: str = field(default="fp32", metadata={
        "help": "weights dtype; mixed precision via --bf16", "group": "training"})
    bf16: bool = field(default=False, metadata={"help": "bf16 mixed precision on GPU", "group": "training"})
    device: str = field(default="auto", metadata={"help": "cpu, cuda or auto", "group": "training"})
    seed: int = field(default=42, metadata={
        "help": "seed for initialisation, shuffling and the split", "group": "training"})


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------

def fakes_files(data_files: str | None, data_dir: str | None) -> list[Path]:
    """``--data_files a,b`` plus every *_fakes_with_context.jsonl in ``--data_dir``."""
    files = [Path(f.strip()) for f in (data_files or "").split(",") if f.strip()]
    if data_dir:
        files += sorted(Path(data_dir).glob(FAKES_GLOB))
    return files


def build_examples(files, limit: int = -1, include_question: bool = False) -> tuple[list[dict], dict]:
    """Distinct (data_index, premise, answer, label) examples; fakes equal to the ideal answer are dropped."""
    seen = set()
    out = []
    counts = {"records": 0, "faithful": 0, "hallucinated": 0, "fake_equals_ideal": 0, "malformed_lines": 0}
    for path in files:
        stats = ReadStats()
        for i, rec in enumerate(iter_jsonl(path, REQUIRED, skip_invalid=True, stats=stats)):
            if 0 <= limit <= i:
                break
            counts["records"] += 1
            context = faithfulness_premise(str(rec["context"]), rec.get("question") if include_question else None)
            ideal, fake = str(rec["ideal_answer"]).strip(), str(rec["fake_answer"]).strip()
            if fake == ideal:
                counts["fake_equals_ideal"] += 1
                fake = None
            for answer, label in ((ideal, 1), (fake, 0)):
                if answer is None:
                    continue
                key = (str(rec["data_index"]), answer, label)
                if key in seen:
                    continue
                seen.add(key)
                out.append({"data_index": str(rec["data_index"]), "premise": context, "answer": answer,
                            "label": label})
                counts["faithful" if label == 1 else "hallucinated"] += 1
        counts["malformed_lines"] += stats.n_skipped
    return out, counts


def split_by_group(examples: list[dict], eval_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    groups = sorted({e["data_index"] for e in examples})
    random.Random(seed).shuffle(groups)
    n_eval = math.ceil(len(groups) * eval_fraction) if eval_fraction > 0 else 0
    n_eval = min(n_eval, len(groups) - 1)
    held = set(groups[:n_eval])
    return [e for e in examples if e["data_index"] not in held], [e for e in examples if e["data_index"] in held]


def balance(examples: list[dict], seed: int) -> list[dict]:
    pos = [e for e in examples if e["label"] == 1]
    neg = [e for e in examples if e["label"] == 0]
    if len(neg) > len(pos):
        neg = random.Random(seed).sample(neg, len(pos))
    out = pos + neg
    random.Random(seed + 1).shuffle(out)
    return out


def classification_metrics(labels, preds) -> dict:
    """Accuracy, per-class F1 (hallucinated = label 0, consistent = label 1) and their macro mean."""
    labels = [int(x) for x in labels]
    preds = [int(x) for x in preds]
    n = len(labels)
    out = {"accuracy": sum(a == b for a, b in zip(labels, preds)) / n if n else float("nan")}
    f1s = []
    for cls, name in ID2LABEL.items():
        tp = sum(1 for a, b in zip(labels, preds) if a == cls and b == cls)
        fp = sum(1 for a, b in zip(labels, preds) if a != cls and b == cls)
        fn = sum(1 for a, b in zip(labels, preds) if a == cls and b != cls)
        f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0
        out[f"f1_{name}"] = f1
        f1s.append(f1)
    out["f1_macro"] = sum(f1s) / len(f1s)
    return out


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------

def _training_arguments(cfg: FaithfulnessClassifierConfig, out: Path, use_cpu: bool):
    from transformers import TrainingArguments

    # Epoch runs evaluate after every epoch and keep the best; a --max_steps run (a smoke test, or a fixed
    # budget) trains straight through.  Either way the held-out split is scored once more at the end.
    by_epoch = cfg.max_steps <= 0
    return TrainingArguments(
        output_dir=str(out / "checkpoints"), num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum_steps, learning_rate=cfg.lr, weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio, logging_steps=cfg.logging_steps,
        eval_strategy="epoch" if by_epoch else "no", save_strategy="epoch" if by_epoch else "no",
        save_total_limit=1, load_best_model_at_end=by_epoch, metric_for_best_model="f1_macro",
        seed=cfg.seed, bf16=cfg.bf16, use_cpu=use_cpu, report_to="none", dataloader_num_workers=0,
    )


def _split_examples(cfg: FaithfulnessClassifierConfig) -> tuple[list[dict], list[dict], dict]:
    """(train, held-out, counts) from the configured files; a clear error when there is not enough data."""
    files = fakes_files(cfg.data_files, cfg.data_dir)
    if not files:
        raise FileNotFoundError(f"no input: pass --data_files or a --data_dir holding {FAKES_GLOB}")
    examples, counts = build_examples(files, cfg.limit, cfg.include_question)
    train, held_out = split_by_group(examples, cfg.eval_fraction, cfg.seed)
    if cfg.balance:
        train = balance(train, cfg.seed)
    counts.update({"train": len(train), "eval": len(held_out)})
    print("examples: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    if not train or not held_out:
        raise DataError(",".join(map(str, files)), "too few examples for a train and a held-out split")
    return train, held_out, counts


def train_faithfulness_classifier(cfg: FaithfulnessClassifierConfig) -> dict:
    """Split, fine-tune, score the held-out split and save the judge to ``cfg.output_dir``.

    Returns the held-out metrics.  Raises DataError when there are too few examples for both splits."""
    setup_logging()
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, Trainer

    train, held_out, counts = _split_examples(cfg)
    dev = resolve_device(cfg.device)
    model, tok = load_seq_cls(cfg.model_path, dtype=cfg.dtype, device=dev, num_labels=2, id2label=ID2LABEL,
                              label2id=LABEL2ID, ignore_mismatched_sizes=True)
    if tok is None:
        raise ModelLoadError(f"no tokenizer could be loaded from {cfg.model_path}")

    def encode(batch):
        enc = tok(batch["premise"], batch["answer"], truncation="only_first", max_length=cfg.max_length)
        enc["labels"] = batch["label"]
        return enc

    cols = ["data_index", "premise", "answer", "label"]
    train_ds = Dataset.from_list(train).map(encode, batched=True, remove_columns=cols)
    eval_ds = Dataset.from_list(held_out).map(encode, batched=True, remove_columns=cols)

    def compute_metrics(pred):
        return classification_metrics(pred.label_ids, np.argmax(pred.predictions, axis=-1))

    out = Path(cfg.output_dir)
    trainer = Trainer(model=model, args=_training_arguments(cfg, out, dev.type == "cpu"), train_dataset=train_ds,
                      eval_dataset=eval_ds, data_collator=DataCollatorWithPadding(tok),
                      compute_metrics=compute_metrics)
    trainer.train()
    prediction = trainer.predict(eval_ds)

    out.mkdir(parents=True, exist_ok=True)
    trainer.model.config.id2label, trainer.model.config.label2id = ID2LABEL, LABEL2ID
    trainer.save_model(str(out))
    tok.save_pretrained(str(out))
    probs = torch.softmax(torch.tensor(prediction.predictions, dtype=torch.float32), dim=-1)[:, 1].tolist()
    write_jsonl_atomic(out / "eval_predictions.jsonl",
                       [{**e, "p_consistent": p, "pred": int(p > 0.5)} for e, p in zip(held_out, probs)])
    summary = {k.removeprefix("test_"): v for k, v in prediction.metrics.items()}
    write_json_atomic(out / "eval_metrics.json", {**summary, "counts": counts})
    write_run_config(out, cfg, extra={"counts": counts})
    print("held-out: " + ", ".join(f"{k}={summary[k]:.4f}" for k in
                                   ("accuracy", "f1_hallucinated", "f1_consistent", "f1_macro")))
    print(f"judge saved to {out} (id2label {ID2LABEL})")
    return summary
