"""``scripts/run_pipeline.py --dry_run`` (``make reproduce DRY_RUN=1``): every stage's command line and the
runner's own skip-or-run decision, with nothing run or written; checked against what a real run then does."""

import shlex
from pathlib import Path

import pytest
from conftest import REPO, run_script
from test_cli_help import _parser_of

from aligner.pipeline.driver import plan_stages
from aligner.pipeline.profiles import TRUTHFULQA_DOWNLOAD_DIR
from aligner.pipeline.runner import Pipeline, Stage


def _printed_stages(stdout: str) -> dict[str, tuple[str, list[str]]]:
    """{stage: (its decision line, its command)} from the dry run's output."""
    out, lines = {}, stdout.splitlines()
    for head, cmd in zip(lines, lines[1:]):
        if head.startswith("[") and cmd.startswith("    $ "):
            out[head[1:head.index("]")].strip()] = (head, shlex.split(cmd[6:]))
    return out


def _takes(script: str, flag: str) -> bool:
    return any(flag in a.option_strings for a in _parser_of(script)._actions)


def _flag_of(argv, flag):
    return argv[argv.index(flag) + 1]


@pytest.mark.parametrize("profile", ["study", "study_eval"])
def test_study_dry_run_shows_the_hub_data_and_study_compat_reaching_every_stage(tmp_path, profile):
    final = tmp_path / "final_data"
    final.mkdir()
    for name in ("easy", "medium", "hard", "hard_improved"):
        (final / f"dpo_pairs_{name}.jsonl").write_text('{"prompt": "q", "context": "c", "chosen": "a", "rejected": "b"}\n')
    out = tmp_path / "out"
    extra = ["--squad_csv", tmp_path / "train.csv"] if profile == "study" else []
    proc = run_script("scripts/run_pipeline.py", "--profile", profile, "--output_dir", out, "--final_data_dir", final,
                      "--models_dir", tmp_path / "models", "--dry_run", *extra, timeout=300)
    assert not out.exists(), "a dry run writes nothing"
    stages = _printed_stages(proc.stdout)
    qa = Path(_flag_of(stages["eval_halueval"][1], "--data_path"))
    fetch_splits = {"halueval_splits"} if not qa.with_name("dialogue_data.json").is_file() else set()
    expected = fetch_splits | {"truthfulqa_data", "eval_truthfulqa", "eval_halueval", "eval_halueval_step1",
                               "eval_halueval_step2", "eval_ifeval", "eval_halueval_detection", "tables"} | ({"make_data", "teacher_pairs", "train_best", "train_latest", "merge"}
                                           if profile == "study" else {"download_adapters"})
    assert set(stages) == expected
    # the hub's truthful_qa, downloaded by the first evaluation stage and read by the TruthfulQA stage
    head, download = stages["truthfulqa_data"]
    assert download[1] == "scripts/download_data.py" and "run: never ran here" in head
    assert download[download.index("--what") + 1] == "truthfulqa" and download[download.index("--source") + 1] == "hf"
    assert download[download.index("--truthfulqa_dir") + 1] == str(TRUTHFULQA_DOWNLOAD_DIR)
    _, tqa = stages["eval_truthfulqa"]
    assert tqa[tqa.index("--data_path") + 1] == str(TRUTHFULQA_DOWNLOAD_DIR / "hf")
    # the study's generation settings: TruthfulQA one question at a time on HF, HaluEval similarity at batch 8
    assert tqa[tqa.index("--backend") + 1] == "hf" and tqa[tqa.index("--gen_batch_size") + 1] == "1"
    _, sim = stages["eval_halueval"]
    assert sim[sim.index("--batch_size") + 1] == "8"
    # --study_compat on every stage whose script has it
    takes = [name for name, (_, cmd) in stages.items() if _takes(cmd[1], "--study_compat")]
    assert len(takes) >= (8 if profile == "study" else 4)
    for name in takes:
        assert "--study_compat" in stages[name][1], f"{name} runs without --study_compat"
    # without the models nothing can run: the plan says so, stage by stage
    assert "missing input: " in stages["eval_halueval"][0] and str(tmp_path / "models") in stages["eval_halueval"][0]
    assert stages["tables"][0].split("] ")[1].startswith("blocked: waits for ")


