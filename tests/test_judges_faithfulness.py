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


# --------------------------------------------------------------------------------------------- no silent numbers

class _NaNJudge(torch.nn.Module):
    """HHEM-like: ``predict`` scores pairs, NaN for a hypothesis containing "NaN"."""

    def predict(self, pairs):
        return torch.tensor([float("nan") if "NaN" in h else 0.25 + 0.5 * (len(h) % 2) for _, h in pairs])


def _predictions(n):
    return [{"index": i, "question": f"Q{i}?", "knowledge": f"K{i}.", "right_answer": "the answer",
             "generated_text": "" if i == 1 else f"answer {'x' * i}"} for i in range(n)]


def run_step2_judging(preds, judge, out, chunk=2, resume=False, **settings):
    """HaluEval's step 2 on ``preds`` as the evaluation runs it per predictions file (chunks of ``chunk``)."""
    import dataclasses

    from aligner.eval.evaluate import run_phase
    from aligner.eval.tasks.halueval_twostep import HaluEvalStep2Config, HaluEvalTwoStep

    task = HaluEvalTwoStep(HaluEvalStep2Config(input_file="unused", bertscore_model="none", **settings))
    task.bertscorer = None
    return run_phase(task, dataclasses.replace(task.phase("step2"), chunk=chunk), judge, preds, out, resume=resume)


def test_nonfinite_faithfulness_stops_the_run_naming_the_row(tmp_path):
    from aligner.eval.checks import NonFiniteScoreError

    preds = _predictions(6)
    preds[3]["generated_text"] = "a NaN answer"
    judge = FaithfulnessJudge(_NaNJudge(), batch_size=4)
    out = tmp_path / "detailed.jsonl"
    with pytest.raises(NonFiniteScoreError, match=r"row index=3 \(question 'Q3\?'\) has a non-finite faithfulness_score"):
        run_step2_judging(preds, judge, out)
    assert [r["index"] for r in read_jsonl(out)] == [0, 1]  # the chunk holding row 3 was not written


def test_step2_counts_empty_answers_resumes_only_the_same_answers_and_study_bleu(tmp_path):
    from aligner.core.runner import RunMismatchError
    from aligner.eval.metrics.text import sentence_bleu
    from aligner.eval.tasks.halueval_twostep import aggregate_faithfulness, score_faithfulness

    preds = _predictions(5)
    judge = FaithfulnessJudge(_NaNJudge(), batch_size=4)
    out = tmp_path / "detailed.jsonl"
    recs = run_step2_judging(preds, judge, out)
    m = aggregate_faithfulness(recs)
    assert m["n_empty"] == 1 and recs[1]["generated"] == "" and m["total"] == 5
    assert m["avg_bleu"] == pytest.approx(sum(sentence_bleu(p["generated_text"], "the answer") for p in preds) / 5)
    # a resumed judge file must hold the answers being judged now
    other = [dict(p) for p in preds]
    other[2]["generated_text"] = "another answer"
    with pytest.raises(RunMismatchError, match="judges another answer"):
        run_step2_judging(other, judge, out, resume=True)
    # --study_compat: the study's step 2 stored bleu 0.0 for every row and reported no avg_bleu
    study = score_faithfulness(preds, judge, bleu=False)
    assert [r["bleu"] for r in study] == [0.0] * 5
    assert "avg_bleu" not in aggregate_faithfulness([{"index": i, **r} for i, r in enumerate(study)], bleu=False)


def test_bertscore_nan_is_not_turned_into_zero():
    """bert_score maps a NaN F1 to 0 (the study's unexplained exact zeros); here the row becomes NaN, which the
    flows' finite check then stops at."""
    from aligner.eval.checks import NonFiniteScoreError, require_finite
    from aligner.eval.metrics.similarity import BertScoreF1

    class Scorer:
        def score(self, cands, refs, batch_size=64):
            p = torch.tensor([0.9, float("nan")])
            return p, torch.tensor([0.8, 0.7]), torch.tensor([0.85, 0.0])

    bs = object.__new__(BertScoreF1)
    bs.scorer, bs.batch_size = Scorer(), 2
    got = bs.score(["a", "b", ""], ["x", "y", "z"])
    assert got[0] == pytest.approx(0.85) and got[1] != got[1] and got[2] == 0.0  # NaN; empty candidate: 0
    with pytest.raises(NonFiniteScoreError, match="row index=1"):
        require_finite([{"index": i, "bert_score": v} for i, v in enumerate(got)], ("bert_score",), "x")
