"""The three-axis scoreboard, its trade-off figure and the published-vs-reproduced report, on metric and
per-sample files written here (field names and file kinds taken from the metric declarations)."""

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_script

from aligner.core.paths import result_file
from aligner.eval.metrics.registry import declared
from aligner.report.bootstrap import _stable_seed, bootstrap_ci
from aligner.report.plots import plot_tradeoff, tradeoff_points
from aligner.report.published import compare_published, match_runs, render_published
from aligner.report.scoreboard import build_scoreboard, render_scoreboard
from aligner.report.tables import collect_results, compare

N = 300
N_BOOT = 400
KEY = {"IFEval": "key"}  # the per-sample field that names a sample (the others: question)
BENCH_METRICS = {
    "Halueval": ["hallucination_rate"],
    "HaluevalLLM": ["hallucination_rate", "avg_faithfulness"],
    "TruthfulQA": ["mc2", "gen_truthfulness"],
    "IFEval": ["prompt_level_strict_acc", "prompt_level_loose_acc"],
}


def _samples(seed: int, shift: dict) -> dict:
    """{(benchmark, metric): per-sample values}; ``shift`` moves a metric's rate or mean."""
    rng = np.random.default_rng(seed)
    out = {}
    for bench, metrics in BENCH_METRICS.items():
        for m in metrics:
            d = shift.get((bench, m), 0.0)
            if m in ("mc2", "avg_faithfulness"):
                out[(bench, m)] = np.clip(rng.normal(0.5 + d, 0.15, N), 0, 1)
            else:
                base = {"hallucination_rate": 0.3, "gen_truthfulness": 0.6}.get(m, 0.5)
                out[(bench, m)] = (rng.random(N) < base + d).astype(float)
    return out


