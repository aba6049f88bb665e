"""TruthfulQA data, MC scoring, generation and judging against plain, independent computations."""

import csv
import json
import math

import numpy as np
import pandas as pd
import pytest

from aligner.core.io import DataError
from aligner.core.logprobs import reference_response_logprob
from aligner.data.sources.truthfulqa import DatasetUnavailableError, load_truthfulqa
from aligner.eval.evaluate import phase_metrics, run_phase
from aligner.eval.metrics.mc import mc1_hit, mc2_mass
from aligner.eval.tasks.truthfulqa import TruthfulQA, TruthfulQAEvalConfig
from aligner.eval.tasks.truthfulqa_scoring import score_mc
from aligner.lm.hf import HFLM
from aligner.lm.interface import cut_at_stop
from aligner.lm.packing import pack_group
from aligner.prompts import truthfulqa_choice, truthfulqa_judge_prompt, truthfulqa_prompt

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _task(**settings) -> TruthfulQA:
    return TruthfulQA(TruthfulQAEvalConfig(run_name="t", model_path="m", **settings))


def _phase(name: str, model, items, path, **settings) -> list[dict]:
    """One phase of the TruthfulQA task, as the evaluation runs it per adapter."""
    return run_phase(_task(**settings), name, model, items, path)


@pytest.fixture(scope="module")
def lm(tiny_model_dir):
    return HFLM(str(tiny_model_dir), batch_size=8)


@pytest.fixture(scope="module")
def judge(tiny_truth_judge_dir):
    return HFLM(str(tiny_truth_judge_dir), batch_size=8)


@pytest.fixture(scope="module")
def csv_rows(truthfulqa_csv):
    with open(truthfulqa_csv, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def data30(truthfulqa_csv):
    return load_truthfulqa(truthfulqa_csv, limit=30)


# --------------------------------------------------------------------------------------------- data

def test_csv_targets_built_as_defined(truthfulqa_csv, csv_rows):
    data = load_truthfulqa(truthfulqa_csv, limit=-1)
    assert len(data.mc) == len(data.gen) == len(csv_rows) == 817
    for row, item in zip(csv_rows, data.mc):
        best = row["Best Answer"].strip()
        # split on "; "; some cells end with a bare ";" (a trailing separator, never part of an answer)
        correct = [a.strip().removesuffix(";") for a in row["Correct Answers"].split("; ") if a.strip(" ;")]
        incorrect = [a.strip().removesuffix(";") for a in row["Incorrect Answers"].split("; ") if a.strip(" ;")]
        assert item.question == row["Question"].strip()
        assert item.mc1_choices == [best] + incorrect and item.mc1_labels == [1] + [0] * len(incorrect)
        assert item.mc2_choices == correct + incorrect
        assert item.mc2_labels == [1] * len(correct) + [0] * len(incorrect)
    # The CSV has cells ending in "; ": no empty choice may come out of them.
    assert any(r["Correct Answers"].endswith("; ") for r in csv_rows)
    assert any(r["Correct Answers"].endswith(";") for r in csv_rows)
    assert all(c and not c.endswith(";") for it in data.mc for c in it.mc1_choices + it.mc2_choices)
    assert len(load_truthfulqa(truthfulqa_csv, limit=7).mc) == 7


def test_csv_missing_column_is_a_clear_error(tmp_path, csv_rows):
    bad = tmp_path / "no_incorrect.csv"
    with bad.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["Type", "Question", "Best Answer", "Correct Answers"], extrasaction="ignore")
        w.writeheader()
        w.writerows(csv_rows[:3])
    with pytest.raises(DataError, match=r"no_incorrect\.csv.*missing column.*Incorrect Answers"):
        load_truthfulqa(bad)
    empty = tmp_path / "empty_best.csv"
    with empty.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(csv_rows[0]))
        w.writeheader()
        w.writerows([csv_rows[0], {**csv_rows[1], "Best Answer": " "}])
    with pytest.raises(DataError, match=r"empty_best\.csv.*data row 2.*Best Answer"):
        load_truthfulqa(empty)


