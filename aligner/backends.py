"""One model interface behind every benchmark and generator (as in lm-evaluation-harness).

``LM.loglikelihood(requests)`` returns summed log p(continuation | context) for (context, continuation)
pairs; ``LM.generate_until(prompts, ...)`` returns completions.  Batching, adapter switching and the
backend (Hugging Face or vLLM) live here, not in the task code.  Several LoRA adapters can be loaded on
one base; ``set_adapter(name)`` picks one, ``set_adapter(None)`` gives the base model.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch

from aligner.logprobs import encode_prompt_response, encoded_response_logprobs, pad_sequences, wants_special_tokens
from aligner.models import (
    adapter_name,
    attach_adapters,
    load_causal_lm,
    load_tokenizer,
    parse_adapter_paths,
    use_adapter,
)
from aligner.prompts import render_chat

logger = logging.getLogger(__name__)


def cut_at_stop(text: str, stop: Sequence[str] | None) -> str:
    """Cut ``text`` at the earliest stop sequence (the stop sequence itself is dropped)."""
    if not stop:
        return text
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if i != -1:
                cut = min(cut, i)
    return text[:cut]


def stop_token_ids(tokenizer, model=None) -> list[int]:
    """EOS ids to stop generation at: the tokenizer's EOS, Llama-3's <|eot_id|>/<|end_of_text|>, the model's."""
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab()
    for tok in ("<|eot_id|>", "<|end_of_text|>", "<|eom_id|>"):
        if tok in vocab:
            ids.append(vocab[tok])
    gen_cfg = getattr(model, "generation_config", None)
    eos = getattr(gen_cfg, "eos_token_id", None) if gen_cfg is not None else None
    if isinstance(eos, int):
        ids.append(eos)
    elif isinstance(eos, (list, tuple)):
        ids.extend(eos)
    return sorted(set(ids))


class LM(ABC):
    """The interface every benchmark and data generator talks to."""

    tokenizer = None
    adapter_names: list[str | None]
    active_adapter: str | None = None

    def set_adapter(self, name: str | None) -> None:
        if name not in self.adapter_names:
            raise ValueError(f"unknown adapter {name!r}; loaded: {self.adapter_names}")
        self.active_adapter = name

    def chat_prompt(self, messages: Sequence[dict]) -> str:
        return render_chat(self.tokenizer, messages, add_generation_prompt=True)

    @abstractmethod
    def loglikelihood(self, requests: Sequence[tuple[str, str]], progress: bool = True,
                      desc: str = "loglikelihood") -> list[float]:
        ...

    @abstractmethod
    def generate_until(self, prompts: Sequence[str], max_new_tokens: int = 128, stop: Sequence[str] | None = None,
                       temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
                       progress: bool = True, desc: str = "generate") -> list[str]:
        ...


