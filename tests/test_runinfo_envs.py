import json
import re
from pathlib import Path

import pytest
import yaml
from conftest import load_script, run_script

from aligner.core.runinfo import write_run_config

REPO = Path(__file__).resolve().parents[1]


def _lines(path):
    return [ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines() if ln.split("#", 1)[0].strip()]


def _name(line):
    return re.split(r"[=<>!~\[ ]", line, maxsplit=1)[0].lower().replace("_", "-")


def _pins(lines):
    return {_name(ln): ln for ln in lines}


def _env_pip(path):
    env = yaml.safe_load(path.read_text())
    assert any(str(d).startswith("python=3.11") for d in env["dependencies"] if isinstance(d, str))
    pip = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert pip, f"{path.name} has no pip section"
    return [str(x).strip() for x in pip[0]]


def test_conda_envs_are_the_requirement_files():
    cpu, gpu, vllm = (_lines(REPO / f) for f in ("requirements.txt", "requirements-gpu.txt", "requirements-vllm.txt"))
    assert _env_pip(REPO / "aligner_env.yml") == cpu + gpu
    assert _env_pip(REPO / "vllm_env.yml") == vllm
    assert {"bitsandbytes", "deepspeed"} <= set(_pins(gpu))


def test_vllm_env_differs_from_the_aligner_env_only_where_vllm_needs_it():
    """Same packages plus vllm; other versions only for torch, transformers and numpy, and those satisfy what vllm
    0.33.0's wheel METADATA requires (torch==2.14.0, transformers>=5.16.1,<5.21.0; numpy<2.4 through
    mistral_common on Python 3.11)."""
    from packaging.specifiers import SpecifierSet

    aligner = _pins(_lines(REPO / "requirements.txt") + _lines(REPO / "requirements-gpu.txt"))
    vllm = _pins(_lines(REPO / "requirements-vllm.txt"))
    assert set(vllm) == set(aligner) | {"vllm"}
    assert {n for n in aligner if aligner[n] != vllm[n]} == {"torch", "transformers", "numpy"}
    assert vllm["vllm"] == "vllm==0.33.0"
    version = {n: ln.split("==", 1)[1] for n, ln in vllm.items()}
    assert version["torch"] in SpecifierSet("==2.14.0")
    assert version["transformers"] in SpecifierSet(">=5.16.1,<5.21.0")
    assert version["numpy"] in SpecifierSet("<2.4")


def test_small_venv_pins_follow_the_vllm_env_with_the_cpu_torch(tmp_path):
    out = tmp_path / "small.txt"
    run_script("scripts/check_envs.py", "--small_venv_requirements", out, "--small_venv_packages",
               "torch,transformers,numpy,huggingface_hub")
    vllm, cpu = _pins(_lines(REPO / "requirements-vllm.txt")), _pins(_lines(REPO / "requirements.txt"))
    assert _lines(out) == [cpu["torch"], vllm["transformers"], vllm["numpy"], vllm["huggingface-hub"]]


def test_check_pins_names_a_wrong_version():
    mod = load_script("scripts/check_envs.py")
    assert mod.check_pins(["torch==2.13.0", "lm-eval[ifeval]==0.4.13"], {"torch": "2.13.0+cpu", "lm-eval": "0.4.13"}) == []
    assert mod.check_pins(["numpy==2.3.5"], {"numpy": "2.4.6"}) == ["numpy==2.3.5 (resolved: 2.4.6)"]
    assert mod.requirement_name("PyYAML==6.0.4") == "pyyaml"


def test_requirements_pin_the_cpu_torch():
    lines = (REPO / "requirements.txt").read_text().splitlines()
    assert "torch==2.13.0" in lines


@pytest.mark.vllm_env
def test_halueval_step1_script_answers_are_the_greedy_chat_answers(tmp_path, tiny_model_dir, halueval_file):
    """Step 1 of the judged HaluEval flow (a vLLM-facing script) end to end with the HF backend, on whatever
    transformers this venv has: its answers are the model's greedy answers to the system-prompted chat."""
    from aligner.core.io import read_jsonl
    from aligner.core.models import load_causal_lm
    from aligner.data.sources.halueval import load_halueval
    from aligner.eval.tasks.halueval import generate_answers
    from aligner.lm.hf import HFLM
    from aligner.prompts import HALUEVAL_STEP1_SYSTEM

    run_script("evaluation/eval_haleval_llm_step1.py", "--model_path", tiny_model_dir, "--lora_path", "none",
               "--output_dir", tmp_path, "--run_name", "t", "--data_path", halueval_file, "--limit", 6,
               "--max_new_tokens", 12, "--backend", "hf", "--batch_size", 4)
    preds = read_jsonl(tmp_path / "predictions_t.jsonl")
    model, tok = load_causal_lm(tiny_model_dir, device="cpu")
    want = generate_answers(HFLM(str(tiny_model_dir), model=model, tokenizer=tok, batch_size=1),
                            load_halueval(halueval_file, limit=6), 12, HALUEVAL_STEP1_SYSTEM)
    assert [p["generated_text"] for p in preds] == want


def test_run_config_records_flags_versions_commit(tmp_path):
    import argparse

    args = argparse.Namespace(model_path="m", limit=5)
    path = write_run_config(tmp_path, args, extra={"stage": "x"})
    rec = json.loads(path.read_text())
    assert rec["flags"] == {"model_path": "m", "limit": 5}
    assert rec["versions"]["torch"].startswith("2.13")
    assert "commit" in rec["git"] and rec["hostname"] and rec["start_time"]
    assert rec["stage"] == "x"
