"""make_tables / aligner.reports: the study's tables from its own metric files, bootstrap intervals, plots."""

import csv
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import run_script

from aligner.core.paths import seed_results_dir, shared_data_dir
from aligner.eval.evaluate import phase_metrics
from aligner.eval.metrics.registry import metric_kind
from aligner.eval.tasks import halueval, halueval_twostep, truthfulqa, truthfulqa_scoring
from aligner.report.bootstrap import bootstrap_ci
from aligner.report.plots import plot_training_curves
from aligner.report.tables import collect_results, compare, render

SEED_README = shared_data_dir().parent / "seed" / "deepseek_aligner_README.md"
README_SECTIONS = {"1. HaluEval (Similarity Score)": "Halueval", "2. HaluEval (With LLM Judge)": "HaluevalLLM",
                   "3. TruthfulQA": "TruthfulQA"}
README_RUNS = {"Best Model vs Baseline": "dpop_best", "Latest Model vs Baseline": "dpop_last"}
README_METRICS = {"Hallucination Rate": "hallucination_rate", "Avg Confidence Margin": "avg_confidence_margin",
                  "Avg BERT Score": "avg_bert_score", "Avg BLEU": "avg_bleu", "Avg ROUGE-L": "avg_rouge_l",
                  "Avg Faithfulness": "avg_faithfulness", "Avg BERT F1": "avg_bert_f1", "MC1": "mc1", "MC2": "mc2",
                  "Gen Truthfulness": "gen_truthfulness", "Gen Avg Prob": "gen_avg_prob"}
# Rows where the README's printed percentage is not what its own metric files give at 2 decimals
# (e.g. 0.0073 / 0.0729 = 10.0137% is printed as +10.02%): hand-rounding slips in the README.
README_SLIPS = {("Halueval", "dpop_last", "hallucination_rate"), ("HaluevalLLM", "dpop_best", "avg_bert_f1"),
                ("HaluevalLLM", "dpop_last", "hallucination_rate")}


def _num(s: str) -> float:
    return float(s.replace("**", "").replace("−", "-").replace("%", "").replace(",", "").strip())


def readme_changes() -> dict:
    """{(benchmark, run, metric): (abs_change, rel_change_pct)} parsed from the study's README tables."""
    out = {}
    bench = run = None
    for line in SEED_README.read_text(encoding="utf-8").splitlines():
        s = line.strip()
        if s in README_SECTIONS:
            bench, run = README_SECTIONS[s], None
        elif s.startswith("####"):
            run = README_RUNS.get(s.lstrip("# ").strip())
        elif bench and run and s.startswith("| **"):
            cells = [c.strip() for c in s.strip("|").split("|")]
            out[(bench, run, README_METRICS[cells[0].strip("* ")])] = (_num(cells[1]), _num(cells[2]))
        elif s.startswith("### Interpretation"):
            run = None
    return out


def independent_change(bench: str, run: str, metric: str) -> tuple[float, float]:
    base = json.loads((seed_results_dir() / bench / "metrics_baseline.json").read_text())[metric]
    cur = json.loads((seed_results_dir() / bench / f"metrics_{run}.json").read_text())[metric]
    return cur - base, (cur - base) / base * 100.0


