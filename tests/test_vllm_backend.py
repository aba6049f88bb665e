"""The vLLM backend's wiring, against a stand-in `vllm` module (no GPU here): token-id prompts without a
doubled BOS, LoRA requests per adapter, stop sequences, and log-likelihoods summed from prompt_logprobs over
exactly the continuation tokens."""

import sys
import types
from dataclasses import dataclass

import pytest

from aligner.core.logprobs import encode_prompt_response

pytestmark = pytest.mark.vllm_env  # also run on the vLLM env's transformers (make test-vllm-env)


@dataclass
class _Logprob:
    logprob: float


class _Out:
    def __init__(self, text=None, prompt_logprobs=None):
        self.outputs = [types.SimpleNamespace(text=text)]
        self.prompt_logprobs = prompt_logprobs


class _FakeLLM:
    instances = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.calls = []
        self.llm_engine = types.SimpleNamespace(model_config=types.SimpleNamespace(max_model_len=2048))
        _FakeLLM.instances.append(self)

    def generate(self, prompts, params, lora_request=None, use_tqdm=True):
        self.calls.append((prompts, params, lora_request))
        name = lora_request.lora_name if lora_request else "base"
        if params.kwargs.get("prompt_logprobs") is not None:
            # log p(token t) = -(t + 1) / 10 at position t, for every prompt
            return [_Out(prompt_logprobs=[None] + [{tok: _Logprob(-(t + 1) / 10)} for t, tok in
                                                   enumerate(p["prompt_token_ids"][1:], start=1)]) for p in prompts]
        return [_Out(text=f" answer by {name}\nQ: next") for p in prompts]


@pytest.fixture()
def fake_vllm(monkeypatch):
    vllm = types.ModuleType("vllm")
    vllm.LLM = _FakeLLM
    vllm.SamplingParams = lambda **kw: types.SimpleNamespace(kwargs=kw)
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = lambda name, idx, path: types.SimpleNamespace(lora_name=name, lora_int_id=idx, lora_path=path)
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.lora", lora)
    monkeypatch.setitem(sys.modules, "vllm.lora.request", request)
    _FakeLLM.instances.clear()
    return vllm


