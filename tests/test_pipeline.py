"""The pipeline driver: skip/force logic on real subprocess stages, and every stage command of both
profiles is accepted by the argparse block of the script it names (so flags cannot drift)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from aligner.pipeline.driver import summary_sections, write_results_md
from aligner.pipeline.profiles import build_stages, demo_profile, study_eval_profile, study_profile
from aligner.pipeline.runner import Pipeline, Stage

REPO = Path(__file__).resolve().parents[1]


def _stage(tmp_path, name, src, dst):
    code = f"import shutil; shutil.copy({str(src)!r}, {str(dst)!r})"
    return Stage(name, ["python", "-c", code], outputs=[dst], inputs=[src])


def test_skip_when_complete_rerun_when_input_changes_force_redoes(tmp_path):
    src, mid, dst = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    src.write_text("one")
    stages = [_stage(tmp_path, "first", src, mid), _stage(tmp_path, "second", mid, dst)]
    out = tmp_path / "run"
    assert [Pipeline(out).run(s) for s in stages] == ["done", "done"]
    assert [Pipeline(out).run(s) for s in stages] == ["skipped", "skipped"]
    src.write_text("two")
    assert [Pipeline(out).run(s) for s in stages] == ["done", "done"]
    assert dst.read_text() == "two"
    assert [Pipeline(out, force=True).run(s) for s in stages] == ["done", "done"]
    dst.unlink()  # an output that went missing makes its stage run again
    assert [Pipeline(out).run(s) for s in stages] == ["skipped", "done"]
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["stages"]["second"]
    assert entry["status"] == "done" and entry["command"][0] == sys.executable
    assert set(entry["inputs"]) == {str(mid)} and len(entry["outputs"][str(dst)]) == 64
    assert manifest["versions"]["torch"] and "commit" in manifest["git"]


def test_new_weights_in_an_input_folder_rerun_the_stage(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"weights-1")
    (adapter / "run_config.json").write_text('{"start_time": "1"}')
    dst = tmp_path / "metrics.json"
    code = f"open({str(dst)!r}, 'w').write(open({str(adapter / 'adapter_model.safetensors')!r}, 'rb').read().decode())"
    stage = Stage("eval", ["python", "-c", code], outputs=[dst], inputs=[adapter])
    out = tmp_path / "run"
    assert Pipeline(out).run(stage) == "done"
    (adapter / "run_config.json").write_text('{"start_time": "2"}')  # run records alone change nothing
    assert Pipeline(out).run(stage) == "skipped"
    (adapter / "adapter_model.safetensors").write_bytes(b"weights-2")
    assert Pipeline(out).run(stage) == "done"
    assert dst.read_text() == "weights-2"


def test_failed_stage_is_recorded_and_reported(tmp_path):
    stage = Stage("bad", ["python", "-c", "import sys; print('boom'); sys.exit(3)"], outputs=[tmp_path / "x"])
    pipe = Pipeline(tmp_path / "run")
    with pytest.raises(RuntimeError, match="stage bad failed \\(exit 3\\)"):
        pipe.run(stage)
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]["bad"]["status"] == "failed"


def _parse_args_of(script: Path):
    spec = importlib.util.spec_from_file_location("stage_" + script.stem, script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.parse_args


@pytest.mark.parametrize("profile", ["demo", "study"])
def test_every_stage_command_parses(tmp_path, profile):
    if profile == "demo":
        p = demo_profile(tmp_path / "out", tmp_path / "qa.json", tmp_path / "tqa.csv", tmp_path / "final_data")
    else:
        p = study_profile(tmp_path / "out", tmp_path / "qa.json", tmp_path / "tqa.csv", tmp_path / "final_data",
                          tmp_path / "models", squad_csv=tmp_path / "train.csv")
    stages = build_stages(p)
    names = [s.name for s in stages]
    for must in ("make_data", "train_best", "train_latest", "merge", "eval_truthfulqa", "eval_halueval",
                 "eval_halueval_step1", "eval_halueval_step2", "tables"):
        assert must in names
    for stage in stages:
        assert stage.cmd[0] == "python"
        script = REPO / stage.cmd[1]
        assert script.is_file(), f"{stage.name}: {script} does not exist"
        _parse_args_of(script)([str(a) for a in stage.cmd[2:]])


def test_study_profile_trains_on_downloaded_pairs(tmp_path):
    final = tmp_path / "final_data"
    final.mkdir()
    p = study_profile(tmp_path / "out", tmp_path / "qa.json", tmp_path / "tqa.csv", final, tmp_path / "models")
    with pytest.raises(ValueError, match="no training data"):
        build_stages(p)
    for name in ("dpo_pairs_easy.jsonl", "dpo_pairs_medium.jsonl", "dpo_pairs_hard.jsonl"):
        (final / name).write_text('{"prompt": "q", "context": "c", "chosen": "a", "rejected": "b"}\n')
    with pytest.raises(ValueError, match="dpo_pairs_hard_improved"):
        build_stages(p)
    (final / "dpo_pairs_hard_improved.jsonl").write_text('{"prompt": "q", "context": "c", "chosen": "a", "rejected": "b"}\n')
    stages = {s.name: s for s in build_stages(p)}
    assert "make_data" not in stages and "teacher_pairs" not in stages
    best = [str(a) for a in stages["train_best"].cmd]
    # the study's script ignores --epochs and runs all four curriculum stages: no --epochs, the study's behaviour
    assert "--epochs" not in best and "--study_compat" in best and "--overwrite_output_dir" in best
    assert str(final / "dpo_pairs_easy.jsonl") in best[best.index("--data_files") + 1]
    latest = [str(a) for a in stages["train_latest"].cmd]
    assert latest[latest.index("--hard_file") + 1] == str(final / "dpo_pairs_hard_improved.jsonl")
    for stage in stages.values():
        _parse_args_of(REPO / stage.cmd[1])([str(a) for a in stage.cmd[2:]])
    # the demo uses downloaded pairs instead of building its own when they are there
    demo = {s.name for s in build_stages(demo_profile(tmp_path / "d", tmp_path / "qa.json", tmp_path / "t.csv", final))}
    assert not {"sft_rows", "make_data", "teacher_pairs"} & demo


def test_demo_evaluating_every_row_leaves_no_training_rows():
    import subprocess

    proc = subprocess.run([sys.executable, str(REPO / "scripts/halueval_to_squad.py"), "--output_file", "/dev/null",
                           "--start", "1000", "--n", "5", "--eval_rows", str(1 << 40)], capture_output=True, text=True)
    assert proc.returncode != 0 and "overlaps the evaluation rows" in proc.stderr


def test_summary_sections_keep_only_summaries():
    md = "## A\n\n### Summary\n\n| x |\n\n### r vs b\n\n| y |\n## B\n### Summary\n| z |\n"
    assert summary_sections(md) == "## A\n\n| x |\n\n## B\n| z |\n"


def _args(stage) -> list[str]:
    return [str(a) for a in stage.cmd]


def _flag(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_demo_warm_start_feeds_every_later_stage(tmp_path):
    p = demo_profile(tmp_path / "out", tmp_path / "qa.json", tmp_path / "tqa.csv", tmp_path / "final_data")
    stages = build_stages(p)
    names = [s.name for s in stages]
    assert names.index("tiny_policy") < names.index("warm_rows") < names.index("warm_sft_set") \
        < names.index("warm_sft") < names.index("make_data") < names.index("train_best")
    by = {s.name: s for s in stages}
    random_policy, warm = p.output_dir / "models" / "tiny-policy", p.output_dir / "models" / "tiny-policy-warm"
    sft = _args(by["warm_sft"])
    assert _flag(sft, "--model_path") == str(random_policy) and _flag(sft, "--output_dir") == str(warm)
    assert "--full_finetune" in sft
    rows = _args(by["warm_rows"])
    start = int(_flag(rows, "--start"))
    assert start >= p.eval_limit and start >= p.sft_start + p.sft_rows  # disjoint from evaluation and pair rows
    for name in ("make_data", "teacher_pairs", "train_best", "train_latest", "eval_truthfulqa", "eval_halueval",
                 "eval_halueval_step1", "eval_ifeval"):
        assert _flag(_args(by[name]), "--model_path") == str(warm), name
    assert _flag(_args(by["merge"]), "--base_model_path") == str(warm)
    ifeval = _args(by["eval_ifeval"])
    assert _flag(ifeval, "--limit") == str(p.ifeval_limit) and _flag(ifeval, "--data_path") == str(p.ifeval_path)
    tables = _args(by["tables"])
    assert _flag(tables, "--tradeoff_plot") == str(p.output_dir / "tradeoff.png") and "--published" not in tables


def by_name(stages, name):
    return next(s for s in stages if s.name == name)


def test_study_eval_profile_evaluates_the_published_adapters(tmp_path):
    seed = tmp_path / "seed"
    seed.mkdir()
    p = study_eval_profile(tmp_path / "out", tmp_path / "qa.json", tmp_path / "tqa.csv", tmp_path / "final_data",
                           tmp_path / "models")
    p.published_dir = seed
    stages = build_stages(p)
    assert [s.name for s in stages] == ["download_adapters", "halueval_splits", "eval_truthfulqa", "eval_halueval",
                                        "eval_halueval_step1", "eval_halueval_step2", "eval_ifeval",
                                        "eval_halueval_detection", "tables"]
    splits = _args(by_name(stages, "halueval_splits"))
    assert _flag(splits, "--halueval_splits") == "dialogue,summarization"
    assert _flag(splits, "--halueval_path") == str(tmp_path / "qa.json")
    detection = _args(by_name(stages, "eval_halueval_detection"))
    assert _flag(detection, "--scoring") == "generate" and _flag(detection, "--limit") == "-1"
    assert _flag(detection, "--data_dir") == str(tmp_path)
    by = {s.name: s for s in stages}
    adapters = p.output_dir / "adapters"
    assert _flag(_args(by["download_adapters"]), "--output_dir") == str(adapters)
    tqa = _args(by["eval_truthfulqa"])
    assert tqa[tqa.index("--lora_path") + 1: tqa.index("--lora_path") + 4] == [
        "none", str(adapters / "dpop_best"), str(adapters / "dpop_last")]
    assert _flag(tqa, "--model_path") == str(tmp_path / "models" / "llama3-2-3b-instruct")
    tables = _args(by["tables"])
    assert _flag(tables, "--published") == str(seed) and "--train_log" not in tables
    assert _flag(tables, "--baseline") == "study_eval_base"
    for stage in stages:
        _parse_args_of(REPO / stage.cmd[1])([str(a) for a in stage.cmd[2:]])


def _fake_hub(monkeypatch, layout: dict[str, str]):
    """snapshot_download writing ``layout`` ({relative path: text}) into local_dir; the hub marked reachable."""
    import huggingface_hub

    import aligner.core.hub as hub

    def fake(repo_id, repo_type=None, revision=None, allow_patterns=None, ignore_patterns=None, local_dir=None,
             token=None, force_download=False, local_files_only=False):
        assert repo_id == "mrhello291/llama3-3.2-instuct-dpop"
        assert sorted(allow_patterns) == ["dpop_new_strat/*", "dpop_old_strat/*"]
        for rel, text in layout.items():
            (Path(local_dir) / rel).parent.mkdir(parents=True, exist_ok=True)
            (Path(local_dir) / rel).write_text(text)
        return local_dir

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    monkeypatch.setattr(hub, "offline", lambda: False)


def test_download_study_adapters_flat_named_folders(tmp_path, monkeypatch):
    from aligner.core.downloads import DownloadStudyAdaptersConfig, download_study_adapters

    _fake_hub(monkeypatch, {"dpop_old_strat/adapter_config.json": "best", "dpop_old_strat/adapter_model.safetensors": "w1",
                            "dpop_new_strat/final/adapter_config.json": "last",
                            "dpop_new_strat/final/adapter_model.safetensors": "w2"})
    got = download_study_adapters(DownloadStudyAdaptersConfig(output_dir=str(tmp_path / "a")))
    assert got == {"dpop_best": tmp_path / "a" / "dpop_best", "dpop_last": tmp_path / "a" / "dpop_last"}
    assert (got["dpop_best"] / "adapter_config.json").read_text() == "best"
    assert (got["dpop_last"] / "adapter_model.safetensors").read_text() == "w2"
    assert json.loads((got["dpop_last"] / "source.json").read_text())["subfolder"] == "dpop_new_strat/final"


def test_download_study_adapters_refuses_an_ambiguous_folder(tmp_path, monkeypatch):
    from aligner.core.downloads import DownloadStudyAdaptersConfig, download_study_adapters
    from aligner.core.hub import DownloadError

    _fake_hub(monkeypatch, {"dpop_old_strat/a/adapter_config.json": "x", "dpop_old_strat/b/adapter_config.json": "y",
                            "dpop_new_strat/adapter_config.json": "z"})
    with pytest.raises(DownloadError, match="expected one adapter"):
        download_study_adapters(DownloadStudyAdaptersConfig(output_dir=str(tmp_path / "a")))


def test_results_md_describes_the_policy_that_was_built(tmp_path, tiny_model_dir):
    """RESULTS.md's demo intro gives the parameter count and vocabulary of the tiny policy in the output folder:
    the demo's 8192-token build is the ~1.6M-parameter, 8k one; another build there changes the text."""
    import shutil

    from transformers import AutoModelForCausalLM

    from aligner.testing.tiny import TinyModelConfig, build_tiny_model

    p = demo_profile(tmp_path / "out", tmp_path / "qa.json", tmp_path / "tqa.csv", tmp_path / "final_data")
    folder = p.output_dir / "models" / "tiny-policy"
    build_tiny_model(folder, TinyModelConfig(kind="causal", seed=0, vocab_size=p.policy_vocab_size))
    tail = (", a tiny causal truth judge and a tiny sequence-classification faithfulness judge). The judges stay "
            "random, so judged truthfulness and HHEM faithfulness measure nothing here;")

    def intro():
        text = write_results_md(p, Pipeline(p.output_dir), tmp_path / "no-tables.md").read_text()
        assert text.startswith("# Results: demo profile\n\n## The method at work: an open-book world")
        plumbing = text.split("## The plumbing check: every stage on real benchmarks, at toy scale\n\n", 1)[1]
        return plumbing.splitlines()[0]

    def counts():
        model = AutoModelForCausalLM.from_pretrained(folder)
        return sum(t.numel() for t in model.parameters()), model.get_input_embeddings().weight.shape[0]

    n, vocab = counts()
    assert vocab == 8192 and round(n / 1e6, 1) == 1.6
    assert intro().startswith("Tiny models built by `scripts/make_tiny_model.py` (a ~1.6M-parameter Llama policy "
                              "with an 8k BPE vocabulary" + tail)

    shutil.rmtree(folder)
    shutil.copytree(tiny_model_dir, folder)  # make_tiny_model's defaults: a 2048-token vocabulary
    n, vocab = counts()
    assert vocab == 2048 and 1e5 < n < 1e6
    assert f"(a ~{n / 1e3:.0f}k-parameter Llama policy with a 2k BPE vocabulary{tail}" in intro()


