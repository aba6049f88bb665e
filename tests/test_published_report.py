"""The reproduction report against the study's own files: a published-side interval where the study kept per-item
values (its detailed files, in its field names and file names), none for MC, BLEU and ROUGE-L, and the README rows
each kind of gap points to."""

import json
import math

import numpy as np
import pytest

from aligner.core.paths import result_file
from aligner.report.published import compare_published, render_published
from aligner.report.tables import collect_results, compare

N = 400


def _jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _published(root, halluc: dict, truthful: dict):
    """The study's evaluation/results layout: metrics files, Halueval's detailed_R.jsonl (no per-item BLEU or
    ROUGE-L) and TruthfulQA's generation file named detailed_R.jsonl (no per-item MC)."""
    for run, verdicts in halluc.items():
        _jsonl(root / "Halueval" / f"detailed_{run}.jsonl",
               [{"question": f"q{i}", "generated": "a", "right_answer": "a", "sim_right": 0.9, "sim_halluc": 0.1,
                 "bert_score": 0.8, "is_hallucinated": bool(v)} for i, v in enumerate(verdicts)])
        (root / "Halueval" / f"metrics_{run}.json").write_text(json.dumps(
            {"hallucination_rate": float(np.mean(verdicts)), "avg_bleu": 0.08, "avg_rouge_l": 0.8}))
    for run, truthful_verdicts in truthful.items():
        _jsonl(root / "TruthfulQA" / f"detailed_{run}.jsonl",
               [{"question": f"t{i}", "generated": "x", "truth_prob": 0.9 if v else 0.1, "is_truthful": bool(v)}
                for i, v in enumerate(truthful_verdicts)])
        (root / "TruthfulQA" / f"metrics_{run}.json").write_text(json.dumps(
            {"mc1": 0.25, "mc2": 0.44, "gen_truthfulness": float(np.mean(truthful_verdicts))}))
    return root


def _reproduced(root, halluc: dict, truthful: dict, mc1: dict):
    for run, verdicts in halluc.items():
        _jsonl(result_file(root / "Halueval", "detailed", run),
               [{"question": f"q{i}", "is_hallucinated": bool(v), "bleu": 0.1, "rouge_l": 0.8}
                for i, v in enumerate(verdicts)])
        result_file(root / "Halueval", "metrics", run).write_text(json.dumps(
            {"hallucination_rate": float(np.mean(verdicts)), "avg_bleu": 0.1, "avg_rouge_l": 0.8}))
    for run, verdicts in truthful.items():
        _jsonl(result_file(root / "TruthfulQA", "detailed_gen", run),
               [{"question": f"t{i}", "is_truthful": bool(v), "truth_prob": 0.9 if v else 0.1}
                for i, v in enumerate(verdicts)])
        _jsonl(result_file(root / "TruthfulQA", "detailed_mc", run),
               [{"question": f"t{i}", "mc1_hit": bool(v)} for i, v in enumerate(mc1[run])])
        result_file(root / "TruthfulQA", "metrics", run).write_text(json.dumps(
            {"mc1": float(np.mean(mc1[run])), "gen_truthfulness": float(np.mean(verdicts))}))
    return root


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    rng = np.random.default_rng(0)
    tmp = tmp_path_factory.mktemp("report")
    pub_h = {"baseline": rng.random(N) < 0.07, "dpop_best": rng.random(N) < 0.07}
    pub_t = {"baseline": rng.random(N) < 0.7, "dpop_best": rng.random(N) < 0.66}
    near = pub_h["baseline"].copy()
    near[np.flatnonzero(~near)[:2]] = True  # two more hallucinations: another value, inside the published interval
    ours_h = {"base": near, "s_dpop_best": rng.random(N) < 0.30}   # far from the published best
    ours_t = {"base": pub_t["baseline"], "s_dpop_best": pub_t["dpop_best"]}
    ours_mc1 = {"base": rng.random(N) < 0.6, "s_dpop_best": rng.random(N) < 0.6}  # published mc1 0.25: a gap
    pub = _published(tmp / "published", pub_h, pub_t)
    ours = _reproduced(tmp / "ours", ours_h, ours_t, ours_mc1)
    report = compare(collect_results(ours), baseline="base", n_boot=400, seed=0)
    got = compare_published(collect_results(pub), report, n_boot=400, seed=0)
    return {(r.benchmark, r.metric, r.published_run): r for r in got}, pub_h, got


def test_published_interval_only_where_the_study_kept_per_item_values(rows):
    by, pub_h, _ = rows
    base = by[("Halueval", "hallucination_rate", "baseline")]
    lo, hi = base.published_ci
    p = pub_h["baseline"].mean()
    se = math.sqrt(p * (1 - p) / N)
    assert lo <= p <= hi and 0.7 < (hi - lo) / (2 * 1.96 * se) < 1.3
    assert base.reproduced != pytest.approx(p) and base.reproduced_inside and not base.gap
    assert by[("TruthfulQA", "gen_truthfulness", "dpop_best")].published_ci is not None  # the study's detailed_R
    for key in (("Halueval", "avg_bleu", "baseline"), ("Halueval", "avg_rouge_l", "baseline"),
                ("TruthfulQA", "mc1", "baseline"), ("TruthfulQA", "mc2", "baseline")):
        assert by[key].published_ci is None, key


def test_gaps_point_to_the_rows_that_can_explain_them(rows):
    by, _, got = rows
    far = by[("Halueval", "hallucination_rate", "dpop_best")]
    assert far.reproduced_inside is False and far.value_inside is False and far.gap
    md = render_published(got, readme="R.md")
    line = next(ln for ln in md.splitlines() if ln.startswith("| Hallucination Rate | dpop_best → s_dpop_best"))
    assert "[E18](R.md#diff-e18)" in line and "[E24](R.md#diff-e24)" in line
    mc = next(ln for ln in md.splitlines() if ln.startswith("| MC1 | baseline → base"))
    assert "[E22](R.md#diff-e22), [E4](R.md#diff-e4)" in mc and "diff-e1)" not in mc and "diff-e24" not in mc
    assert "no MC1, MC2, BLEU or ROUGE-L values" in md and "no interval on the published side" in md
    assert "reproduced values lie inside the published run's bootstrap 95% interval" in md


def test_generation_gaps_point_to_batched_generation():
    from aligner.report.published import difference_rows

    assert "E5" in difference_rows("TruthfulQA", "gen_truthfulness")
    assert "E5" in difference_rows("TruthfulQA", "gen_avg_prob")
    assert {"E18"} <= set(difference_rows("HaluevalLLM", "avg_faithfulness"))
    assert difference_rows("TruthfulQA", "mc2", "dpop_last") == ("E22", "E4")