@pytest.fixture(scope="module")
def seed_csv():
    if not SEED_README.is_file() or not seed_results_dir().is_dir():
        pytest.skip("the study's README / seed results are not next to the checkout")
    proc = run_script("scripts/make_tables.py", "--results_dir", seed_results_dir(), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    return {(r["benchmark"], r["run"], r["metric"]): r for r in rows if r["table"] == "change"}


def test_seed_tables_reproduce_readme_relative_changes(seed_csv):
    readme = readme_changes()
    assert len(readme) == 24  # 5+5 HaluEval, 3+3 LLM judge, 4+4 TruthfulQA
    assert set(readme) == set(seed_csv)
    exact = 0
    for key, (r_abs, r_rel) in readme.items():
        row = seed_csv[key]
        want_abs, want_rel = independent_change(*key)
        assert float(row["rel_change_pct"]) == pytest.approx(want_rel, abs=1e-9)
        assert float(row["abs_change"]) == pytest.approx(want_abs, abs=1e-12)
        assert abs(float(row["abs_change"]) - r_abs) <= 5e-5, key      # README rounds to 4-5 decimals
        if key in README_SLIPS:
            assert round(want_rel, 2) != r_rel and abs(want_rel - r_rel) < 0.05, key
        else:
            assert round(float(row["rel_change_pct"]), 2) == r_rel, key
            exact += 1
    assert exact == 21
    # the named numbers
    assert float(seed_csv[("Halueval", "dpop_best", "hallucination_rate")]["abs_change"]) == pytest.approx(-0.0045)
    assert seed_csv[("Halueval", "dpop_best", "hallucination_rate")]["verdict"] == "improved"
    assert seed_csv[("HaluevalLLM", "dpop_best", "hallucination_rate")]["verdict"] == "regressed"
    assert seed_csv[("TruthfulQA", "dpop_last", "mc2")]["verdict"] == "improved"
    assert seed_csv[("TruthfulQA", "dpop_last", "mc1")]["verdict"] == "regressed"
    # without per-sample files there is no interval
    assert all(r["ci_low"] == "" for r in seed_csv.values())


def test_seed_markdown_rows():
    if not seed_results_dir().is_dir():
        pytest.skip("no seed results")
    md = run_script("scripts/make_tables.py", "--results_dir", seed_results_dir(), "--runs", "dpop_best,dpop_last").stdout
    sections = re.split(r"^## ", md, flags=re.M)
    halu = next(s for s in sections if s.startswith("Halueval\n"))
    best = halu.split("### dpop_best vs baseline")[1].split("###")[0]
    row = next(ln for ln in best.splitlines() if ln.startswith("| Hallucination Rate"))
    assert "-0.00450" in row and "-6.17%" in row and "improved" in row
    tqa = next(s for s in sections if s.startswith("TruthfulQA\n"))
    last = tqa.split("### dpop_last vs baseline")[1]
    assert "+0.05%" in next(ln for ln in last.splitlines() if ln.startswith("| MC2 "))
    summary = halu.split("### Summary")[1].split("###")[0]
    assert "| Total Samples | 10000 | 10000 | 10000 |" in summary


def test_direction_rules():
    assert metric_kind("hallucination_rate") == "lower"
    assert metric_kind("avg_bleu") == "higher" and metric_kind("mc2") == "higher"
    assert metric_kind("total_samples") == "count" and metric_kind("n_mc_questions") == "count"


# ---------------------------------------------------------------------------------------------
# paired bootstrap on synthetic per-sample files
# ---------------------------------------------------------------------------------------------

def _write_run(folder: Path, run: str, recs: list[dict], order=None):
    folder.mkdir(parents=True, exist_ok=True)
    n = len(recs)
    metrics = {"hallucination_rate": sum(r["is_hallucinated"] for r in recs) / n,
               "avg_confidence_margin": sum(r["sim_right"] - r["sim_halluc"] for r in recs) / n,
               "avg_bert_score": sum(r["bert_score"] for r in recs) / n,
               "avg_bleu": sum(r["bleu"] for r in recs) / n, "avg_rouge_l": sum(r["rouge_l"] for r in recs) / n,
               "total_samples": n, "model": "tiny"}
    (folder / f"metrics_{run}.json").write_text(json.dumps(metrics))
    rows = [recs[i] for i in (order if order is not None else range(n))]
    (folder / f"detailed_{run}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture()
def synthetic_results(tmp_path):
    rng = np.random.default_rng(7)
    n = 400
    base_h = rng.random(n) < 0.30
    fixed = rng.random(n) < 0.5
    run_h = (base_h & ~fixed) | (rng.random(n) < 0.02)      # clearly fewer hallucinations
    sr, sh = rng.random(n), rng.random(n)
    bleu = rng.random(n) * 0.2
    rouge = rng.random(n)
    rouge_run = rouge + rng.normal(0, 0.05, n)                 # no real change
    base = [{"question": f"q{i}", "is_hallucinated": bool(base_h[i]), "sim_right": sr[i], "sim_halluc": sh[i],
             "bert_score": 0.8, "bleu": bleu[i], "rouge_l": rouge[i]} for i in range(n)]
    run = [{"question": f"q{i}", "is_hallucinated": bool(run_h[i]), "sim_right": sr[i] + 0.05, "sim_halluc": sh[i],
            "bert_score": 0.8, "bleu": bleu[i], "rouge_l": rouge_run[i]} for i in range(n)]
    root = tmp_path / "results"
    _write_run(root / "Halueval", "baseline", base)
    _write_run(root / "Halueval", "tuned", run, order=rng.permutation(n))   # another order: pairing by question
    return root, np.array([r["is_hallucinated"] for r in base], float), np.array(
        [r["is_hallucinated"] for r in run], float)


def test_paired_bootstrap_intervals(synthetic_results):
    root, xb, xr = synthetic_results
    report = compare(collect_results(root), n_boot=1000, seed=3)
    ch = {c.metric: c for c in report.changes["Halueval"]["tuned"]}
    assert set(ch) == {"hallucination_rate", "avg_confidence_margin", "avg_bert_score", "avg_bleu", "avg_rouge_l"}
    h = ch["hallucination_rate"]
    assert h.verdict == "improved" and h.ci.n_pairs == 400 and h.ci.consistent
    assert h.ci.excludes_zero and h.ci.high < 0
    # an independent yardstick: the normal approximation of the paired mean difference
    d = xr - xb
    half = 1.96 * d.std(ddof=1) / math.sqrt(len(d))
    assert h.ci.low == pytest.approx(d.mean() - half, abs=0.25 * half)
    assert h.ci.high == pytest.approx(d.mean() + half, abs=0.25 * half)
    assert h.ci.low < h.abs_change < h.ci.high
    assert h.ci.rel_low < h.rel_change < h.ci.rel_high
    # the margin moved by exactly +0.05 for every pair: a zero-width interval at +0.05
    m = ch["avg_confidence_margin"]
    assert m.ci.low == pytest.approx(0.05) and m.ci.high == pytest.approx(0.05) and m.ci.excludes_zero
    assert not ch["avg_bert_score"].ci.excludes_zero and ch["avg_bert_score"].verdict == "unchanged"
    assert not ch["avg_rouge_l"].ci.excludes_zero                   # pure noise
    assert not report.notes
    # seeded: the same numbers again
    again = compare(collect_results(root), n_boot=1000, seed=3)
    h2 = {c.metric: c for c in again.changes["Halueval"]["tuned"]}["hallucination_rate"]
    assert (h2.ci.low, h2.ci.high) == (h.ci.low, h.ci.high)
    md = render(report, "md").split("### tuned vs baseline")[1]
    row = next(ln for ln in md.splitlines() if ln.startswith("| Hallucination Rate"))
    assert "] *" in row and "| 400 |" in row
    latex = render(report, "latex")
    assert r"\begin{tabular}" in latex and r"\%" in latex and "Hallucination Rate" in latex


def test_bootstrap_matches_unpaired_order_and_mismatch_is_flagged(synthetic_results, tmp_path):
    root, xb, xr = synthetic_results
    # the same pairs given straight to the bootstrap reproduce the interval (so matching worked)
    report = compare(collect_results(root), n_boot=500, seed=11)
    h = {c.metric: c for c in report.changes["Halueval"]["tuned"]}["hallucination_rate"]
    from aligner.report.bootstrap import _stable_seed
    lo, hi, _, _ = bootstrap_ci(xb, xr, n_boot=500, seed=_stable_seed("11", "Halueval", "tuned", "hallucination_rate"))
    assert (lo, hi) == (h.ci.low, h.ci.high)
    # a metrics file that disagrees with its per-sample file is flagged, not silently used
    mfile = root / "Halueval" / "metrics_tuned.json"
    m = json.loads(mfile.read_text())
    m["avg_bleu"] += 0.01
    mfile.write_text(json.dumps(m))
    report = compare(collect_results(root), n_boot=200, seed=0)
    assert any("avg_bleu" in n for n in report.notes)
    assert "†" in render(report, "md")


def test_plots(synthetic_results, tmp_path):
    root, _, _ = synthetic_results
    png = tmp_path / "bars.png"
    run_script("scripts/make_tables.py", "--results_dir", root, "--n_boot", "100", "--plot", png,
               "--output", tmp_path / "tables.md")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Hallucination Rate" in (tmp_path / "tables.md").read_text()
    # training curves from a train_log.jsonl as aligner/trainer.py writes it (two stages, a resumed step, a torn line)
    log = tmp_path / "run" / "train_log.jsonl"
    log.parent.mkdir()
    lines = [{"step": s, "stage": 1 if s <= 4 else 2, "loss": 0.7 - 0.05 * s, "rewards/accuracies": 0.5 + 0.05 * s,
              "rewards/margins": 0.1 * s} for s in range(1, 9)]
    lines.insert(5, dict(lines[4]))
    log.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 9, "sta')
    out = plot_training_curves(log, tmp_path / "curves.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


def test_field_table_matches_the_evaluation_writers(tmp_path):
    """Per-sample files shaped by aligner/halueval.py and aligner/truthfulqa.py, aggregated by their own
    functions: every compared metric gets an interval and the per-sample means reproduce the metric files."""
    rng = np.random.default_rng(5)
    n = 30
    root = tmp_path / "results"
    for run in ("baseline", "tuned"):
        # similarity flow: the fields the writer declares
        sim = []
        for i in range(n):
            rec = {f: float(rng.random()) for f in halueval.DETAILED_FIELDS}
            rec.update(question=f"q{i}", generated="g", right_answer="a")
            rec["is_hallucinated"] = rec["sim_halluc"] > rec["sim_right"]
            rec["match_right"], rec["match_hallucinated"] = bool(i % 3 == 0), bool(i % 4 == run.startswith("t"))
            sim.append(rec)
        _write(root / "Halueval", run, halueval.aggregate_similarity(sim), sim)
        # two-step flow: the records score_faithfulness writes, aggregated by aggregate_faithfulness
        faith = [{"question": f"q{i}", "right_answer": "a", "generated": "g", "faithfulness_score": float(f),
                  "is_hallucinated": bool(f < 0.5), "bert_score": float(rng.random()), "bleu": float(rng.random())}
                 for i, f in enumerate(rng.random(n))]
        _write(root / "HaluevalLLM", run, halueval_twostep.aggregate_faithfulness(faith), faith)
        # TruthfulQA: MC results and judged generations
        mc = [truthfulqa_scoring.MCResult(i, f"q{i}", ["a", "b", "c"], [1, 0, 0], rng.normal(size=3).tolist(),
                                  ["a", "d", "b"], [1, 1, 0], rng.normal(size=3).tolist()).record()
              for i in range(n)]
        gen = [{"index": i, "question": f"q{i}", "generated": "g", "truth_prob": float(p), "is_truthful": bool(p > 0.5)}
               for i, p in enumerate(rng.random(n))]
        folder = root / "TruthfulQA"
        task = truthfulqa.TruthfulQA(truthfulqa.TruthfulQAEvalConfig(run_name=run, model_path="tiny"))
        metrics = {"model": "tiny", "lora_path": None, **phase_metrics(task.phase("mc"), mc),
                   **phase_metrics(task.phase("judge"), gen), "seconds": {"mc": 1.0}}
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"metrics_{run}.json").write_text(json.dumps(metrics))
        for name, recs in ((f"detailed_mc_{run}.jsonl", mc), (f"detailed_gen_{run}.jsonl", gen)):
            (folder / name).write_text("".join(json.dumps(r) + "\n" for r in recs))
    report = compare(collect_results(root), n_boot=200, seed=0)
    assert not report.notes, report.notes
    compared = {(b, c.metric): c for b, runs in report.changes.items() for c in runs["tuned"]}
    assert {m for b, m in compared if b == "TruthfulQA"} == {"mc1", "mc2", "gen_truthfulness", "gen_avg_prob"}
    assert {m for b, m in compared if b == "HaluevalLLM"} == {"hallucination_rate", "avg_faithfulness",
                                                              "avg_bert_f1", "avg_bleu"}
    assert len([k for k in compared if k[0] == "Halueval"]) == 7  # five of the study's, the two answer matches
    assert all(c.ci is not None and c.ci.n_pairs == n and c.ci.consistent for c in compared.values())


def _write(folder: Path, run: str, metrics: dict, recs: list[dict]):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"metrics_{run}.json").write_text(json.dumps(metrics))
    (folder / f"detailed_{run}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
