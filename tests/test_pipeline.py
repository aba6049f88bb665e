"""The pipeline driver: skip/force logic on real subprocess stages, and every stage command of both
profiles is accepted by the argparse block of the script it names (so flags cannot drift)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from aligner.pipeline import Pipeline, Stage, build_stages, demo_profile, study_profile, summary_sections

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


def test_summary_sections_keep_only_summaries():
    md = "## A\n\n### Summary\n\n| x |\n\n### r vs b\n\n| y |\n## B\n### Summary\n| z |\n"
    assert summary_sections(md) == "## A\n\n| x |\n\n## B\n| z |\n"
