"""TruthfulQA MC1/MC2 of ``eval_truthfulqa.py`` equal lm-evaluation-harness's own numbers on the same model and
questions, for both ``--prompt_style`` values.

The reference is lm-eval 0.4.13 itself, run programmatically: its installed ``truthfulqa_mc1`` /
``truthfulqa_mc2`` task files are included verbatim (their ``doc_to_text``, choices, metric and
``process_results_mc2``), only the data source is swapped for a local JSON-lines file written here; the study
style is a custom task with the 0-shot ``Q: {{question}}\\nA:`` prompt and the same scoring.  HF backend, CPU,
fp32, lm-eval's batch size 1 (its own log-likelihoods are then exact: batch 8 moves them by ~3e-5 through
padding).  Ours run through the script with its default batching and prefix sharing.
"""

import json
import os
import pathlib

import pytest
from conftest import load_script

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

lm_eval = pytest.importorskip("lm_eval")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_QUESTIONS = 20
STYLES = {"lm_eval": None, "study": 'doc_to_text: "Q: {{question}}\\nA:"\n'}  # style -> doc_to_text override


def _write_tasks(folder: pathlib.Path, data_file: pathlib.Path) -> dict[tuple[str, str], str]:
    """Task YAMLs including lm-eval's installed TruthfulQA tasks, on ``data_file``; {(style, mc): task name}."""
    import lm_eval.tasks

    builtin = pathlib.Path(lm_eval.tasks.__file__).parent / "truthfulqa"
    common = (f"dataset_path: json\ndataset_name: null\ndataset_kwargs:\n  data_files:\n    validation: {data_file}\n"
              f"  cache_dir: {folder / 'hf_cache'}\nvalidation_split: validation\ntag: []\n")
    names = {}
    for style, doc_to_text in STYLES.items():
        for mc in ("mc1", "mc2"):
            name = f"parity_{style}_{mc}"
            (folder / f"{name}.yaml").write_text(f"include: {builtin / f'truthfulqa_{mc}.yaml'}\ntask: {name}\n"
                                                 + common + (doc_to_text or ""))
            names[(style, mc)] = name
    return names


@pytest.fixture(scope="module")
def parity_data(tmp_path_factory, truthfulqa_csv):
    """The first 20 questions as HF-schema JSON lines (the file both sides read)."""
    from aligner.data.sources.truthfulqa import load_truthfulqa

    items = load_truthfulqa(truthfulqa_csv, N_QUESTIONS).mc
    path = tmp_path_factory.mktemp("tqa-parity") / "tqa20.jsonl"
    path.write_text("".join(json.dumps({"question": it.question,
                                        "mc1_targets": {"choices": it.mc1_choices, "labels": it.mc1_labels},
                                        "mc2_targets": {"choices": it.mc2_choices, "labels": it.mc2_labels}}) + "\n"
                            for it in items))
    return path


@pytest.fixture(scope="module")
def harness(tmp_path_factory, parity_data, tiny_model_dir):
    """lm-eval's results and per-sample records for the four tasks (one simple_evaluate call)."""
    from lm_eval.tasks import TaskManager

    folder = tmp_path_factory.mktemp("lm-eval-tasks")
    names = _write_tasks(folder, parity_data)
    out = lm_eval.simple_evaluate(
        model="hf", model_args={"pretrained": str(tiny_model_dir), "dtype": "float32"}, device="cpu",
        tasks=sorted(names.values()), task_manager=TaskManager(include_path=str(folder), include_defaults=False),
        num_fewshot=0, batch_size=1, log_samples=True, bootstrap_iters=0, random_seed=0, numpy_random_seed=0,
        torch_random_seed=0, fewshot_random_seed=0)
    return names, out


@pytest.fixture(scope="module", params=sorted(STYLES))
def ours(request, tmp_path_factory, parity_data, tiny_model_dir):
    """eval_truthfulqa.py --skip_generation with the style: (style, metrics, detailed MC records)."""
    style = request.param
    out = tmp_path_factory.mktemp(f"ours-{style}")
    script = load_script("evaluation/eval_truthfulqa.py")
    script.main(["--model_path", str(tiny_model_dir), "--data_path", str(parity_data), "--run_name", "r",
                 "--output_dir", str(out), "--skip_generation", "--prompt_style", style, "--dtype", "fp32",
                 "--device", "cpu", "--no_progress"])
    metrics = json.loads((out / "metrics_r.json").read_text())
    records = [json.loads(line) for line in (out / "detailed_mc_r.jsonl").read_text().splitlines()]
    return style, metrics, records


def test_mc1_mc2_equal_lm_eval(harness, ours):
    names, out = harness
    style, metrics, records = ours
    res = out["results"]
    assert res[names[(style, "mc1")]]["sample_len"] == N_QUESTIONS == metrics["n_mc_questions"]
    assert metrics["prompt_style"] == style
    assert abs(metrics["mc1"] - float(res[names[(style, "mc1")]]["acc,none"])) <= 1e-6
    assert abs(metrics["mc2"] - float(res[names[(style, "mc2")]]["acc,none"])) <= 1e-6


def test_contexts_and_choice_scores_equal_lm_eval(harness, ours):
    """The harness's own contexts are ours character for character (the 6-shot preamble included), and every
    choice's log-likelihood agrees to fp32 rounding (a token split elsewhere would move it by whole nats): the
    two compute the same sums with different kernels (lm-eval feeds the sequence without its last token and
    takes a full log-softmax; ours packs a question's choices behind one copy of it)."""
    from aligner.prompts import truthfulqa_choice, truthfulqa_mc_prompt

    names, out = harness
    style, _, records = ours
    worst = 0.0
    for mc in ("mc1", "mc2"):
        samples = sorted(out["samples"][names[(style, mc)]], key=lambda s: s["doc_id"])
        assert len(samples) == len(records)
        for s, rec in zip(samples, records):
            assert s["doc"]["question"] == rec["question"]
            contexts = {a[0] for a in s["arguments"]}
            assert contexts == {truthfulqa_mc_prompt(rec["question"], style)}
            assert [a[1] for a in s["arguments"]] == [truthfulqa_choice(c) for c in rec[f"{mc}_choices"]]
            theirs = [float(r[0]) for r in s["filtered_resps"]]
            worst = max(worst, *(abs(a - b) for a, b in zip(theirs, rec[f"{mc}_scores"])))
            if mc == "mc1":
                assert float(s["acc"]) == float(rec["mc1_hit"])
            else:  # fp32 rounding of the scores (~1e-5 nats) moves one question's mass by ~1e-6
                assert float(s["acc"]) == pytest.approx(rec["mc2_mass"], abs=1e-5)
    assert worst < 2e-4, f"largest per-choice log-likelihood difference {worst:.2e}"