def _perturbed(samples: dict, seed: int) -> dict:
    """The same samples with 1% of the verdicts flipped and a little noise: an adapter that changes nothing."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, x in samples.items():
        if set(np.unique(x)) <= {0.0, 1.0}:
            flip = rng.random(len(x)) < 0.01
            out[key] = np.where(flip, 1.0 - x, x)
        else:
            out[key] = np.clip(x + rng.normal(0, 0.01, len(x)), 0, 1)
    return out


def _write_run(root: Path, run: str, samples: dict, order=None, benches=None):
    """metrics_RUN.json (the means) and the per-sample files the declarations name, samples keyed by index."""
    for bench, metrics in BENCH_METRICS.items():
        if benches is not None and bench not in benches:
            continue
        folder = root / bench
        folder.mkdir(parents=True, exist_ok=True)
        key = KEY.get(bench, "question")
        files: dict[str, list[dict]] = {}
        for m in metrics:
            spec = declared(m)
            assert spec is not None and spec.per_sample, f"{m} is not declared with a per-sample field"
            recs = files.setdefault(spec.files[0], [{key: f"s{i}" if key == "question" else i} for i in range(N)])
            for rec, v in zip(recs, samples[(bench, m)]):
                rec[spec.per_sample[0]] = bool(v) if set(np.unique(samples[(bench, m)])) <= {0.0, 1.0} else float(v)
        for kind, recs in files.items():
            rows = [recs[i] for i in (order if order is not None else range(N))]
            result_file(folder, kind, run).write_text("".join(json.dumps(r) + "\n" for r in rows))
        metrics_json = {m: float(samples[(bench, m)].mean()) for m in metrics}
        result_file(folder, "metrics", run).write_text(json.dumps({**metrics_json, "model": "tiny"}))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    truthful_not_instructable = {("TruthfulQA", "mc2"): 0.08, ("TruthfulQA", "gen_truthfulness"): 0.15,
                                 ("IFEval", "prompt_level_strict_acc"): -0.2, ("IFEval", "prompt_level_loose_acc"): -0.15,
                                 ("HaluevalLLM", "hallucination_rate"): -0.1}
    base = _samples(0, {})
    samples = {"base": base, "a1": _samples(1, truthful_not_instructable), "a2": _perturbed(base, 2)}
    _write_run(root, "base", samples["base"])
    _write_run(root, "a1", samples["a1"], order=np.random.default_rng(5).permutation(N))  # paired by key, not order
    _write_run(root, "a2", samples["a2"])
    return root, samples


def _report(root, baseline="base"):
    return compare(collect_results(root), baseline=baseline, n_boot=N_BOOT, seed=0)


def test_scoreboard_values_changes_and_paired_intervals(results):
    root, samples = results
    report = _report(root)
    sb = build_scoreboard(report)
    assert sb.baseline == "base" and sb.adapters == ["a1", "a2"] and not sb.missing
    assert [(r.axis.name, r.spec.benchmark, r.spec.metric) for r in sb.rows] == [
        ("hallucination", "Halueval", "hallucination_rate"), ("hallucination", "HaluevalLLM", "hallucination_rate"),
        ("truthfulness", "TruthfulQA", "mc2"), ("truthfulness", "TruthfulQA", "gen_truthfulness"),
        ("instruction_following", "IFEval", "prompt_level_strict_acc"),
        ("instruction_following", "IFEval", "prompt_level_loose_acc")]
    for row in sb.rows:
        key = (row.spec.benchmark, row.spec.metric)
        for run in ("base", "a1", "a2"):
            assert math.isclose(row.values[run], samples[run][key].mean(), abs_tol=1e-12)
        for run in ("a1", "a2"):
            xb, xr = samples["base"][key], samples[run][key]
            c = row.changes[run]
            assert math.isclose(c.abs_change, xr.mean() - xb.mean(), abs_tol=1e-12)
            lo, hi, _, _ = bootstrap_ci(xb, xr, n_boot=N_BOOT,
                                        seed=_stable_seed("0", row.spec.benchmark, run, c.metric))
            assert c.ci.n_pairs == N and c.ci.consistent
            assert math.isclose(c.ci.low, lo, abs_tol=1e-12) and math.isclose(c.ci.high, hi, abs_tol=1e-12)
            se = np.std(xr - xb, ddof=1) / math.sqrt(N)      # the normal approximation of the same interval
            assert 0.75 < (c.ci.high - c.ci.low) / (2 * 1.96 * se) < 1.25
    by = {(r.spec.benchmark, r.spec.metric): r for r in sb.rows}
    assert by[("TruthfulQA", "mc2")].changes["a1"].verdict == "improved"
    assert by[("TruthfulQA", "mc2")].changes["a1"].ci.excludes_zero
    assert by[("IFEval", "prompt_level_strict_acc")].changes["a1"].verdict == "regressed"
    assert by[("HaluevalLLM", "hallucination_rate")].changes["a1"].verdict == "improved"  # lower is better


def test_scoreboard_markdown_and_tradeoff_points(results, tmp_path):
    root, samples = results
    sb = build_scoreboard(_report(root))
    md = render_scoreboard(sb, "md", figure="tradeoff.png")
    line = next(ln for ln in md.splitlines() if "| IFEval Prompt-level Strict ↑ |" in ln)
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[0] == "Instruction following"
    assert float(cells[2]) == pytest.approx(samples["base"][("IFEval", "prompt_level_strict_acc")].mean(), abs=1e-5)
    assert cells[4].endswith("regressed") and "*" in cells[4]
    assert "![trade-off" in md and "(tradeoff.png)" in md
    a1 = next(ln for ln in md.splitlines() if ln.startswith("- **a1**"))
    improved, regressed = a1.split("regressed: ")
    assert "TruthfulQA: MC2 ↑ +0.0" in improved and "IFEval Prompt-level Strict ↑ -0." in regressed
    a2 = next(ln for ln in md.splitlines() if ln.startswith("- **a2**"))
    assert "improved:" not in a2 and "regressed:" not in a2 and "IFEval Prompt-level Loose ↑" in a2

    xrow, panels = tradeoff_points(sb)
    assert (xrow.spec.benchmark, xrow.spec.metric) == ("IFEval", "prompt_level_strict_acc")
    assert [(p.spec.benchmark, p.spec.metric) for p, _ in panels] == [
        ("TruthfulQA", "mc2"), ("TruthfulQA", "gen_truthfulness"), ("HaluevalLLM", "hallucination_rate")]
    for yrow, pts in panels:
        assert [p.run for p in pts] == ["a1", "a2"]
        for p in pts:
            cx, cy = xrow.changes[p.run], yrow.changes[p.run]
            assert (p.x, p.y) == (cx.abs_change, cy.abs_change)
            assert p.xerr == pytest.approx((cx.abs_change - cx.ci.low, cx.ci.high - cx.abs_change))
            assert p.yerr == pytest.approx((cy.abs_change - cy.ci.low, cy.ci.high - cy.abs_change))
    png = plot_tradeoff(sb, tmp_path / "tradeoff.png")
    assert png.stat().st_size > 10_000


def test_scoreboard_without_ifeval_says_so_and_draws_nothing(results, tmp_path):
    _, samples = results
    root = tmp_path / "r"
    for run in ("base", "a1"):
        _write_run(root, run, samples[run], benches={"TruthfulQA", "Halueval"})
    sb = build_scoreboard(_report(root))
    assert {r.spec.benchmark for r in sb.rows} == {"TruthfulQA", "Halueval"}
    assert sb.missing == ["HaluevalLLM", "IFEval"]
    assert "Note: IFEval: no metrics files" in render_scoreboard(sb)
    assert plot_tradeoff(sb, tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()


def test_make_tables_writes_scoreboard_and_figure(results, tmp_path):
    root, _ = results
    out = tmp_path / "out"
    run_script("scripts/make_tables.py", "--results_dir", root, "--baseline", "base", "--n_boot", 200,
               "--output", out / "tables.md", "--tradeoff_plot", out / "fig" / "tradeoff.png")
    text = (out / "tables.md").read_text()
    assert text.index("## Scoreboard") < text.index("## Halueval")
    assert "(fig/tradeoff.png)" in text and (out / "fig" / "tradeoff.png").is_file()


# --------------------------------------------------------------------------------------------- published


def _published(tmp_path, values: dict) -> Path:
    """A study-style results folder: metrics files only ({(bench, run): {metric: value}})."""
    root = tmp_path / "published"
    for (bench, run), metrics in values.items():
        (root / bench).mkdir(parents=True, exist_ok=True)
        (root / bench / f"metrics_{run}.json").write_text(json.dumps(metrics))
    return root


def test_match_runs():
    ours = ["s_base", "s_dpop_best", "s_dpop_last", "dpop"]
    assert match_runs(["baseline", "dpop_best", "dpop_last", "other"], ours, "s_base") == {
        "baseline": "s_base", "dpop_best": "s_dpop_best", "dpop_last": "s_dpop_last"}
    assert match_runs(["baseline", "dpop"], ours, "s_base", {"dpop": "s_dpop_last"}) == {
        "baseline": "s_base", "dpop": "s_dpop_last"}


def test_published_values_inside_and_outside_the_reproduced_intervals(results, tmp_path):
    root, samples = results
    mc2_b, mc2_1 = samples["base"][("TruthfulQA", "mc2")], samples["a1"][("TruthfulQA", "mc2")]
    hr_b = samples["base"][("HaluevalLLM", "hallucination_rate")]
    se_hr = hr_b.std(ddof=1) / math.sqrt(N)
    pub = _published(tmp_path, {
        ("TruthfulQA", "baseline"): {"mc2": float(mc2_b.mean()), "mc1": 0.3},
        ("TruthfulQA", "dpop_best"): {"mc2": float(mc2_b.mean() + (mc2_1.mean() - mc2_b.mean()) + 0.5)},
        ("HaluevalLLM", "baseline"): {"hallucination_rate": float(hr_b.mean() + 10 * se_hr)},
    })
    report = _report(root)
    rows = compare_published(collect_results(pub), report, n_boot=N_BOOT, seed=0, given={"dpop_best": "a1"})
    got = {(r.benchmark, r.metric, r.published_run): r for r in rows}
    assert set(got) == {("TruthfulQA", "mc2", "baseline"), ("TruthfulQA", "mc2", "dpop_best"),
                        ("TruthfulQA", "mc1", "baseline"), ("HaluevalLLM", "hallucination_rate", "baseline")}
    same = got[("TruthfulQA", "mc2", "baseline")]
    assert same.run == "base" and same.difference == pytest.approx(0.0, abs=1e-12)
    lo, hi = same.value_ci
    se = mc2_b.std(ddof=1) / math.sqrt(N)
    assert lo < mc2_b.mean() < hi and 0.75 < (hi - lo) / (2 * 1.96 * se) < 1.25
    assert same.value_inside and not same.gap
    far = got[("HaluevalLLM", "hallucination_rate", "baseline")]
    assert far.value_inside is False and far.gap and far.difference == pytest.approx(-10 * se_hr)
    shifted = got[("TruthfulQA", "mc2", "dpop_best")]
    assert shifted.run == "a1" and shifted.value_inside is False
    assert shifted.published_change == pytest.approx(mc2_1.mean() - mc2_b.mean() + 0.5)
    assert shifted.change.abs_change == pytest.approx(mc2_1.mean() - mc2_b.mean())
    assert shifted.change_inside is False
    assert got[("TruthfulQA", "mc1", "baseline")].reproduced is None

    md = render_published(rows, readme="../README.md")
    far_line = next(ln for ln in md.splitlines() if ln.startswith("| Hallucination Rate | baseline → base"))
    assert "[E11](../README.md#diff-e11)" in far_line and "**no**" in far_line
    same_line = next(ln for ln in md.splitlines() if ln.startswith("| MC2 | baseline → base"))
    assert "yes" in same_line and "diff-" not in same_line
    assert "1 of 3 published values lie inside" in md


def test_make_tables_published_flag_links_the_readme(results, tmp_path):
    root, samples = results
    pub = _published(tmp_path, {("TruthfulQA", "baseline"): {"mc2": 0.99}, ("TruthfulQA", "dpop_best"): {"mc2": 0.98}})
    out = tmp_path / "deep" / "dir"
    run_script("scripts/make_tables.py", "--results_dir", root, "--baseline", "base", "--n_boot", 100,
               "--published", pub, "--published_runs", "dpop_best=a2", "--output", out / "t.md")
    text = (out / "t.md").read_text()
    rel = os.path.relpath(REPO / "README.md", out)
    assert "## Published vs reproduced" in text and "dpop_best → a2" in text
    assert f"[E22]({rel}#diff-e22), [E4]({rel}#diff-e4)" in text