# --- a stage's progress on the console; Ctrl-C during a stage; a reproducible rerun (newcomer's first hour) ------------

def test_a_running_stage_shows_how_far_it_got(tmp_path):
    """Without echo the stage's output goes to its log; every heartbeat says how long it ran and the last thing the
    log holds (a tqdm bar's latest state).  The stage waits until a heartbeat has shown its progress."""
    go = tmp_path / "go"
    code = ("import sys, time, pathlib\n"
            "sys.stderr.write('\\rtraining:  33%|###   | 1/3 [00:01<00:02]'); sys.stderr.flush()\n"
            f"deadline = time.time() + 120\nwhile not pathlib.Path({str(go)!r}).exists() and time.time() < deadline:\n"
            "    time.sleep(0.05)\n"
            "sys.stderr.write('\\rtraining: 100%|######| 3/3 [00:03<00:00]\\n')\n")
    lines = []

    def log(line):
        lines.append(line)
        if "1/3" in line:
            go.touch()

    out = tmp_path / "run"
    done = tmp_path / "done.txt"
    stage = Stage("slow", ["python", "-c", code + f"open({str(done)!r}, 'w').write('ok')\n"], outputs=[done])
    assert Pipeline(out, log=log, heartbeat=0.2).run(stage) == "done"
    assert lines[0] == f"[slow                    ] running; log {out / 'logs' / 'slow.log'}"
    progress = [ln for ln in lines if "1/3" in ln]
    assert progress and progress[0].startswith("[slow                    ] 0m") and progress[0].endswith(
        ": training: 33%|### | 1/3 [00:01<00:02]")
    assert lines[-1].startswith("[slow                    ] done in")


