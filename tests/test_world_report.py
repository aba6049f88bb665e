"""The open-book world's report against direct computations on its per-sample files: the rates, the intervals'
verdicts (an interval that contains 0 reads "no clear change"), the ablations, the chosen log-prob trend, the figure."""

import json

import numpy as np
import pytest

from aligner.core.io import DataError
from aligner.core.paths import result_file
from aligner.report.tables import change_verdict
from aligner.report.world import WorldReportConfig, make_world_report, per_sample

N = 200


def _write(folder, model, matches):
    folder.mkdir(parents=True, exist_ok=True)
    recs = [{"index": i, "generated": "g", "right_answer": "r", "match_right": r, "match_hallucinated": h,
             "is_hallucinated": h, "bleu": 0.5 if r else 0.1, "rouge_l": 0.9 if r else 0.4}
            for i, (r, h) in enumerate(matches)]
    result_file(folder, "detailed", f"world_{model}").write_text("".join(json.dumps(x) + "\n" for x in recs))


@pytest.fixture
def world_results(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "World"
    base = [(bool(u < 0.6), bool(0.6 <= u < 0.85)) for u in rng.random(N)]  # 60% right, 25% memory
    fixed = [(r or h, False) for r, h in base]                               # every memory answer made right
    same = list(base)                                                        # no change at all
    for model, matches in (("base", base), ("dpop", fixed), ("dpo", fixed), ("shuffled", same)):
        _write(root, model, matches)
        _write(root / "control", model, [(True, False)] * 20)
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"logps/chosen": v, "rewards/chosen": r}) + "\n"
                           for v, r in ((-1.1, 0.0), (-2.5, -0.4), (-3.0, -0.6))))
    return root, log, base


def test_rates_verdicts_ablations_and_figure(world_results, tmp_path):
    root, log, base = world_results
    cfg = WorldReportConfig(results_dir=str(root), output=str(tmp_path / "world.md"), plot=str(tmp_path / "w.png"),
                            train_log=[f"dpo={log}"], labels=["dpop=curriculum DPOP"], n_boot=500)
    text = make_world_report(cfg)
    values = per_sample(cfg)
    base_memory = sum(h for _, h in base) / N
    assert values["base"]["memory"].mean() == pytest.approx(base_memory)
    assert values["base"]["other"].mean() == pytest.approx(sum(not (r or h) for r, h in base) / N)
    assert values["dpop"]["right"].mean() == pytest.approx(sum(r or h for r, h in base) / N)
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert f"{100 * base_memory:.1f} [" in rows["base"]
    # every memory answer fixed: 0 memory answers, a change whose interval excludes 0, read as improved
    assert rows["curriculum DPOP"].split(" | ")[1].startswith("0.0 [0.0, 0.0]; -")
    assert "improved" in rows["curriculum DPOP"].split(" | ")[1]
    # no change at all: "unchanged", as in every other report, never "improved" or "regressed"
    assert rows["shuffled"].split(" | ")[1].endswith("0.0 [0.0, 0.0] unchanged")
    ablation = next(line for line in text.splitlines() if line.startswith("| curriculum DPOP − dpo"))
    assert ablation.count("unchanged") == 3  # the same answers
    # a change whose interval contains 0 reads "no clear change"
    assert change_verdict(0.01, "higher", (-0.02, 0.04)) == "no clear change"
    assert change_verdict(-0.01, "lower", (-0.03, -0.001), ("A better", "B better")) == "A better"
    assert "curriculum DPOP better" in next(line for line in text.splitlines()
                                            if line.startswith("| curriculum DPOP − shuffled"))
    assert "| dpo | -1.10 | -3.00 | -3.00 | -0.600 | -0.600 |" in text
    assert "-0.0" not in text
    assert (tmp_path / "w.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "![the open-book world](w.png)" in text


def test_a_run_without_the_ablation_models_says_so(world_results, tmp_path):
    root, _, _ = world_results
    cfg = WorldReportConfig(results_dir=str(root), models=["base", "dpop"], output=str(tmp_path / "world.md"),
                            n_boot=200)
    text = make_world_report(cfg)
    assert "No ablation: its models (dpo, shuffled) were not evaluated." in text
    assert "| comparison |" not in text


def test_a_train_log_without_chosen_log_probs_is_one_line(world_results, tmp_path):
    root, _, _ = world_results
    log = tmp_path / "sft_log.jsonl"
    log.write_text('{"loss": 1.0}\n')
    cfg = WorldReportConfig(results_dir=str(root), output=str(tmp_path / "w.md"), train_log=[f"dpop={log}"], n_boot=50)
    with pytest.raises(DataError, match="no training step logged logps/chosen"):
        make_world_report(cfg)
