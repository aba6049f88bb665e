"""The vLLM backend of ``aligner.lm.LM``: ``LLM.generate`` with token-id prompts (so BOS is never
doubled, unless ``double_bos`` asks for the study's text-prompt behaviour), LoRA adapters through
``LoRARequest``, log-likelihoods from ``prompt_logprobs``.  ``release()`` tears the engine and its workers down
so the next model (a judge) gets the GPU.

The engine's context is ``max_model_len`` (4096 by default, as the study; 0 = the model's own).  vLLM refuses
a prompt longer than that, and a resumed run would meet the same row again, so a prompt that does not leave
room for ``max_new_tokens`` is cut from the left (its BOS kept) before it is sent, and counted
(``n_truncated``); a log-likelihood request that does not fit is an error naming it."""

from __future__ import annotations

import gc
import logging
import os

from aligner.core.logprobs import encode_prompt_response
from aligner.core.models import check_adapter_path, load_tokenizer, parse_adapter_paths, planned_adapter_names
from aligner.lm.interface import LM, cut_at_stop, fit_prompt

logger = logging.getLogger(__name__)

#: the keyword arguments ``VLLMLM`` takes (``load_lm`` drops the others)
VLLM_SETTINGS = ("dtype", "tensor_parallel_size", "gpu_memory_utilization", "max_model_len", "max_lora_rank", "seed",
                 "max_num_seqs", "enforce_eager", "allow_base_mismatch")
#: the project's dtype names -> vLLM's
VLLM_DTYPES = {"auto": "auto", "bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16",
               "half": "float16", "fp32": "float32", "float32": "float32", "float": "float32"}
DEFAULT_MAX_MODEL_LEN = 4096


def vllm_dtype(dtype: str) -> str:
    try:
        return VLLM_DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r} for vLLM; use one of {', '.join(VLLM_DTYPES)}") from None


class VLLMLM(LM):
    """vLLM backend: ``LLM.generate`` with token-id prompts (so BOS is never doubled), LoRA through
    ``LoRARequest``; log-likelihoods from ``prompt_logprobs``."""

    generation_chunk = 1024  # vLLM schedules its own batches: hand it many prompts per call

    def __init__(self, model_path: str, lora_paths=None, dtype: str = "auto", tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.9, max_model_len: int | None = DEFAULT_MAX_MODEL_LEN,
                 max_lora_rank: int = 64, seed: int = 0, max_num_seqs: int | None = None, enforce_eager: bool = False,
                 allow_base_mismatch: bool = False):
        from vllm import LLM

        from aligner.core.adapter_check import check_adapter_base

        paths = parse_adapter_paths(lora_paths)
        real = [p for p in paths if p is not None]
        for p in real:
            check_adapter_base(check_adapter_path(p), model_path, allow_mismatch=allow_base_mismatch)
        self.tokenizer = load_tokenizer(model_path)
        self.model_path = model_path
        kwargs = dict(model=model_path, dtype=vllm_dtype(dtype), tensor_parallel_size=tensor_parallel_size,
                      gpu_memory_utilization=gpu_memory_utilization, seed=seed, enable_lora=bool(real),
                      enforce_eager=bool(enforce_eager))
        if real:
            kwargs["max_lora_rank"] = max_lora_rank
            kwargs["max_loras"] = max(1, len(real))
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
        if max_num_seqs:
            kwargs["max_num_seqs"] = max_num_seqs
        self.llm = LLM(**kwargs)
        self.adapter_names = planned_adapter_names(lora_paths)
        self.adapter_paths = dict(zip(self.adapter_names, paths))
        self.active_adapter = self.adapter_names[0]
        self.max_length = max_model_len or _vllm_max_model_len(self.llm)

    def release(self) -> None:
        # The engine holds the GPU until its workers are torn down.
        try:
            from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

            destroy_model_parallel()
            destroy_distributed_environment()
        except Exception:  # best effort: older/newer vLLM move these
            logger.debug("vLLM teardown helpers unavailable", exc_info=True)
        if hasattr(self, "llm"):
            del self.llm
        gc.collect()
        super().release()

    def _lora_request(self):
        if self.active_adapter is None:
            return None
        from vllm.lora.request import LoRARequest

        idx = [a for a in self.adapter_names if a].index(self.active_adapter) + 1
        return LoRARequest(self.active_adapter, idx, os.path.abspath(self.adapter_paths[self.active_adapter]))

    def _token_prompt(self, prompt: str, max_new_tokens: int) -> dict:
        ids = self.prompt_ids(prompt)
        if self.max_length:
            fitted = fit_prompt(ids, self.max_length - max_new_tokens, ids[0] == self.tokenizer.bos_token_id)
            self.n_truncated += len(fitted) < len(ids)
            ids = fitted
        return {"prompt_token_ids": ids}

    def generate_until(self, prompts, max_new_tokens=128, stop=None, temperature=0.0, top_p=1.0, seed=None,
                       progress=True, desc="generate", top_k=None):
        from vllm import SamplingParams

        sampling = {"top_p": top_p, **({"top_k": top_k} if top_k is not None else {})} if temperature > 0 else {}
        params = SamplingParams(temperature=temperature, max_tokens=max_new_tokens,
                                stop=list(stop) if stop else None, seed=seed, **sampling)
        before = self.n_truncated
        token_prompts = [self._token_prompt(p, max_new_tokens) for p in prompts]
        if self.n_truncated > before:
            logger.warning("%d prompt(s) longer than %d tokens were cut from the left (max_model_len %d)",
                           self.n_truncated - before, self.max_length - max_new_tokens, self.max_length)
        outs = self.llm.generate(token_prompts, params, lora_request=self._lora_request(), use_tqdm=progress)
        return [cut_at_stop(o.outputs[0].text, stop) for o in outs]

    def loglikelihood(self, requests, progress=True, desc="loglikelihood"):
        encoded = [encode_prompt_response(self.tokenizer, c, r) for c, r in requests]
        return self.loglikelihood_tokens(encoded, progress=progress, desc=desc)

    def loglikelihood_tokens(self, encoded, progress=False, desc="loglikelihood"):
        from vllm import SamplingParams

        too_long = [i for i, e in enumerate(encoded) if self.max_length and len(e.input_ids) >= self.max_length]
        if too_long:
            raise ValueError(f"{len(too_long)} request(s) do not fit vLLM's max_model_len {self.max_length} (first: "
                             f"request {too_long[0]}, {len(encoded[too_long[0]].input_ids)} tokens); raise "
                             "--max_model_len")
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