def test_last_progress_reads_the_latest_tqdm_state(tmp_path):
    from aligner.pipeline.runner import last_progress

    log = tmp_path / "s.log"
    log.write_text("$ python x.py\n12:00 INFO loading\n\r  0%|  | 0/94\r 10%|#  | 9/94 [00:30<04:40]\r 11%|#  | 10/94")
    assert last_progress(log) == "11%|# | 10/94"
    log.write_text("$ python x.py\n12:00 INFO stage 2: AdamW state reset\n")
    assert last_progress(log) == "12:00 INFO stage 2: AdamW state reset"
    assert last_progress(tmp_path / "absent.log") == "(no log yet)"


def test_ctrl_c_during_a_stage_marks_it_and_says_what_is_kept(tmp_path):
    from aligner.core import cli

    out = tmp_path / "run"
    first = _stage(tmp_path, "first", tmp_path / "a.txt", tmp_path / "b.txt")
    (tmp_path / "a.txt").write_text("one")
    slow = Stage("slow", ["python", "-c", "import time; time.sleep(120)"], outputs=[tmp_path / "never"])

    def interrupt(line):
        if "slow" in line and "running" not in line:
            raise KeyboardInterrupt

    pipe = Pipeline(out, log=interrupt, heartbeat=0.2)
    assert pipe.run(first) == "done"
    with pytest.raises(KeyboardInterrupt):
        pipe.run(slow)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["slow"]["status"] == "interrupted" and manifest["stages"]["first"]["status"] == "done"
    assert cli._SESSION.saved == (f"1 completed stage(s) kept in {out} (manifest {out / 'manifest.json'}); stage slow "
                                  f"was running (log {out / 'logs' / 'slow.log'}) and is redone")
    assert Pipeline(out).run(first) == "skipped"