class HFLM(LM):
    """Hugging Face backend: batched log-likelihoods (right padding) and batched greedy or sampled
    generation (left padding), with adapters switched on one loaded base."""

    def __init__(self, model_path: str, lora_paths: Sequence[str | None] | str | None = None, dtype: str = "auto",
                 device: str = "auto", batch_size: int = 8, max_length: int | None = None,
                 trust_remote_code: bool = False, model=None, tokenizer=None):
        if model is None:
            model, tokenizer = load_causal_lm(model_path, dtype=dtype, device=device,
                                              trust_remote_code=trust_remote_code)
        self.model_path = model_path
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        paths = parse_adapter_paths(lora_paths)
        real = [p for p in paths if p is not None]
        self.adapter_paths: dict[str | None, str | None] = {}
        if real:
            model, names = attach_adapters(model, real)
            it = iter(names)
            self.adapter_names = [None if p is None else next(it) for p in paths]
        else:
            self.adapter_names = [None]
        for p, n in zip(paths, self.adapter_names):
            self.adapter_paths[n] = p
        self.model = model
        self.active_adapter = self.adapter_names[0]
        self.max_length = max_length or getattr(model.config, "max_position_embeddings", None) or 4096
        self.n_truncated = 0

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def loglikelihood(self, requests, progress=True, desc="loglikelihood"):
        encoded = [encode_prompt_response(self.tokenizer, c, r) for c, r in requests]
        too_long = [i for i, e in enumerate(encoded) if len(e.input_ids) > self.max_length]
        if too_long:
            raise ValueError(f"{len(too_long)} request(s) exceed the model's {self.max_length} tokens "
                             f"(first: request {too_long[0]}, {len(encoded[too_long[0]].input_ids)} tokens)")
        with use_adapter(self.model, self.active_adapter):
            return encoded_response_logprobs(self.model, self.tokenizer.pad_token_id, encoded, self.batch_size,
                                             progress, desc)

    def _encode_prompt(self, prompt: str, max_new_tokens: int) -> list[int]:
        special = wants_special_tokens(self.tokenizer, prompt)
        ids = self.tokenizer(prompt, add_special_tokens=special)["input_ids"]
        budget = self.max_length - max_new_tokens
        if len(ids) > budget:
            # Keep the end of the prompt (the question and the generation header); count it.
            self.n_truncated += 1
            keep = ids[-budget:]
            ids = ([ids[0]] + keep[1:]) if special or ids[0] == self.tokenizer.bos_token_id else keep
        return ids

    @torch.no_grad()
    def generate_until(self, prompts, max_new_tokens=128, stop=None, temperature=0.0, top_p=1.0, seed=None,
                       progress=True, desc="generate"):
        from tqdm.auto import tqdm

        encoded = [self._encode_prompt(p, max_new_tokens) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
        out: list[str] = [""] * len(prompts)
        eos = stop_token_ids(self.tokenizer, self.model)
        pad = self.tokenizer.pad_token_id
        do_sample = temperature > 0
        if do_sample and seed is not None:
            torch.manual_seed(seed)
        bar = tqdm(total=len(prompts), desc=desc, disable=not progress, unit="prompt")
        with use_adapter(self.model, self.active_adapter):
            for lo in range(0, len(order), self.batch_size):
                idx = order[lo: lo + self.batch_size]
                ids, mask = pad_sequences([encoded[i] for i in idx], pad, "left", self.device)
                kwargs = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, pad_token_id=pad,
                              eos_token_id=eos)
                if do_sample:
                    kwargs.update(temperature=temperature, top_p=top_p)
                else:
                    kwargs.update(temperature=None, top_p=None, top_k=None)
                gen = self.model.generate(input_ids=ids, attention_mask=mask, **kwargs)
                new = gen[:, ids.shape[1]:]
                for row, i in enumerate(idx):
                    text = self.tokenizer.decode(new[row], skip_special_tokens=True)
                    out[i] = cut_at_stop(text, stop)
                bar.update(len(idx))
        bar.close()
        if self.n_truncated:
            logger.warning("%d prompt(s) longer than %d tokens were cut from the left", self.n_truncated,
                           self.max_length - max_new_tokens)
        return out


def vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except Exception:
        return False
    return torch.cuda.is_available()


