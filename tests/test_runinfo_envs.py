import json
import re
from pathlib import Path

import yaml

from aligner.core.runinfo import write_run_config

REPO = Path(__file__).resolve().parents[1]


def _names(lines):
    out = set()
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            out.add(re.split(r"[=<>!~\[ ]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return out


def _env_pip(path):
    env = yaml.safe_load(path.read_text())
    assert any(str(d).startswith("python=3.11") for d in env["dependencies"] if isinstance(d, str))
    pip = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert pip, f"{path.name} has no pip section"
    return _names(pip[0])


def test_conda_envs_match_requirements():
    cpu = _names((REPO / "requirements.txt").read_text().splitlines())
    gpu = _names((REPO / "requirements-gpu.txt").read_text().splitlines())
    assert _env_pip(REPO / "aligner_env.yml") == cpu
    assert _env_pip(REPO / "vllm_env.yml") == cpu | gpu
    assert {"vllm", "bitsandbytes"} <= gpu


def test_requirements_pin_the_cpu_torch():
    lines = (REPO / "requirements.txt").read_text().splitlines()
    assert "torch==2.13.0" in lines


def test_run_config_records_flags_versions_commit(tmp_path):
    import argparse

    args = argparse.Namespace(model_path="m", limit=5)
    path = write_run_config(tmp_path, args, extra={"stage": "x"})
    rec = json.loads(path.read_text())
    assert rec["flags"] == {"model_path": "m", "limit": 5}
    assert rec["versions"]["torch"].startswith("2.13")
    assert "commit" in rec["git"] and rec["hostname"] and rec["start_time"]
    assert rec["stage"] == "x"
