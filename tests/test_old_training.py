"""old_training/: RAG SFT with TRL (loss on the answer only) and the faithfulness classifier, on tiny models."""

import json

import pytest
import torch
from conftest import load_script

from aligner.core.io import read_jsonl
from aligner.train.classifier import build_examples, split_by_group

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def halueval_rows(halueval_file):
    return read_jsonl(halueval_file, limit=40)


def test_rag_sft_trains_on_the_answer_only(tiny_model_dir, halueval_rows, tmp_path):
    rows = halueval_rows[:10]
    records = [{"question": r["question"], "context": r["knowledge"], "answers": [r["right_answer"]]} for r in rows]
    records.append({"question": "What is unanswerable?", "context": "Nothing here.", "answers": []})
    records.append({"question": rows[0]["question"], "contexts": [rows[0]["knowledge"], "More text."],
                    "answers": {"text": ["", rows[0]["right_answer"]]}})             # SQuAD-style answers
    data = tmp_path / "train_nq_rag.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "sft"
    script = load_script("old_training/train_rag_sft.py")
    trainer, result = script.main(["--model_path", str(tiny_model_dir), "--data_files", str(data),
                                   "--output_dir", str(out), "--max_steps", "2", "--per_device_batch_size", "2",
                                   "--grad_accum_steps", "1", "--max_length", "160", "--logging_steps", "1",
                                   "--save_steps", "100", "--device", "cpu"])
    counts = json.loads((out / "run_config.json").read_text())["data_counts"]
    assert counts["no_answer"] == 1 and counts["used"] + counts["too_long"] == 11 and counts["context_truncated"] > 0
    assert (out / "adapter_config.json").is_file() and result.metrics["train_loss"] > 0

    # every training sequence fits, and the tokens with a loss are exactly the answer and the end of turn
    tok = trainer.processing_class
    answers = [r["answers"][0] for r in records[:10]] + [rows[0]["right_answer"]]
    ds = trainer.train_dataset
    assert len(ds) == counts["used"]
    for ex in ds:
        ids, labels = ex["input_ids"], ex["labels"] if "labels" in ex else None
        assert len(ids) <= 160
        mask = ex["completion_mask"] if labels is None else [int(x != -100) for x in labels]
        first = mask.index(1)
        assert all(mask[first:]) and not any(mask[:first])
        target = tok.decode(ids[first:])
        assert target.endswith("<|eot_id|>")
        assert target[: -len("<|eot_id|>")] in answers
        assert "Context:" in tok.decode(ids[:first])

    # the saved adapter loads and changes the model
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    ids = torch.tensor([ds[0]["input_ids"]])
    with torch.no_grad():
        before = base(input_ids=ids).logits
        after = PeftModel.from_pretrained(base, out).eval()(input_ids=ids).logits
    assert (after - before).abs().max() > 0


def test_faithfulness_classifier(tiny_judge_dir, halueval_rows, tmp_path):
    rows = halueval_rows[:24]
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for kind in ("easy", "medium"):
        with (data_dir / f"{kind}_fakes_with_context.jsonl").open("w") as fh:
            for i, r in enumerate(rows):
                fake = r["hallucinated_answer"] if kind == "medium" else rows[(i + 5) % len(rows)]["right_answer"]
                fh.write(json.dumps({"data_index": i, "question": r["question"], "context": r["knowledge"],
                                     "ideal_answer": r["right_answer"], "fake_answer": fake, "type": kind}) + "\n")
    out = tmp_path / "judge"
    script = load_script("old_training/fine_tune_deberta.py")
    summary = script.main(["--model_path", str(tiny_judge_dir), "--data_dir", str(data_dir), "--output_dir", str(out),
                           "--max_steps", "2", "--batch_size", "4", "--eval_fraction", "0.25", "--max_length", "128",
                           "--logging_steps", "1", "--device", "cpu"])
    cfg = json.loads((out / "config.json").read_text())
    assert {int(k): v for k, v in cfg["id2label"].items()} == {0: "hallucinated", 1: "consistent"}

    # the split is by data_index, ideal answers are label 1 and fakes label 0
    examples, counts = build_examples(sorted(data_dir.glob("*.jsonl")))
    train, held = split_by_group(examples, 0.25, 42)
    assert not {e["data_index"] for e in train} & {e["data_index"] for e in held}
    assert all((e["label"] == 1) == (e["answer"] == rows[int(e["data_index"])]["right_answer"]) for e in examples)
    assert counts["faithful"] == 24

    # the reported held-out accuracy / F1 are those of the saved model, recomputed here
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    preds = read_jsonl(out / "eval_predictions.jsonl")
    assert len(preds) == len(held)
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out, dtype=torch.float32).eval()
    hits, tp0, fp0, fn0 = 0, 0, 0, 0
    with torch.no_grad():
        for p in preds:
            enc = tok(p["premise"], p["answer"], truncation="only_first", max_length=128, return_tensors="pt")
            pred = int(model(**enc).logits.argmax(-1))
            hits += pred == p["label"]
            tp0 += pred == 0 and p["label"] == 0
            fp0 += pred == 0 and p["label"] == 1
            fn0 += pred == 1 and p["label"] == 0
    assert summary["accuracy"] == pytest.approx(hits / len(preds), abs=1e-9)
    f1_h = 2 * tp0 / (2 * tp0 + fp0 + fn0) if (2 * tp0 + fp0 + fn0) else 0.0
    assert summary["f1_hallucinated"] == pytest.approx(f1_h, abs=1e-9)