def _copy_stage(name, src, dst):
    code = f"import shutil; shutil.copy({str(src)!r}, {str(dst)!r})"
    return Stage(name, ["python", "-c", code], outputs=[dst], inputs=[src])


def test_the_plan_is_what_the_run_then_does(tmp_path):
    src, mid, dst, other = (tmp_path / n for n in ("a.txt", "b.txt", "c.txt", "d.txt"))
    src.write_text("one")
    stages = [_copy_stage("first", src, mid), _copy_stage("second", mid, dst),
              _copy_stage("third", tmp_path / "nowhere.txt", other), _copy_stage("fourth", other, tmp_path / "e.txt")]
    out = tmp_path / "run"

    def plan(force=False):
        return [(s.name, verb, why) for s, verb, why in plan_stages(Pipeline(out, force=force, dry_run=True), stages)]

    assert plan() == [("first", "run", "never ran here"), ("second", "run", f"{mid} is made by first first"),
                      ("third", "missing input", str(tmp_path / "nowhere.txt")),
                      ("fourth", "blocked", "waits for third")]
    assert not out.exists()
    assert [Pipeline(out).run(s) for s in stages[:2]] == ["done", "done"]
    assert [v for _, v, _ in plan()[:2]] == ["skip", "skip"]
    assert [Pipeline(out).run(s) for s in stages[:2]] == ["skipped", "skipped"]
    src.write_text("two")
    assert plan()[:2] == [("first", "run", "inputs changed"),
                          ("second", "run", f"first runs first and remakes {mid} (skipped if unchanged)")]
    assert [Pipeline(out).run(s) for s in stages[:2]] == ["done", "done"]
    assert [v for _, v, _ in plan(force=True)[:2]] == ["run", "run"]
    assert [v for _, v, _ in plan_stages(Pipeline(out, dry_run=True), stages[:2], ["second"])][0] == "not selected"
    dst.unlink()
    assert plan()[:2] == [("first", "skip", "complete, inputs unchanged"),
                          ("second", "run", "outputs changed or missing")]
    assert Pipeline(out).run(stages[1]) == "done"


def test_make_reproduce_has_a_dry_run():
    """What ``make`` would run (``make -n``): the driver with --dry_run only when DRY_RUN is set."""
    import subprocess

    for target, profile in (("reproduce", "study"), ("reproduce-eval", "study_eval")):
        def last_command(*extra, target=target):
            out = subprocess.run(["make", "--no-print-directory", "-n", target, *extra], cwd=REPO,
                                 capture_output=True, text=True, check=True)
            return [line for line in out.stdout.splitlines() if "scripts/run_pipeline.py" in line][-1]

        dry = last_command("DRY_RUN=1")
        assert "scripts/run_pipeline.py" in dry and f"--profile {profile}" in dry and dry.endswith("--dry_run")
        assert "--dry_run" not in last_command()


def test_study_eval_results_say_which_adapter_stands_for_which_published_column(tmp_path):
    """On the study's own metric files: the best columns name two different adapter folders."""
    from aligner.core.paths import seed_results_dir
    from aligner.pipeline.driver import write_results_md
    from aligner.pipeline.profiles import study_eval_profile

    if not seed_results_dir().is_dir():
        pytest.skip("the study's metric files are not in ../shared/data/seed_results")
    p = study_eval_profile(tmp_path / "out", tmp_path / "qa.json", None, tmp_path / "final_data", tmp_path / "m")
    p.published_dir = seed_results_dir()
    p.output_dir.mkdir(parents=True)
    text = write_results_md(p, Pipeline(p.output_dir, dry_run=True), tmp_path / "none.md").read_text()
    best = next(ln for ln in text.splitlines() if ln.startswith("| study_eval_dpop_best |"))
    assert "`dpop_old_strat` -> `adapters/dpop_best`" in best and '"Best Model"' in best
    assert "TruthfulQA: `first_improvement/training/final_lora/`" in best and "Halueval: `dpop_out/`" in best
    assert "HaluevalLLM: not named" in best
    last = next(ln for ln in text.splitlines() if ln.startswith("| study_eval_dpop_last |"))
    assert "`dpop_new_strat`" in last and last.count("`dpop_results/final_model/`") == 2
    assert "E24" in text
