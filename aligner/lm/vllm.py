"""The vLLM backend of ``aligner.lm.LM``: ``LLM.generate`` with token-id prompts (so BOS is never
doubled), LoRA adapters through ``LoRARequest``, log-likelihoods from ``prompt_logprobs``.  ``release()``
tears the engine and its workers down so the next model (a judge) gets the GPU."""

from __future__ import annotations

import gc
import logging
import os

from aligner.core.logprobs import encode_prompt_response, wants_special_tokens
from aligner.core.models import adapter_name, load_tokenizer, parse_adapter_paths
from aligner.lm.interface import LM, cut_at_stop

logger = logging.getLogger(__name__)

#: the keyword arguments ``VLLMLM`` takes (``load_lm`` drops the others)
VLLM_SETTINGS = ("dtype", "tensor_parallel_size", "gpu_memory_utilization", "max_model_len", "max_lora_rank", "seed")


class VLLMLM(LM):
    """vLLM backend: ``LLM.generate`` with token-id prompts (so BOS is never doubled), LoRA through
    ``LoRARequest``; log-likelihoods from ``prompt_logprobs``."""

    generation_chunk = 1024  # vLLM schedules its own batches: hand it many prompts per call

    def __init__(self, model_path: str, lora_paths=None, dtype: str = "auto", tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.9, max_model_len: int | None = None, max_lora_rank: int = 64,
                 seed: int = 0):
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
