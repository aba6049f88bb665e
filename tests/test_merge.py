"""scripts/merge_adapter.py: a LoRA adapter made on the tiny model, merged, gives the adapter-applied logits."""

import json

import pytest
import torch
from conftest import load_script
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from aligner.core.cli import run_cli
from aligner.core.io import read_jsonl
from aligner.prompts import halueval_messages, render_chat
from aligner.train.merge import MergeCheckError, check_logits, merge_lora

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter with non-zero B matrices (PEFT's default init would make it a no-op)."""
    out = tmp_path_factory.mktemp("lora")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    torch.manual_seed(0)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    get_peft_model(base, cfg).save_pretrained(out)
    return out


def real_inputs(tok, halueval_file, n=3):
    rows = read_jsonl(halueval_file, limit=n)
    texts = [render_chat(tok, halueval_messages(r["knowledge"], r["question"])) + r["right_answer"] for r in rows]
    return [torch.tensor([tok(t, add_special_tokens=False)["input_ids"]]) for t in texts]


@torch.no_grad()
def test_merged_model_matches_adapter_applied_model(tiny_model_dir, adapter_dir, halueval_file, tmp_path, capsys):
    out = tmp_path / "merged"
    script = load_script("scripts/merge_adapter.py")
    report = script.main(["--base_model_path", str(tiny_model_dir), "--adapter_path", str(adapter_dir),
                          "--output_path", str(out), "--device", "cpu"])
    printed = capsys.readouterr().out
    assert "max abs diff" in printed and report.max_abs_diff <= 1e-3
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    assert not (out / "adapter_config.json").exists()
    rc = json.loads((out / "run_config.json").read_text())
    assert rc["merge_check"]["max_abs_diff"] == report.max_abs_diff

    # independently: the base with the adapter applied by PEFT, and the merged folder as a plain model
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert not any("lora" in n for n, _ in merged.named_parameters())
    inputs = real_inputs(tok, halueval_file)
    base_logits = [base(input_ids=ids).logits for ids in inputs]
    applied = PeftModel.from_pretrained(base, adapter_dir).eval()
    for ids, lb in zip(inputs, base_logits):
        la = applied(input_ids=ids).logits
        lm = merged(input_ids=ids).logits
        assert (la - lb).abs().max() > 1e-2          # the adapter changes the model ...
        assert (lm - la).abs().max() < 1e-4          # ... and the merged model reproduces it


def test_bf16_save_and_refusal(tiny_model_dir, adapter_dir, tmp_path):
    rep = merge_lora(tiny_model_dir, adapter_dir, tmp_path / "m16", save_dtype="bf16", device="cpu")
    cfg = json.loads((tmp_path / "m16" / "config.json").read_text())
    assert cfg.get("dtype", cfg.get("torch_dtype")) == "bfloat16"
    assert rep.max_abs_diff < 1e-3 and 0 < rep.saved_max_abs_diff < 0.25  # bf16 rounding, reported
    # above the tolerance: exit status 1, one line, nothing written (a negative tolerance can never pass)
    script = load_script("scripts/merge_adapter.py")
    with pytest.raises(SystemExit) as exc:
        run_cli(script.main, ["--base_model_path", str(tiny_model_dir), "--adapter_path", str(adapter_dir),
                     "--output_path", str(tmp_path / "refused"), "--tolerance", "-1", "--device", "cpu"])
    assert exc.value.code == 1 and not (tmp_path / "refused").exists()
    ref = torch.randn(1, 5, 11)
    assert check_logits(ref, ref.clone(), 0.0) == 0.0
    with pytest.raises(MergeCheckError, match="differ"):
        check_logits(ref, ref + 1e-2, 1e-3)
    with pytest.raises(MergeCheckError):
        check_logits(ref, ref * float("nan"), 1.0)
