"""benchmarks/bench_eval.py runs and checks its batched paths against the one-at-a-time ones (no timings here)."""

import importlib.util

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
    assert res["mc_speedup"] > 0 and res["gen_speedup"] > 0