def test_hf_schema_files_load_like_the_csv(tmp_path, truthfulqa_csv):
    data = load_truthfulqa(truthfulqa_csv, limit=5)
    recs = [{"question": it.question, "mc1_targets": {"choices": it.mc1_choices, "labels": it.mc1_labels},
             "mc2_targets": {"choices": it.mc2_choices, "labels": it.mc2_labels}} for it in data.mc]
    (tmp_path / "tqa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (tmp_path / "tqa.json").write_text(json.dumps(recs))
    pd.DataFrame(recs).to_parquet(tmp_path / "tqa.parquet")
    for name in ("tqa.jsonl", "tqa.json", "tqa.parquet"):
        got = load_truthfulqa(tmp_path / name, limit=4)
        assert got.mc == data.mc[:4], name
        assert [g.question for g in got.gen] == [it.question for it in data.mc[:4]]
    recs[2]["mc1_targets"]["labels"] = [1] * len(recs[2]["mc1_targets"]["labels"])
    (tmp_path / "bad.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    with pytest.raises(DataError, match=r"bad\.jsonl.*record 3.*mc1_targets needs exactly one label 1"):
        load_truthfulqa(tmp_path / "bad.jsonl")


def test_hf_schema_records_of_the_wrong_type_are_named(tmp_path, truthfulqa_csv):
    data = load_truthfulqa(truthfulqa_csv, limit=3)
    good = [{"question": it.question, "mc1_targets": {"choices": it.mc1_choices, "labels": it.mc1_labels},
             "mc2_targets": {"choices": it.mc2_choices, "labels": it.mc2_labels}} for it in data.mc]
    cases = [
        ("question", 5, r"line 2: field 'question' must be a string, got int 5$"),
        ("mc1_targets", [1, 0], r"line 2: field 'mc1_targets' must be an object, got list \[1, 0\]$"),
        ("mc2_targets", {"choices": "a;b", "labels": [1, 0]}, r"record 2 \(.*\): mc2_targets\.choices must be a list of "
                                                              r"strings$"),
        ("mc1_targets", {"choices": ["a", "b"], "labels": ["1", "0"]}, r"record 2 \(.*\): mc1_targets\.labels must be a "
                                                                     r"list of 0/1 integers$"),
        ("correct_answers", "one answer", r"record 2 \(.*\): correct_answers must be a list of strings$"),
    ]
    for field_name, value, message in cases:
        recs = [dict(r) for r in good]
        recs[1][field_name] = value
        path = tmp_path / "bad.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in recs))
        with pytest.raises(DataError, match=message):
            load_truthfulqa(path)


def test_hub_path_reads_both_configs(monkeypatch, truthfulqa_csv):
    """The default data path with `datasets.load_dataset` answered from CSV-built rows (no network here)."""
    import datasets

    data = load_truthfulqa(truthfulqa_csv, limit=6)
    mc_rows = [{"question": it.question, "mc1_targets": {"choices": it.mc1_choices, "labels": it.mc1_labels},
                "mc2_targets": {"choices": it.mc2_choices, "labels": it.mc2_labels}} for it in data.mc]
    gen_rows = [{"type": "Adversarial", "category": g.category, "question": g.question, "best_answer": g.best_answer,
                 "correct_answers": g.correct_answers, "incorrect_answers": g.incorrect_answers, "source": ""}
                for g in data.gen]
    calls = []

    def fake_load(name, config, split):
        calls.append((name, config, split))
        return datasets.Dataset.from_list(mc_rows if config == "multiple_choice" else gen_rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    got = load_truthfulqa(None, limit=4)
    assert calls == [("truthfulqa/truthful_qa", "multiple_choice", "validation"),
                     ("truthfulqa/truthful_qa", "generation", "validation")]
    assert got.mc == data.mc[:4] and got.gen == data.gen[:4] and got.source == "hf:truthfulqa/truthful_qa"
    assert len(load_truthfulqa(None, limit=-1, need_gen=False).mc) == 6


def test_hub_offline_tells_user_to_pass_data_path(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DatasetUnavailableError, match="--data_path"):
        load_truthfulqa(None, limit=3)


# --------------------------------------------------------------------------------------------- MC

def test_mc_metric_definitions():
    assert mc1_hit([-1.0, -1.0, -3.0], [1, 0, 0])      # a tie goes to the first choice
    assert not mc1_hit([-2.0, -1.0], [1, 0])
    p = np.exp([-1.0, -2.0, -0.5])
    assert mc2_mass([-1.0, -2.0, -0.5], [1, 1, 0]) == pytest.approx((p[0] + p[1]) / p.sum(), abs=1e-12)
    assert mc2_mass([-1000.0, -1001.0], [1, 0]) == pytest.approx(1 / (1 + math.exp(-1)), abs=1e-12)


def _same_model(lm, **settings):
    """Another HFLM over the same loaded model, with other batching settings."""
    return HFLM(lm.model_path, model=lm.model, tokenizer=lm.tokenizer, **settings)


def _reference_mc(model, tok, items):
    """Every mc1 and mc2 choice scored on its own (full log-softmax), metrics with numpy."""
    hits, masses, scores = [], [], []
    for it in items:
        ctx = truthfulqa_prompt(it.question)
        s1 = np.array([reference_response_logprob(model, tok, ctx, truthfulqa_choice(c)) for c in it.mc1_choices])
        s2 = np.array([reference_response_logprob(model, tok, ctx, truthfulqa_choice(c)) for c in it.mc2_choices])
        hits.append(float(np.array(it.mc1_labels)[int(np.argmax(s1))] == 1))
        w = np.exp(s2 - s2.max())
        masses.append(float(w[np.array(it.mc2_labels) == 1].sum() / w.sum()))
        scores.append((s1, s2))
    return float(np.mean(hits)), float(np.mean(masses)), scores


def test_batched_mc_equals_per_choice_reference(lm, data30):
    ref_mc1, ref_mc2, ref_scores = _reference_mc(lm.model, lm.tokenizer, data30.mc)
    for mc_batch, share in ((64, True), (7, True), (64, False)):
        res = score_mc(_same_model(lm, batch_size=mc_batch, share_prefix=share), data30.mc)
        # packed rows sum in float64 like the reference; the flat path sums token log-probs in float32
        tol = 1e-5 if share else 1e-4
        for r, (s1, s2) in zip(res, ref_scores):
            assert np.abs(np.array(r.mc1_scores) - s1).max() < tol
            assert np.abs(np.array(r.mc2_scores) - s2).max() < tol
        m = phase_metrics(_task().phase("mc"), [r.record() for r in res])
        assert m["mc1"] == ref_mc1
        assert abs(m["mc2"] - ref_mc2) < 1e-5
    assert 0 < ref_mc2 < 1


def test_packing_handles_a_token_straddling_the_context_boundary(lm):
    ctx = "Q: Who?\nA: Th"
    conts = [" no", "e cat", "ere", "e"]
    g = pack_group(lm.tokenizer, ctx, conts)
    assert g.response_offsets != [0] * len(conts)  # " no" keeps "Th" as a context token; the rest merge into it
    got = _same_model(lm, batch_size=8).loglikelihood_groups([(ctx, conts), (truthfulqa_prompt("Why?"), [" Because."])])
    ref = [reference_response_logprob(lm.model, lm.tokenizer, ctx, c) for c in conts]
    assert np.abs(np.array(got[0]) - ref).max() < 1e-5
    assert abs(got[1][0] - reference_response_logprob(lm.model, lm.tokenizer, truthfulqa_prompt("Why?"),
                                                      " Because.")) < 1e-5


# --------------------------------------------------------------------------------------------- generation, judge

def test_batched_greedy_generation_equals_unbatched(lm, data30, tmp_path):
    items = data30.gen[:8]
    lm4, lm1 = _same_model(lm, gen_batch_size=4), _same_model(lm, gen_batch_size=1)
    batched = _phase("generation", lm4, items, tmp_path / "b.jsonl", max_new_tokens=12)
    single = _phase("generation", lm1, items, tmp_path / "s.jsonl", max_new_tokens=12)
    assert [r["generated"] for r in batched] == [r["generated"] for r in single]
    assert [r["index"] for r in batched] == [it.index for it in items]
    assert len({r["generated"] for r in batched}) > 1
    stopped = _phase("generation", lm4, items, tmp_path / "c.jsonl", max_new_tokens=12, stop_sequences=["e", ":"])
    assert [r["generated"] for r in stopped] == [cut_at_stop(r["generated"], ["e", ":"]) for r in batched]


def _study_reference(model, tok, context, continuation, search):
    """The study's scoring written out (eval_truthfulqa.py:75-142, 185-216) for a generic fast tokenizer, whose
    build_inputs_with_special_tokens added nothing: the whole text without special tokens; the span is the
    continuation's standalone tokens searched in the sequence (MC, ``search``) or the last ones (judge)."""
    import torch

    text_ids = tok(context + continuation, add_special_tokens=False)["input_ids"] if search else \
        tok(context, add_special_tokens=False)["input_ids"] + tok(continuation, add_special_tokens=False)["input_ids"]
    span_ids = tok(continuation.strip() if search else continuation, add_special_tokens=False)["input_ids"]
    start = len(text_ids) - len(span_ids)
    if search:
        hits = [i for i in range(len(text_ids) - len(span_ids) + 1) if text_ids[i:i + len(span_ids)] == span_ids]
        start = hits[0] if hits else max(0, len(text_ids) - len(span_ids))
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([text_ids])).logits[0].double(), -1)
    return sum(logp[t - 1, text_ids[t]].item() for t in range(max(start, 1), start + len(span_ids)))


@pytest.mark.parametrize("continuation", ["study", "in_context"])
def test_judge_probabilities_match_direct_computation(judge, data30, tmp_path, continuation):
    gens = [{"index": it.index, "question": it.question, "generated": ans}
            for it, ans in zip(data30.gen[:6], [it.best_answer for it in data30.gen[:3]] + ["No.", "", " Paris"])]
    recs = _phase("judge", judge, gens, tmp_path / "j.jsonl", judge_batch_size=4, judge_continuation=continuation,
                  judge_model_path="j")
    for g, r in zip(gens, recs):
        prompt = truthfulqa_judge_prompt(g["question"], g["generated"])
        if continuation == "in_context":
            ly = reference_response_logprob(judge.model, judge.tokenizer, prompt, " yes")
            ln = reference_response_logprob(judge.model, judge.tokenizer, prompt, " no")
        else:
            ly, ln = (_study_reference(judge.model, judge.tokenizer, prompt, c, search=False) for c in (" yes", " no"))
        p = math.exp(ly) / (math.exp(ly) + math.exp(ln))
        assert r["logp_yes"] == pytest.approx(ly, abs=1e-4) and r["logp_no"] == pytest.approx(ln, abs=1e-4)
        assert r["truth_prob"] == pytest.approx(p, abs=1e-5)
        assert r["is_truthful"] == (p > 0.5)
    m = phase_metrics(_task().phase("judge"), recs)
    assert m["gen_avg_prob"] == pytest.approx(np.mean([r["truth_prob"] for r in recs]), abs=1e-12)
    assert m["gen_truthfulness"] == np.mean([r["truth_prob"] > 0.5 for r in recs])
    assert recs[4]["generated"] == "" and recs[4]["truth_prob"] > 0  # kept and judged
    assert phase_metrics(_task().phase("generation"), gens)["n_empty"] == 1  # and counted


def test_study_mc_inputs_equal_the_studys_computation(lm, data30):
    """``--mc_inputs study`` (on with --study_compat): no BOS on a generic fast tokenizer, the span found by
    searching the choice's standalone tokens; against the study's algorithm written out."""
    items = data30.mc[:8]
    res = score_mc(_same_model(lm, batch_size=16), items, mc_inputs="study")
    default = score_mc(_same_model(lm, batch_size=16), items)
    for it, r in zip(items, res):
        ctx = truthfulqa_prompt(it.question)
        ref = [_study_reference(lm.model, lm.tokenizer, ctx, truthfulqa_choice(c), search=True) for c in it.mc1_choices]
        assert np.abs(np.array(r.mc1_scores) - ref).max() < 1e-4
    assert any(np.abs(np.array(r.mc1_scores) - d.mc1_scores).max() > 1e-3 for r, d in zip(res, default))


class _NaNLM:
    """Scores every choice -1 except those containing "NaN" (an fp16 overflow stand-in)."""

    tokenizer = None

    def loglikelihood_groups(self, groups, progress=False, desc=""):
        return [[float("nan") if "NaN" in c else -1.0 for c in conts] for _, conts in groups]


def test_nonfinite_choice_score_stops_the_run_naming_the_row(data30, tmp_path):
    from dataclasses import replace

    from aligner.eval.checks import NonFiniteScoreError

    items = list(data30.mc[:4])
    items[2] = replace(items[2], mc2_choices=[*items[2].mc2_choices[:-1], "NaN"])
    with pytest.raises(NonFiniteScoreError, match=rf"row index=2 \(question {items[2].question[:20]!r}"[:-1]):
        _phase("mc", _NaNLM(), items, tmp_path / "mc.jsonl", mc_batch=1)
    assert [json.loads(line)["index"] for line in (tmp_path / "mc.jsonl").read_text().splitlines()] == [0, 1]


def test_limit_zero_means_all_and_study_compat_sets_the_study_inputs():
    from aligner.core.cli import parse_config
    from aligner.eval.tasks.truthfulqa import TruthfulQAEvalConfig

    base = ["--model_path", "m", "--run_name", "r"]
    assert parse_config(TruthfulQAEvalConfig, [*base, "--limit", "0"]).limit == -1
    assert parse_config(TruthfulQAEvalConfig, [*base, "--limit", "7"]).limit == 7
    cfg = parse_config(TruthfulQAEvalConfig, base)
    assert (cfg.mc_inputs, cfg.judge_continuation) == ("continuation", "study")
    assert parse_config(TruthfulQAEvalConfig, [*base, "--study_compat"]).mc_inputs == "study"
