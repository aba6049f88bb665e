"""--layout, --loss and --max_tokens_per_batch on the three training scripts and through the pipeline profiles; the
study's flag spellings; the defaults (packed, dpop); bad values are one-line errors naming the flag."""

from pathlib import Path

import pytest
from conftest import REPO, load_script

from aligner.core.cli import run_cli
from aligner.pipeline.profiles import build_stages, study_profile
from aligner.train.config import DPOPTrainingConfig, PreferenceTrainingConfig

SCRIPTS = ("first_improvement/training/train_dpop.py", "first_improvement/training/train_dpop_improved.py",
           "further_improvement/training/train_dpop.py")


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_training_script_takes_layout_loss_and_max_tokens(script):
    data = ["--data_dir", "d"]
    _, cfg = load_script(script).parse_args(data)
    assert (cfg.layout, cfg.loss, cfg.max_tokens_per_batch, cfg.simpo_gamma) == ("packed", "dpop", None, 0.5)
    _, cfg = load_script(script).parse_args([*data, "--layout", "padded", "--loss", "simpo", "--max_tokens_per_batch",
                                             "4096", "--simpo_gamma", "1.0", "--rpo_alpha", "0.5"])
    assert (cfg.layout, cfg.loss, cfg.max_tokens_per_batch, cfg.simpo_gamma, cfg.rpo_alpha) == (
        "padded", "simpo", 4096, 1.0, 0.5)
    # the study's spellings, and the stage's new name for --epochs
    _, cfg = load_script(script).parse_args([*data, "--model-path", "m", "--out-dir", "o", "--epochs", "2",
                                             "--start-epoch", "2", "--lambda", "3"])
    assert (cfg.model_path, cfg.output_dir, cfg.epochs, cfg.start_epoch, cfg.lam) == ("m", "o", 2, 2, 3.0)
    assert load_script(script).parse_args([*data, "--stages", "3", "--start_stage", "2"])[1].epochs == 3


def test_bad_layout_loss_or_size_is_a_one_line_error(capsys):
    script = load_script(SCRIPTS[0])
    for flag, value in (("--loss", "orpo"), ("--layout", "rows")):
        with pytest.raises(SystemExit):
            script.parse_args(["--data_files", "x.jsonl", flag, value])
        assert f"invalid choice: '{value}'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_cli(script.main, ["--data_files", "x.jsonl", "--output_dir", "o", "--max_tokens_per_batch", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("--max_tokens_per_batch must be >= 1, got 0")
    with pytest.raises(ValueError, match="--loss must be one of dpop, sigmoid, ipo, hinge, apo_zero, simpo"):
        PreferenceTrainingConfig(model_path="m", output_dir="o", loss="kto")
    assert DPOPTrainingConfig is PreferenceTrainingConfig  # the earlier name still imports


def test_the_pipeline_profiles_pass_layout_loss_and_max_tokens_to_both_training_stages(tmp_path):
    final = tmp_path / "final_data"
    final.mkdir()
    for name in ("dpo_pairs_easy", "dpo_pairs_medium", "dpo_pairs_hard", "dpo_pairs_hard_improved"):
        (final / f"{name}.jsonl").write_text('{"prompt": "q", "context": "c", "chosen": "a", "rejected": "b"}\n')
    p = study_profile(tmp_path / "out", tmp_path / "qa.json", tmp_path / "tqa.csv", final, tmp_path / "models")
    plain = {s.name: [str(a) for a in s.cmd] for s in build_stages(p)}
    assert "--layout" not in plain["train_best"] and "--loss" not in plain["train_latest"]  # the trainer's defaults
    p.train_layout, p.train_loss, p.max_tokens_per_batch = "padded", "ipo", 3000
    stages = {s.name: s for s in build_stages(p)}
    for name in ("train_best", "train_latest"):
        cmd = [str(a) for a in stages[name].cmd]
        assert [cmd[cmd.index(f) + 1] for f in ("--layout", "--loss", "--max_tokens_per_batch")] == ["padded", "ipo",
                                                                                                     "3000"]
        script = Path(stages[name].cmd[1])
        _, cfg = load_script(str(script.relative_to(REPO) if script.is_absolute() else script)).parse_args(cmd[2:])
        assert (cfg.layout, cfg.loss, cfg.max_tokens_per_batch, cfg.study_compat) == ("padded", "ipo", 3000, True)


def test_run_pipeline_flags_choose_the_loss_layout_and_forward_size(tmp_path):
    from aligner.core.cli import parse_config
    from aligner.pipeline.driver import PipelineConfig, profile_from_config

    final = tmp_path / "final_data"
    final.mkdir()
    for name in ("dpo_pairs_easy", "dpo_pairs_medium", "dpo_pairs_hard", "dpo_pairs_hard_improved"):
        (final / f"{name}.jsonl").write_text('{"prompt": "q", "context": "c", "chosen": "a", "rejected": "b"}\n')
    args = ["--profile", "study", "--output_dir", str(tmp_path / "out"), "--final_data_dir", str(final),
            "--halueval_path", str(tmp_path), "--truthfulqa_path", str(tmp_path), "--models_dir", str(tmp_path)]
    cfg = parse_config(PipelineConfig, args + ["--loss", "simpo", "--layout", "padded", "--max_tokens_per_batch", "2048"])
    stages = {s.name: [str(a) for a in s.cmd] for s in build_stages(profile_from_config(cfg))}
    for name in ("train_best", "train_latest"):
        cmd = stages[name]
        assert [cmd[cmd.index(f) + 1] for f in ("--loss", "--layout", "--max_tokens_per_batch")] == ["simpo", "padded",
                                                                                                     "2048"]
    plain = {s.name: s.cmd for s in build_stages(profile_from_config(parse_config(PipelineConfig, args)))}
    assert "--loss" not in [str(a) for a in plain["train_best"]]
    with pytest.raises(SystemExit):
        parse_config(PipelineConfig, args + ["--loss", "kto"])
