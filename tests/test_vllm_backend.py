"""The vLLM backend's wiring, against a stand-in `vllm` module (no GPU here): token-id prompts without a
doubled BOS, LoRA requests per adapter, stop sequences, and log-likelihoods summed from prompt_logprobs over
exactly the continuation tokens."""

import sys
import types
from dataclasses import dataclass

import pytest

from aligner.core.logprobs import encode_prompt_response


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


def test_vllm_backend_wiring(fake_vllm, tiny_model_dir, tmp_path):
    from aligner.lm.vllm import VLLMLM

    a, b = tmp_path / "run_a", tmp_path / "run_b"
    a.mkdir()
    b.mkdir()
    lm = VLLMLM(str(tiny_model_dir), ["none", str(a), str(b)], tensor_parallel_size=2)
    llm = _FakeLLM.instances[-1]
    assert llm.kwargs["enable_lora"] and llm.kwargs["tensor_parallel_size"] == 2 and llm.kwargs["max_loras"] == 2
    assert lm.adapter_names == [None, "run_a", "run_b"] and lm.max_length == 2048

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