@pytest.mark.slow
def test_a_training_stage_rerun_gives_the_same_bytes(tmp_path, tiny_model_dir, halueval_file):
    """The demo's stage environment (fixed threads, deterministic kernels, hash seed): a training stage run twice
    writes the same adapter, checkpoint and log bytes."""
    from aligner.core.determinism import reproducible_env
    from aligner.pipeline.driver import DEMO_THREADS

    rows = [json.loads(line) for line, _ in zip(open(halueval_file, encoding="utf-8"), range(24))]
    pairs = tmp_path / "dpo_pairs_easy.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": r["question"], "context": r["knowledge"], "chosen": r["right_answer"],
                                         "rejected": r["hallucinated_answer"]}) + "\n" for r in rows))
    adapter = tmp_path / "adapter"
    cmd = ["python", "first_improvement/training/train_dpop.py", "--model_path", tiny_model_dir, "--data_files", pairs,
           "--output_dir", adapter, "--epochs", "1", "--max_length", "96", "--lr", "5e-3", "--warmup_steps", "0",
           "--per_device_batch_size", "4", "--grad_accum_steps", "1", "--logging_steps", "1", "--no_progress",
           "--overwrite_output_dir"]
    stage = Stage("train", cmd, outputs=[adapter / "adapter_model.safetensors"], inputs=[pairs])
    digests = []
    for _ in range(2):
        pipe = Pipeline(tmp_path / "run", force=True, env=reproducible_env(DEMO_THREADS), log=lambda line: None)
        assert pipe.run(stage) == "done"
        files = sorted(p for p in adapter.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".jsonl"))
        digests.append({str(p.relative_to(adapter)): p.read_bytes() for p in files})
    assert any(name.endswith("adapter_model.safetensors") for name in digests[0])
    def numbers(log: bytes) -> list[dict]:  # the log's values but its clock readings (throughput, times)
        return [{k: v for k, v in json.loads(line).items() if not any(t in k for t in ("time", "second", "_per_s"))}
                for line in log.decode().splitlines()]

    first, rerun = numbers(digests[0].pop("train_log.jsonl")), numbers(digests[1].pop("train_log.jsonl"))
    assert first == rerun and len(first) >= 5 and first[-1]["loss"] != first[0]["loss"]
    assert digests[0] == digests[1]


