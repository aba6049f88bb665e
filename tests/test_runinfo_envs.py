import json
from pathlib import Path

import pytest
import yaml
from conftest import greedy_reference, run_script

from aligner.core.envs import check_pins, env_pip_lines, requirement_name
from aligner.core.envs import requirement_lines as _lines
from aligner.core.envs import requirement_pins as _pins
from aligner.core.runinfo import write_run_config

REPO = Path(__file__).resolve().parents[1]


def _env_pip(path):
    env = yaml.safe_load(path.read_text())
    assert any(str(d).startswith("python=3.11") for d in env["dependencies"] if isinstance(d, str))
    return env_pip_lines(path)


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
    assert check_pins(["torch==2.13.0", "lm-eval[ifeval]==0.4.13"], {"torch": "2.13.0+cpu", "lm-eval": "0.4.13"}) == []
    assert check_pins(["numpy==2.3.5"], {"numpy": "2.4.6"}) == ["numpy==2.3.5 (resolved: 2.4.6)"]
    assert requirement_name("PyYAML==6.0.4") == "pyyaml"
    assert requirement_name("pywin32==311; sys_platform == 'win32'") == "pywin32"


def test_requirements_pin_the_cpu_torch():
    lines = (REPO / "requirements.txt").read_text().splitlines()
    assert "torch==2.13.0" in lines


@pytest.mark.vllm_env
def test_halueval_step1_script_answers_are_the_greedy_chat_answers(tmp_path, tiny_model_dir, halueval_file):
    """Step 1 of the judged HaluEval flow (a vLLM-facing script) end to end with the HF backend, on whatever
    transformers this venv has: its answers are the model's greedy answers to the system-prompted chat, checked
    against a plain argmax loop over the chat template's prompt, one row at a time."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from aligner.core.io import read_jsonl
    from aligner.data.sources.halueval import load_halueval
    from aligner.prompts import HALUEVAL_STEP1_SYSTEM, halueval_messages

    run_script("evaluation/eval_haleval_llm_step1.py", "--model_path", tiny_model_dir, "--lora_path", "none",
               "--output_dir", tmp_path, "--run_name", "t", "--data_path", halueval_file, "--limit", 6,
               "--max_new_tokens", 12, "--backend", "hf", "--batch_size", 4)
    preds = read_jsonl(tmp_path / "predictions_t.jsonl")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    vocab = tok.get_vocab()
    stops = {tok.eos_token_id} | {vocab[t] for t in ("<|eot_id|>", "<|end_of_text|>", "<|eom_id|>") if t in vocab}
    rows = load_halueval(halueval_file, limit=6)
    want = [greedy_reference(model, tok, tok.apply_chat_template(
        halueval_messages(r["knowledge"], r["question"], HALUEVAL_STEP1_SYSTEM), tokenize=False,
        add_generation_prompt=True), 12, stops) for r in rows]
    assert len(preds) == 6
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
