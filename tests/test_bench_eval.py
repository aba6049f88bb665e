"""benchmarks/bench_eval.py runs and checks its batched paths against the one-at-a-time ones (no timings here)."""

import importlib.util
import math

import pytest
from conftest import REPO


def test_bench_eval_agrees_with_one_at_a_time(tiny_model_dir, truthfulqa_csv, tmp_path, one_torch_thread, capsys):
    spec = importlib.util.spec_from_file_location("bench_eval", REPO / "benchmarks" / "bench_eval.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    res = bench.main(["--model_path", str(tiny_model_dir), "--data_path", str(truthfulqa_csv), "--n_questions", "4",
                      "--mc_batch", "16", "--gen_batch_size", "4", "--max_new_tokens", "4", "--repeats", "1",
                      "--output_json", str(out)])
    printed = capsys.readouterr().out
    assert "speed-up" in printed and "generation batched" in printed
    assert res["n_questions"] == 4 and out.is_file()
    assert res["mc_same_mc1"] and res["mc_max_abs_diff_mc2_mass"] < 1e-5
    assert res["gen_identical_answers"] == res["gen_answers"] == 4
    mc_s, gen_s = res["mc_seconds"], res["gen_seconds"]
    assert all(math.isfinite(t) and t > 0 for t in [*mc_s.values(), *gen_s.values()])
    assert math.isfinite(res["mc_speedup"]) and math.isfinite(res["gen_speedup"])
    assert res["mc_speedup"] == pytest.approx(mc_s["one_at_a_time"] / mc_s["batched_shared_prefix"], rel=1e-12)
    assert res["gen_speedup"] == pytest.approx(gen_s["one_at_a_time"] / gen_s["batched"], rel=1e-12)
    assert f"ratios: MC {res['mc_speedup']:.2f}x (target >= 1.5x), generation {res['gen_speedup']:.2f}x" in printed


def test_bench_eval_vs_lm_eval(tiny_model_dir, truthfulqa_csv, one_torch_thread, capsys):
    """--vs lm_eval: lm-evaluation-harness's HF backend on the same model object and questions gives the same
    MC1/MC2 (its batch of 16 pads, so per-choice scores agree to fp32 rounding); the ratio is printed."""
    pytest.importorskip("lm_eval")
    spec = importlib.util.spec_from_file_location("bench_eval", REPO / "benchmarks" / "bench_eval.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    res = bench.main(["--model_path", str(tiny_model_dir), "--data_path", str(truthfulqa_csv), "--n_questions", "3",
                      "--mc_batch", "16", "--repeats", "1", "--skip_generation", "--prompt_style", "lm_eval",
                      "--vs", "lm_eval"])
    printed = capsys.readouterr().out
    assert "vs lm-evaluation-harness" in printed and "ratio" in printed
    vs = res["vs_lm_eval"]
    assert res["prompt_style"] == vs["prompt_style"] == "lm_eval" and vs["lm_eval_batch_size"] == 16
    assert vs["abs_diff_mc1"] == 0 and vs["abs_diff_mc2"] < 1e-6 and vs["max_abs_diff_choice_ll"] < 2e-4
    assert vs["mc2"]["ours"] == pytest.approx(res["mc2"], abs=1e-12)
    secs, qps = vs["seconds"], vs["questions_per_s"]
    assert all(math.isfinite(t) and t > 0 for t in secs.values())
    assert math.isfinite(vs["speedup"]) and vs["speedup"] == pytest.approx(secs["lm_eval"] / secs["ours"], rel=1e-12)
    assert qps == pytest.approx({"ours": 3 / secs["ours"], "lm_eval": 3 / secs["lm_eval"]}, rel=1e-12)
    assert f"ratio {vs['speedup']:.2f}x" in printed