def test_reproducible_env_reaches_torch(tmp_path):
    """What a stage started in that environment runs with (run_cli applies it before the script's main)."""
    from aligner.core.determinism import reproducible_env

    out = tmp_path / "o.txt"
    code = ("import torch; from pathlib import Path; from aligner.core.cli import run_cli\n"
            "def main():\n"
            f"    Path({str(out)!r}).write_text(f'{{torch.get_num_threads()}} {{torch.are_deterministic_algorithms_enabled()}}')\n"
            "run_cli(main)\n")
    stage = Stage("probe", ["python", "-c", code], outputs=[out])
    Pipeline(tmp_path / "run", env=reproducible_env(3), log=lambda line: None).run(stage)
    assert out.read_text() == "3 False"  # fixed threads; torch's deterministic kernels only when asked (CUDA)
    Pipeline(tmp_path / "run2", env=reproducible_env(3, deterministic_kernels=True), log=lambda line: None).run(stage)
    assert out.read_text() == "3 True"
    log = (tmp_path / "run" / "logs" / "probe.log").read_text()
    assert "Traceback" not in log


def test_the_world_section_comes_first_in_the_demo_and_alone_in_its_profile(tmp_path):
    """The demo runs the open-book world before the plumbing check; --profile world runs it alone; the plumbing
    tables leave the world's folder to its own report; --world_pair_types reaches the pair stage."""
    from aligner.pipeline.driver import PipelineConfig, profile_from_config
    from aligner.pipeline.world import WORLD_MODELS

    demo = build_stages(demo_profile(tmp_path / "out", tmp_path / "qa.json", tmp_path / "tqa.csv", tmp_path / "fd"))
    names = [s.name for s in demo]
    world = [n for n in names if n.startswith("world_")]
    assert names[:len(world)] == world and len(world) == 15 and "tiny_policy" in names[len(world):]
    assert [n for n in world if n.startswith("world_train_")] == [f"world_train_{m}" for m, _, _ in WORLD_MODELS]
    by = {s.name: s for s in demo}
    assert _flag(_args(by["world_pairs"]), "--pair_types") == "ideal"
    assert _flag(_args(by["world_train_dpo"]), "--lam") == "0.0"
    assert _flag(_args(by["world_train_shuffled"]), "--curriculum_order") == "shuffled"
    assert "--curriculum_order" not in _args(by["world_train_dpop"])
    assert _flag(_args(by["tables"]), "--exclude") == "World"
    conflicts = _args(by["world_eval_conflicts"])
    assert _flag(conflicts, "--generation_config") == "greedy"
    assert conflicts[conflicts.index("--lora_path") + 1] == "none"
    alone = profile_from_config(PipelineConfig(profile="world", output_dir=str(tmp_path / "w"),
                                               world_pair_types="all"))
    stages = build_stages(alone)
    assert [s.name for s in stages] == world
    assert _flag(_args(next(s for s in stages if s.name == "world_pairs")), "--pair_types") == "all"


