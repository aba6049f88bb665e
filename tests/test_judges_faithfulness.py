"""Faithfulness judges: the tiny seq-cls judge against a plain one-pair-at-a-time softmax, HHEM's predict path,
and finding the consistent/entailment label."""

import pytest
import torch

from aligner.core.io import read_jsonl
from aligner.eval.metrics.judges import (
    FaithfulnessJudge,
    consistent_label_index,
    judge_faithfulness,
    load_faithfulness_judge,
)


def test_consistent_label_index():
    assert consistent_label_index({0: "hallucinated", 1: "consistent"}) == 1
    assert consistent_label_index({"0": "CONTRADICTION", "1": "NEUTRAL", "2": "ENTAILMENT"}) == 2
    assert consistent_label_index({0: "entailment", 1: "not_entailment"}) == 0
    assert consistent_label_index({0: "consistent", 1: "inconsistent"}) == 0
    assert consistent_label_index({0: "LABEL_0", 1: "LABEL_1"}, positive_label="label_1") == 1
    with pytest.raises(ValueError, match="id2label"):
        consistent_label_index({0: "LABEL_0", 1: "LABEL_1"})


def test_tiny_judge_matches_plain_softmax_and_batching(tiny_judge_dir, halueval_file):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rows = read_jsonl(halueval_file, limit=6)
    knowledge = [r["knowledge"] for r in rows for _ in (0, 1)]
    answers = [a for r in rows for a in (r["right_answer"], r["hallucinated_answer"])]
    answers[3] = ""  # an empty answer is judged too

    model = AutoModelForSequenceClassification.from_pretrained(tiny_judge_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_judge_dir)
    pos = model.config.label2id["consistent"]
    reference = []
    with torch.no_grad():
        for k, a in zip(knowledge, answers):
            enc = tok([k], [a], return_tensors="pt")  # one pair, no padding ("" stays a pair)
            reference.append(torch.softmax(model(**enc).logits[0], -1)[pos].item())

    batched = load_faithfulness_judge(str(tiny_judge_dir), batch_size=5, device="cpu")
    assert batched.positive_index == pos and not batched.uses_predict
    got = judge_faithfulness(batched, knowledge, answers, progress=False)
    assert got == pytest.approx(reference, abs=1e-5)
    single = FaithfulnessJudge(batched.model, batched.tokenizer, batch_size=1)
    assert single.score(knowledge, answers, progress=False) == pytest.approx(got, abs=1e-5)
    assert len(set(round(g, 6) for g in got)) > 1


class _HHEMStub(torch.nn.Module):
    """Stands in for HHEM's remote code: ``predict`` takes (premise, hypothesis) pairs and returns scores."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def predict(self, pairs):
        self.calls.append(list(pairs))
        return torch.tensor([len(h) / (len(p) + len(h) + 1) for p, h in pairs])


def test_hhem_predict_path_batches_pairs_in_order():
    stub = _HHEMStub()
    judge = FaithfulnessJudge(stub, tokenizer=None, batch_size=2)
    premises = ["aaaa", "bb", "c", "dddddd", "e"]
    hyps = ["x", "yy", "zzz", "", "w"]
    got = judge.score(premises, hyps, progress=False)
    assert got == pytest.approx([len(h) / (len(p) + len(h) + 1) for p, h in zip(premises, hyps)])
    assert [len(c) for c in stub.calls] == [2, 2, 1]
    assert stub.calls[0] == [("aaaa", "x"), ("bb", "yy")]
    with pytest.raises(ValueError):
        judge.score(["a"], ["b", "c"])
