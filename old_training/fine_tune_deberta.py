#!/usr/bin/env python
"""Fine-tune a sequence classifier to tell faithful from hallucinated answers given their context.

Data: the *_fakes_with_context.jsonl files of the data preparation ({data_index, question, context,
ideal_answer, fake_answer}). Every distinct (context, ideal_answer) is a faithful example (label 1,
"consistent"), every distinct (context, fake_answer) a hallucinated one (label 0, "hallucinated"). The
held-out split is made by data_index, so no context is in both splits. The model reads the pair
(context, answer) - the order the HaluEval step-2 judge uses for (knowledge, answer) - with the context cut
first when too long. Saved with id2label {0: hallucinated, 1: consistent}, so the output folder can be
passed to evaluation/eval_haleval_llm_step2.py --judge_model_path.

Example:
    python old_training/fine_tune_deberta.py --data_dir outputs/data --output_dir models/deberta-faithfulness
"""

import argparse
import logging
import math
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aligner.io import ReadStats, iter_jsonl, write_json_atomic, write_jsonl_atomic  # noqa: E402
from aligner.models import check_model_path, load_tokenizer, resolve_device, resolve_dtype  # noqa: E402
from aligner.runinfo import setup_logging, write_run_config  # noqa: E402

logger = logging.getLogger("fine_tune_deberta")

ID2LABEL = {0: "hallucinated", 1: "consistent"}
LABEL2ID = {v: k for k, v in ID2LABEL.items()}
REQUIRED = ("data_index", "context", "ideal_answer", "fake_answer")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("paths")
    g.add_argument("--model_path", default="microsoft/deberta-v3-base",
                   help="classifier to start from, folder or hub id (default: microsoft/deberta-v3-base)")
    g.add_argument("--data_files", default=None, help="comma-separated *_fakes_with_context.jsonl files")
    g.add_argument("--data_dir", default=None,
                   help="or a folder: every *_fakes_with_context.jsonl in it (one of the two is required)")
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
    g.add_argument("--epochs", type=float, default=2.0, help="(default: 2)")
    g.add_argument("--max_steps", type=int, default=-1, help="overrides --epochs when > 0 (default: -1)")
    g.add_argument("--batch_size", type=int, default=16, help="per device, train and eval (default: 16)")
    g.add_argument("--grad_accum_steps", type=int, default=1, help="(default: 1)")
    g.add_argument("--lr", type=float, default=2e-5, help="(default: 2e-5)")
    g.add_argument("--weight_decay", type=float, default=0.01, help="(default: 0.01)")
    g.add_argument("--warmup_ratio", type=float, default=0.1, help="(default: 0.1)")
    g.add_argument("--logging_steps", type=int, default=50, help="(default: 50)")
    g.add_argument("--dtype", default="fp32", help="weights dtype; mixed precision via --bf16 (default: fp32)")
    g.add_argument("--bf16", action="store_true", help="bf16 mixed precision on GPU (default: off)")
    g.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")
    g.add_argument("--seed", type=int, default=42, help="(default: 42)")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------

def fakes_files(args) -> list[Path]:
    files = [Path(f.strip()) for f in (args.data_files or "").split(",") if f.strip()]
    if args.data_dir:
        files += sorted(Path(args.data_dir).glob("*_fakes_with_context.jsonl"))
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
            context = str(rec["context"]).strip()
            if include_question and rec.get("question"):
                context = f"Question: {rec['question']}\n{context}"
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

def main(argv=None):
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer, TrainingArguments

    args = parse_args(argv)
    setup_logging()
    files = fakes_files(args)
    if not files:
        print("error: no input: pass --data_files or a --data_dir holding *_fakes_with_context.jsonl",
              file=sys.stderr)
        raise SystemExit(1)
    examples, counts = build_examples(files, args.limit, args.include_question)
    train, held_out = split_by_group(examples, args.eval_fraction, args.seed)
    if args.balance:
        train = balance(train, args.seed)
    counts.update({"train": len(train), "eval": len(held_out)})
    print("examples: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    if not train or not held_out:
        print("error: too few examples for a train and a held-out split", file=sys.stderr)
        raise SystemExit(1)

    dev = resolve_device(args.device)
    tok = load_tokenizer(args.model_path)
    model = AutoModelForSequenceClassification.from_pretrained(
        check_model_path(args.model_path), num_labels=2, id2label=ID2LABEL, label2id=LABEL2ID,
        ignore_mismatched_sizes=True, dtype=resolve_dtype(args.dtype, dev))
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id

    def encode(batch):
        enc = tok(batch["premise"], batch["answer"], truncation="only_first", max_length=args.max_length)
        enc["labels"] = batch["label"]
        return enc

    cols = ["data_index", "premise", "answer", "label"]
    train_ds = Dataset.from_list(train).map(encode, batched=True, remove_columns=cols)
    eval_ds = Dataset.from_list(held_out).map(encode, batched=True, remove_columns=cols)

    def compute_metrics(pred):
        return classification_metrics(pred.label_ids, np.argmax(pred.predictions, axis=-1))

    out = Path(args.output_dir)
    # Epoch runs evaluate after every epoch and keep the best; a --max_steps run (a smoke test, or a fixed
    # budget) trains straight through.  Either way the held-out split is scored once more at the end.
    by_epoch = args.max_steps <= 0
    targs = TrainingArguments(
        output_dir=str(out / "checkpoints"), num_train_epochs=args.epochs, max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum_steps, learning_rate=args.lr, weight_decay=args.weight_decay,
        warmup_steps=args.warmup_ratio, logging_steps=args.logging_steps,
        eval_strategy="epoch" if by_epoch else "no", save_strategy="epoch" if by_epoch else "no",
        save_total_limit=1, load_best_model_at_end=by_epoch, metric_for_best_model="f1_macro",
        seed=args.seed, bf16=args.bf16, use_cpu=dev.type == "cpu", report_to="none", dataloader_num_workers=0,
    )
    trainer = Trainer(model=model, args=targs, train_dataset=train_ds, eval_dataset=eval_ds,
                      data_collator=DataCollatorWithPadding(tok), compute_metrics=compute_metrics)
    trainer.train()
    prediction = trainer.predict(eval_ds)
    metrics = prediction.metrics
    logits = prediction.predictions

    out.mkdir(parents=True, exist_ok=True)
    trainer.model.config.id2label, trainer.model.config.label2id = ID2LABEL, LABEL2ID
    trainer.save_model(str(out))
    tok.save_pretrained(str(out))
    probs = torch.softmax(torch.tensor(logits, dtype=torch.float32), dim=-1)[:, 1].tolist()
    write_jsonl_atomic(out / "eval_predictions.jsonl",
                       [{**e, "p_consistent": p, "pred": int(p > 0.5)} for e, p in zip(held_out, probs)])
    summary = {k.removeprefix("test_"): v for k, v in metrics.items()}
    write_json_atomic(out / "eval_metrics.json", {**summary, "counts": counts})
    write_run_config(out, args, extra={"counts": counts})
    print("held-out: " + ", ".join(f"{k}={summary[k]:.4f}" for k in
                                   ("accuracy", "f1_hallucinated", "f1_consistent", "f1_macro")))
    print(f"judge saved to {out} (id2label {ID2LABEL})")
    return summary


if __name__ == "__main__":
    main()