def test_the_world_profile_needs_no_benchmark_and_its_results_say_what_ran(tmp_path):
    """--profile world starts without HaluEval; its RESULTS.md has no plumbing section, and the world's intro is
    written from the settings (pair types, adapters trained, the world's shape), not fixed text."""
    from aligner.data.sources.world import WorldConfig
    from aligner.pipeline.driver import PipelineConfig, profile_from_config

    alone = profile_from_config(PipelineConfig(profile="world", output_dir=str(tmp_path / "w"),
                                               halueval_path=str(tmp_path / "absent.json"), world_pair_types="all"))
    text = write_results_md(alone, Pipeline(alone.output_dir), tmp_path / "none.md").read_text()
    assert "plumbing check" not in text and "every pair type, the study's rules" in text
    assert "beside the ablations: plain DPO (λ 0) and DPOP, one shuffled stage." in text
    shape = WorldConfig()
    assert f"{len(shape.attributes)} attributes ({', '.join(shape.attributes)})" in text
    assert f"Contexts state {shape.min_facts}-{shape.max_facts} facts" in text
    alone.world.adapters = ("dpop",)
    alone.world.pair_types = "ideal"
    text = write_results_md(alone, Pipeline(alone.output_dir), tmp_path / "none.md").read_text()
    assert "ideal-answer pairs). Held-out" in text and "ablation" not in text.split("## Stage times")[0]


def test_the_demo_intro_states_the_warm_start_epochs_from_the_profile(tmp_path):
    p = demo_profile(tmp_path / "out", tmp_path / "qa.json", tmp_path / "tqa.csv", tmp_path / "final_data")
    for epochs, words in ((1.0, "`, 1 epoch)"), (2.0, "`, 2 epochs)"), (0.5, "`, 0.5 epochs)")):
        p.warm_start["epochs"] = epochs
        assert words in write_results_md(p, Pipeline(p.output_dir), tmp_path / "none.md").read_text()
