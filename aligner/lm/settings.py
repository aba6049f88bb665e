"""Settings every model-using stage shares, declared once (the stage configs extend these dataclasses and
``aligner.core.cli`` generates the flags from them)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aligner.lm.interface import BACKENDS
from aligner.prompts import DEFAULT_DATE_STRING


@dataclass(kw_only=True)
class ModelSettings:
    """Which model (and adapters) to load, in which dtype, on which device."""

    model_path: str | None = field(default=None, metadata={
        "help": "model folder or hub id", "group": "model"})
    lora_path: list[str] | None = field(default=None, metadata={
        "help": "LoRA adapter folder(s), space or comma separated; 'none' = the base model. Several are evaluated in "
                "turn on one loaded base (default: none = the base model only)", "nargs": "*", "group": "model"})
    dtype: str = field(default="auto", metadata={
        "help": "weights dtype: auto (bf16 on CUDA, fp32 on CPU), fp32, bf16, fp16", "group": "model"})
    device: str = field(default="auto", metadata={
        "help": "HF device: auto (CUDA when available), cpu, cuda, cuda:N", "group": "model"})


@dataclass(kw_only=True)
class BackendSettings:
    """Which engine generates, and its knobs (vLLM's only matter with ``--backend vllm``)."""

    backend: str = field(default="auto", metadata={
        "help": "generation backend: hf, vllm, or auto (vLLM when it imports and a GPU is present, else hf)",
        "choices": list(BACKENDS), "group": "backend"})
    tensor_parallel_size: int = field(default=1, metadata={
        "help": "vLLM tensor-parallel GPUs", "group": "backend"})
    gpu_memory_utilization: float = field(default=0.9, metadata={
        "help": "vLLM share of GPU memory", "group": "backend"})
    seed: int = field(default=0, metadata={
        "help": "generation seed (vLLM; sampling)", "group": "backend"})


@dataclass(kw_only=True)
class ChatSettings:
    """How chat prompts are rendered."""

    date_string: str = field(default=DEFAULT_DATE_STRING, metadata={
        "help": "the date written into Llama-3 chat prompts ('Today Date: ...'), fixed so that prompts and results do "
                "not change with the calendar (the template's own fallback; the study's runs used the day they ran)",
        "group": "prompts"})