@pytest.fixture(scope="module")
def two_adapters(tiny_model_dir, tmp_path_factory):
    """Two LoRA adapters trained (saved) on the tiny model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("vllm-adapters")
    out = []
    for name in ("run_a", "run_b"):
        torch.manual_seed(len(out))
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(root / name)
        out.append(root / name)
    return out


def test_vllm_backend_wiring(fake_vllm, tiny_model_dir, two_adapters):
    from aligner.lm.vllm import VLLMLM

    a, b = two_adapters
    lm = VLLMLM(str(tiny_model_dir), ["none", str(a), str(b)], tensor_parallel_size=2, max_model_len=0)
    llm = _FakeLLM.instances[-1]
    assert llm.kwargs["enable_lora"] and llm.kwargs["tensor_parallel_size"] == 2 and llm.kwargs["max_loras"] == 2
    assert lm.adapter_names == [None, "run_a", "run_b"] and lm.max_length == 2048  # 0: the engine's own

    chat = lm.chat_prompt([{"role": "user", "content": "hi"}])
    for adapter, expected in ((None, "base"), ("run_b", "run_b")):
        lm.set_adapter(adapter)
        out = lm.generate_until([chat, "Q: x\nA:"], max_new_tokens=7, stop=["\nQ:"], progress=False)
        assert out == [f" answer by {expected}"] * 2
        prompts, params, req = llm.calls[-1]
        assert params.kwargs["temperature"] == 0.0 and params.kwargs["max_tokens"] == 7
        bos = lm.tokenizer.bos_token_id
        assert [p["prompt_token_ids"].count(bos) for p in prompts] == [1, 1]  # never a doubled BOS
        if adapter is None:
            assert req is None
        else:
            assert (req.lora_name, req.lora_int_id, req.lora_path) == ("run_b", 2, str(b))

    lm.set_adapter(None)
    requests = [("Q: Where is Paris?\nA:", " In France."), (chat, "Hello there")]
    got = lm.loglikelihood(requests, progress=False)
    for (ctx, cont), value in zip(requests, got):
        enc = encode_prompt_response(lm.tokenizer, ctx, cont)
        expected = sum(-(t + 1) / 10 for t in range(enc.response_start, len(enc.input_ids)))
        assert value == pytest.approx(expected)


def test_vllm_engine_arguments_and_long_prompts(fake_vllm, tiny_model_dir, caplog, monkeypatch):
    """dtype names mapped to vLLM's, the study's max_model_len 4096 by default, max_num_seqs / enforce_eager passed;
    a prompt that leaves no room for max_new_tokens is cut from the left (BOS kept) before it is sent, and
    counted; a log-likelihood request that does not fit is an error."""
    import aligner.lm.interface as interface
    from aligner.lm.interface import load_lm
    from aligner.lm.vllm import VLLMLM, vllm_dtype

    monkeypatch.setattr(interface, "vllm_available", lambda: True)  # no GPU here

    assert [vllm_dtype(d) for d in ("auto", "bf16", "fp16", "fp32")] == ["auto", "bfloat16", "float16", "float32"]
    with pytest.raises(ValueError, match="unknown dtype"):
        vllm_dtype("int8")
    lm = VLLMLM(str(tiny_model_dir), dtype="bf16")
    assert _FakeLLM.instances[-1].kwargs["dtype"] == "bfloat16" and lm.max_length == 4096
    assert _FakeLLM.instances[-1].kwargs["max_model_len"] == 4096
    assert "max_num_seqs" not in _FakeLLM.instances[-1].kwargs and not _FakeLLM.instances[-1].kwargs["enforce_eager"]

    lm = load_lm("vllm", str(tiny_model_dir), dtype="fp16", max_model_len=64, max_num_seqs=32, enforce_eager=True,
                 batch_size=8, double_bos=False)  # batch_size: an HF setting, dropped
    kw = _FakeLLM.instances[-1].kwargs
    assert (kw["dtype"], kw["max_model_len"], kw["max_num_seqs"], kw["enforce_eager"]) == ("float16", 64, 32, True)
    tok = lm.tokenizer
    short = "Q: Where is Paris?\nA:"
    long = "Q: " + " ".join(["word"] * 200) + " end?\nA:"
    ids_long = tok(long)["input_ids"]
    assert len(ids_long) > 64
    import logging

    with caplog.at_level(logging.WARNING):
        lm.generate_until([short, long], max_new_tokens=16, progress=False)
    sent = _FakeLLM.instances[-1].calls[-1][0]
    assert sent[0]["prompt_token_ids"] == tok(short)["input_ids"]
    assert sent[1]["prompt_token_ids"] == [ids_long[0]] + ids_long[-(64 - 16 - 1):]  # 48 tokens: BOS + the end
    assert lm.n_truncated == 1 and "1 prompt(s) longer than 48 tokens were cut" in caplog.text
    with pytest.raises(ValueError, match="do not fit vLLM's max_model_len 64"):
        lm.loglikelihood([(long, " yes")], progress=False)


def test_vllm_sampling_and_doubled_bos(fake_vllm, tiny_model_dir):
    from aligner.lm.vllm import VLLMLM

    lm = VLLMLM(str(tiny_model_dir))
    chat = lm.chat_prompt([{"role": "user", "content": "hi"}])
    lm.generate_until([chat], max_new_tokens=5, temperature=0.6, top_p=0.9, top_k=50, seed=3, progress=False)
    prompts, params, _ = _FakeLLM.instances[-1].calls[-1]
    assert {k: params.kwargs[k] for k in ("temperature", "top_p", "top_k", "seed")} == \
        {"temperature": 0.6, "top_p": 0.9, "top_k": 50, "seed": 3}
    bos = lm.tokenizer.bos_token_id
    assert prompts[0]["prompt_token_ids"].count(bos) == 1
    lm.double_bos = True  # the study's text prompts: the template's BOS and the tokenizer's
    lm.generate_until([chat], max_new_tokens=5, progress=False)
    ids = _FakeLLM.instances[-1].calls[-1][0][0]["prompt_token_ids"]
    assert ids[:2] == [bos, bos] and ids[1:] == lm.tokenizer(chat, add_special_tokens=False)["input_ids"]
