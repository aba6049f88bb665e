"""The one model interface behind every benchmark and generator (as in lm-evaluation-harness).

``LM.loglikelihood(requests)`` returns summed log p(continuation | context) for (context, continuation)
pairs; ``LM.loglikelihood_groups(groups)`` does the same for groups of continuations that share one context
(a question and its MC choices), which lets a backend share the context's computation; ``LM.generate_until``
returns completions; ``LM.release()`` gives the accelerator memory back.  Batching, prefix sharing, adapter
switching and the backend (Hugging Face in ``aligner.lm.hf``, vLLM in ``aligner.lm.vllm``) live behind
it; task code only sees this class.  Several LoRA adapters can be loaded on one base; ``set_adapter(name)``
picks one, ``set_adapter(None)`` gives the base model.
"""

from __future__ import annotations

import gc
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence

import torch

from aligner.core.io import AlignerError
from aligner.core.logprobs import wants_special_tokens
from aligner.prompts import DEFAULT_DATE_STRING, render_chat

logger = logging.getLogger(__name__)

BACKENDS = ("hf", "vllm", "auto")


class BackendUnavailableError(AlignerError, RuntimeError):
    """The requested backend cannot run here (vLLM without the package or a GPU)."""


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


def fit_prompt(ids: list[int], budget: int, keep_first: bool) -> list[int]:
    """A prompt's token ids cut to ``budget`` tokens from the left (the question and the generation header at its
    end are kept), keeping its first token (BOS) when ``keep_first``; unchanged when it fits."""
    if len(ids) <= budget:
        return ids
    if budget < 2:
        raise ValueError(f"a context of {budget} tokens leaves no room for the prompt; raise --max_model_len")
    keep = ids[-(budget - 1):] if keep_first else ids[-budget:]
    return ([ids[0]] + keep) if keep_first else keep


class LM(ABC):
    """The interface every benchmark and data generator talks to."""

    tokenizer = None
    adapter_names: list[str | None]
    adapter_paths: dict[str | None, str | None]
    active_adapter: str | None = None
    max_length: int | None = None
    date_string: str = DEFAULT_DATE_STRING  # written into chat prompts by templates that have a date
    #: tokenize chat-rendered prompts with the special tokens again, giving two BOS as the study's HF and vLLM
    #: text prompts did (``--study_compat``); off: one BOS
    double_bos: bool = False
    #: prompts longer than the context (less the tokens to generate) cut from the left, counted here
    n_truncated: int = 0
    #: prompts handed to one ``generate_until`` call between two saves of a resumable run
    generation_chunk: int = 16

    def set_adapter(self, name: str | None) -> None:
        if name not in self.adapter_names:
            raise ValueError(f"unknown adapter {name!r}; loaded: {self.adapter_names}")
        self.active_adapter = name

    def each_adapter(self) -> Iterator[tuple[str | None, str | None]]:
        """Every loaded adapter in turn, made active: yields (name, adapter path); (None, None) is the base."""
        for name in self.adapter_names:
            self.set_adapter(name)
            yield name, self.adapter_paths.get(name)

    def chat_prompt(self, messages: Sequence[dict]) -> str:
        return render_chat(self.tokenizer, messages, add_generation_prompt=True, date_string=self.date_string)

    @abstractmethod
    def loglikelihood(self, requests: Sequence[tuple[str, str]], progress: bool = True,
                      desc: str = "loglikelihood") -> list[float]:
        ...

    def loglikelihood_groups(self, groups: Sequence[tuple[str, Sequence[str]]], progress: bool = False,
                             desc: str = "loglikelihood") -> list[list[float]]:
        """log p(continuation | context) for groups of continuations sharing one context, group by group.
        Backends that can share the context's work override this; the numbers are the same either way."""
        flat = [(ctx, c) for ctx, conts in groups for c in conts]
        scores = self.loglikelihood(flat, progress=progress, desc=desc) if flat else []
        out, i = [], 0
        for _, conts in groups:
            out.append(list(scores[i: i + len(conts)]))
            i += len(conts)
        return out

    def loglikelihood_tokens(self, encoded: Sequence, progress: bool = False,
                             desc: str = "loglikelihood") -> list[float]:
        """Summed log-probs of already tokenized (ids, response_start) pairs (``aligner.core.logprobs.EncodedPair``),
        for inputs built by other rules than the context/continuation split (the study's, under
        ``--study_compat``)."""
        raise NotImplementedError(f"{type(self).__name__} scores only text requests")

    def prompt_ids(self, prompt: str) -> list[int]:
        """A generation prompt's token ids: BOS added unless the text starts with it (a chat-rendered prompt),
        or always with ``double_bos``."""
        special = True if self.double_bos else wants_special_tokens(self.tokenizer, prompt)
        return self.tokenizer(prompt, add_special_tokens=special)["input_ids"]

    @abstractmethod
    def generate_until(self, prompts: Sequence[str], max_new_tokens: int = 128, stop: Sequence[str] | None = None,
                       temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
                       progress: bool = True, desc: str = "generate", top_k: int | None = None) -> list[str]:
        """Completions of ``prompts``: greedy at ``temperature`` 0, else sampled with ``top_p`` and ``top_k``
        (0: no top-k filter; None: the backend's default, the model's generation_config on HF), seeded by
        ``seed``."""
        ...

    def release(self) -> None:
        """Drop the model and give its accelerator memory back before the next one is loaded."""
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def release_lm(lm: LM | None) -> None:
    """``lm.release()`` when there is a model (the ``finally`` of a phase that may not have loaded one)."""
    if lm is not None:
        lm.release()


def vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except Exception:
        return False
    return torch.cuda.is_available()


def resolve_backend(backend: str) -> str:
    """``auto`` is vLLM when it imports and a GPU is present, else HF."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use hf, vllm or auto")
    if backend == "auto":
        return "vllm" if vllm_available() else "hf"
    if backend == "vllm" and not vllm_available():
        raise BackendUnavailableError("--backend vllm needs the vllm package and a CUDA GPU (the vLLM environment: "
                                      "conda env create -f vllm_env.yml, or pip install -r requirements-vllm.txt); "
                                      "use --backend hf instead")
    return backend


def load_lm(backend: str, model_path: str, lora_paths=None, **kwargs) -> LM:
    """The backend's LM for ``model_path`` with ``lora_paths`` attached; settings the backend does not
    take are dropped (so one call site serves both).  ``date_string`` goes into its chat prompts."""
    backend = resolve_backend(backend)
    date_string = kwargs.pop("date_string", DEFAULT_DATE_STRING)
    double_bos = kwargs.pop("double_bos", False)
    if backend == "vllm":
        from aligner.lm.vllm import VLLM_SETTINGS, VLLMLM

        if kwargs.get("merge_adapter") and lora_paths:
            logger.warning("--merge_adapter applies to the HF backend; vLLM applies the adapters unmerged")

        lm = VLLMLM(model_path, lora_paths, **{k: v for k, v in kwargs.items() if k in VLLM_SETTINGS})
    else:
        from aligner.lm.hf import HF_SETTINGS, HFLM

        lm = HFLM(model_path, lora_paths, **{k: v for k, v in kwargs.items() if k in HF_SETTINGS})
    lm.date_string = date_string
    lm.double_bos = bool(double_bos)
    return lm