class VLLMLM(LM):
    """vLLM backend: ``LLM.generate`` with token-id prompts (so BOS is never doubled), LoRA through
    ``LoRARequest``; log-likelihoods from ``prompt_logprobs``."""

    def __init__(self, model_path: str, lora_paths=None, dtype: str = "auto", tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.9, max_model_len: int | None = None, max_lora_rank: int = 64,
                 seed: int = 0, **_ignored):
        from vllm import LLM

        paths = parse_adapter_paths(lora_paths)
        real = [p for p in paths if p is not None]
        self.tokenizer = load_tokenizer(model_path)
        self.model_path = model_path
        kwargs = dict(model=model_path, dtype=dtype, tensor_parallel_size=tensor_parallel_size,
                      gpu_memory_utilization=gpu_memory_utilization, seed=seed, enable_lora=bool(real))
        if real:
            kwargs["max_lora_rank"] = max_lora_rank
            kwargs["max_loras"] = max(1, len(real))
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
        self.llm = LLM(**kwargs)
        self.adapter_names = []
        self.adapter_paths = {}
        for p in paths:
            n = adapter_name(p, [a for a in self.adapter_names if a])
            n = None if p is None else n
            self.adapter_names.append(n)
            self.adapter_paths[n] = p
        self.active_adapter = self.adapter_names[0]
        self.max_length = max_model_len or _vllm_max_model_len(self.llm)

    def _lora_request(self):
        if self.active_adapter is None:
            return None
        from vllm.lora.request import LoRARequest

        idx = [a for a in self.adapter_names if a].index(self.active_adapter) + 1
        return LoRARequest(self.active_adapter, idx, os.path.abspath(self.adapter_paths[self.active_adapter]))

    def _token_prompt(self, prompt: str) -> dict:
        special = wants_special_tokens(self.tokenizer, prompt)
        return {"prompt_token_ids": self.tokenizer(prompt, add_special_tokens=special)["input_ids"]}

    def generate_until(self, prompts, max_new_tokens=128, stop=None, temperature=0.0, top_p=1.0, seed=None,
                       progress=True, desc="generate"):
        from vllm import SamplingParams

        params = SamplingParams(temperature=temperature, top_p=top_p if temperature > 0 else 1.0,
                                max_tokens=max_new_tokens, stop=list(stop) if stop else None, seed=seed)
        outs = self.llm.generate([self._token_prompt(p) for p in prompts], params,
                                 lora_request=self._lora_request(), use_tqdm=progress)
        return [cut_at_stop(o.outputs[0].text, stop) for o in outs]

    def loglikelihood(self, requests, progress=True, desc="loglikelihood"):
        from vllm import SamplingParams

        encoded = [encode_prompt_response(self.tokenizer, c, r) for c, r in requests]
        params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)
        outs = self.llm.generate([{"prompt_token_ids": e.input_ids} for e in encoded], params,
                                 lora_request=self._lora_request(), use_tqdm=progress)
        results = []
        for e, o in zip(encoded, outs):
            total = 0.0
            for t in range(e.response_start, len(e.input_ids)):
                total += o.prompt_logprobs[t][e.input_ids[t]].logprob
            results.append(total)
        return results


def _vllm_max_model_len(llm) -> int | None:
    # The engine object moved between vLLM releases; look in the places it has lived.
    engine = getattr(llm, "llm_engine", None)
    for holder in (engine, getattr(engine, "vllm_config", None), llm):
        cfg = getattr(holder, "model_config", None)
        if cfg is not None and getattr(cfg, "max_model_len", None):
            return cfg.max_model_len
    return None


def load_lm(backend: str, model_path: str, lora_paths=None, **kwargs) -> LM:
    """``backend``: hf, vllm, or auto (vLLM when it imports and a GPU is present, else HF)."""
    if backend == "auto":
        backend = "vllm" if vllm_available() else "hf"
    if backend == "vllm":
        if not vllm_available():
            raise RuntimeError("--backend vllm needs the vllm package and a CUDA GPU "
                               "(pip install -r requirements-gpu.txt); use --backend hf instead")
        hf_only = ("batch_size", "device", "trust_remote_code", "max_length")
        return VLLMLM(model_path, lora_paths, **{k: v for k, v in kwargs.items() if k not in hf_only})
    if backend == "hf":
        vllm_only = ("tensor_parallel_size", "gpu_memory_utilization", "max_model_len", "max_lora_rank", "seed")
        return HFLM(model_path, lora_paths, **{k: v for k, v in kwargs.items() if k not in vllm_only})
    raise ValueError(f"unknown backend {backend!r}; use hf, vllm or auto")
