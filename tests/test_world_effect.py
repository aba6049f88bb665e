"""The open-book world end to end on a smaller world (30 people, 800 warm-start steps, curriculum DPOP only, about
two minutes on two cores): the real stage scripts, as the demo runs them, give a base that answers from memory a
measurable part of the time, and curriculum DPOP lowers that rate with a paired interval that excludes 0.  The same
direction as the demo's full world (README: the demo's own table), with a fixed seed and fixed threads."""

import json

import numpy as np
import pytest

from aligner.core.determinism import reproducible_env
from aligner.core.io import read_jsonl
from aligner.core.paths import result_file
from aligner.pipeline.runner import Pipeline
from aligner.pipeline.world import RUN_NAME, WorldLayout, WorldSettings, world_stages

SMALL_WORLD = WorldSettings(n_people=30, n_sft=5000, warm_steps=800, n_pair_items=300, n_heldout=(150, 20, 20),
                            adapters=("dpop",))


def _paired_interval(base: np.ndarray, run: np.ndarray, n_boot: int = 4000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(base), size=(n_boot, len(base)))
    diffs = run[idx].mean(axis=1) - base[idx].mean(axis=1)
    low, high = np.percentile(diffs, [2.5, 97.5])
    return float(low), float(high)


@pytest.mark.slow
def test_curriculum_dpop_lowers_memory_answers_on_a_small_world(tmp_path):
    pipe = Pipeline(tmp_path, env=reproducible_env(2), log=lambda *_: None)
    for stage in world_stages(SMALL_WORLD, tmp_path):
        assert pipe.run(stage) == "done", stage.name  # a failed stage raises with its log tail

    results = WorldLayout(tmp_path).results
    recs = {m: sorted(read_jsonl(result_file(results, "detailed", f"{RUN_NAME}_{m}")), key=lambda r: r["index"])
            for m in ("base", "dpop")}
    assert [r["index"] for r in recs["base"]] == [r["index"] for r in recs["dpop"]] and len(recs["base"]) == 150
    memory = {m: np.array([float(r["match_hallucinated"]) for r in rs]) for m, rs in recs.items()}
    right = {m: np.array([float(r["match_right"]) for r in rs]) for m, rs in recs.items()}
    assert not np.any((memory["base"] > 0) & (right["base"] > 0))  # one item is never both

    # the metrics files carry the rates the records give
    for m in recs:
        metrics = json.loads(result_file(results, "metrics", f"{RUN_NAME}_{m}").read_text())
        assert metrics["match_hallucinated_rate"] == pytest.approx(memory[m].mean(), abs=1e-12)
        assert metrics["match_right_rate"] == pytest.approx(right[m].mean(), abs=1e-12)
        assert metrics["avg_bleu"] > 0.3 and metrics["avg_rouge_l"] > 0.5

    assert memory["base"].mean() > 0.10                    # the base hallucinates a measurable part of the time
    assert right["base"].mean() > 0.30                     # ... and answers from the context more often
    low, high = _paired_interval(memory["base"], memory["dpop"])
    assert memory["dpop"].mean() < memory["base"].mean() and high < 0, (memory["base"].mean(),
                                                                         memory["dpop"].mean(), low, high)
    assert right["dpop"].mean() >= right["base"].mean()

    report = (tmp_path / "world.md").read_text()
    assert f"{100 * memory['base'].mean():.1f} [" in report and "improved" in report


def test_world_settings_train_only_known_adapters():
    assert [m for m, _, _ in SMALL_WORLD.models()] == ["dpop"]
    assert [m for m, _, _ in WorldSettings().models()] == ["dpop", "dpo", "shuffled"]
    with pytest.raises(ValueError, match="unknown \\['dpop2'\\]"):
        WorldSettings(adapters=("dpop2",))
    stages = [s.name for s in world_stages(SMALL_WORLD, WorldLayout(".").root)]
    assert [s for s in stages if s.startswith("world_train_")] == ["world_train_dpop"]
