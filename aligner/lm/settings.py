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
        "help": "model folder or hub id", "group": "model", "identity": "path", "phases": ("policy",)})
    lora_path: list[str] | None = field(default=None, metadata={
        "help": "LoRA adapter folder(s), space or comma separated; 'none' = the base model. Several are evaluated in "
                "turn on one loaded base (default: none = the base model only)", "nargs": "*", "group": "model",
        "record": False})
    dtype: str = field(default="auto", metadata={
        "help": "weights dtype: auto (bf16 on CUDA, fp32 on CPU), fp32, bf16, fp16", "group": "model"})
    merge_adapter: bool = field(default=False, metadata={
        "help": "merge each LoRA adapter into the base weights (in their dtype) before scoring with it, as the study's "
                "TruthfulQA and HaluEval scripts did (HF backend; on with --study_compat); default: applied unmerged",
        "group": "model", "phases": ("policy",)})
    device: str = field(default="auto", metadata={
        "help": "HF device: auto (CUDA when available), cpu, cuda, cuda:N", "group": "model", "record": False})


@dataclass(kw_only=True)
class BackendSettings:
    """Which engine generates, and its knobs (vLLM's only matter with ``--backend vllm``)."""

    backend: str = field(default="auto", metadata={
        "help": "generation backend: hf, vllm, or auto (vLLM when it imports and a GPU is present, else hf)",
        "choices": list(BACKENDS), "group": "backend", "record": False})
    tensor_parallel_size: int = field(default=1, metadata={
        "help": "vLLM tensor-parallel GPUs", "group": "backend", "record": False})
    gpu_memory_utilization: float = field(default=0.9, metadata={
        "help": "vLLM share of GPU memory", "group": "backend", "record": False})
    seed: int = field(default=0, metadata={
        "help": "generation seed (vLLM; sampling)", "group": "backend", "phases": ("policy",)})
    max_model_len: int = field(default=4096, metadata={
        "help": "vLLM context length (the study's 4096); longer prompts are cut from the left, BOS kept, and counted "
                "in the log; 0 = the model's own", "group": "backend", "phases": ("policy",)})
    max_num_seqs: int | None = field(default=None, metadata={
        "help": "vLLM sequences per scheduler step (default: none, vLLM's own)", "group": "backend", "record": False})
    enforce_eager: bool = field(default=False, metadata={
        "help": "vLLM without CUDA graphs (the study's step 1 ran so)", "boolean_optional": True, "group": "backend",
        "record": False})


@dataclass(kw_only=True)
class ChatSettings:
    """How chat prompts are rendered."""

    date_string: str = field(default=DEFAULT_DATE_STRING, metadata={
        "help": "the date written into Llama-3 chat prompts ('Today Date: ...'), fixed so that prompts and results do "
                "not change with the calendar (the template's own fallback; the study's runs used the day they ran)",
        "group": "prompts", "phases": ("policy",)})


@dataclass(kw_only=True)
class AdapterCheckSettings:
    """Whether a LoRA adapter may go on a base other than the one it was trained for."""

    allow_base_mismatch: bool = field(default=False, metadata={
        "help": "load adapters on a base other than the one their adapter_config.json names, or whose vocabulary "
                "their tokenizer exceeds (a deliberate transfer); shapes that differ stay an error", "group": "model",
        "record": False})


#: the config fields ``aligner.lm.interface.load_lm`` hands on (each backend takes the ones it knows)
LM_FIELDS = ("dtype", "device", "batch_size", "tensor_parallel_size", "gpu_memory_utilization", "seed",
             "max_model_len", "max_num_seqs", "enforce_eager", "allow_base_mismatch", "date_string", "double_bos",
             "merge_adapter")


def lm_kwargs(cfg, **overrides) -> dict:
    """``load_lm``'s settings from a stage config: every field of ``LM_FIELDS`` the config has, then ``overrides``
    (a stage whose batch size has another name passes it here)."""
    return {**{name: getattr(cfg, name) for name in LM_FIELDS if hasattr(cfg, name)}, **overrides}


GENERATION_CONFIGS = ("greedy", "model")


@dataclass(kw_only=True)
class SamplingSettings:
    """How answers are decoded: greedy, or the model's own generation_config.json (sampling for the instruct
    models: Llama-3.2-Instruct has do_sample, temperature 0.6, top-p 0.9, and top-k 50 from transformers'
    defaults); each explicit flag overrides what the choice gives."""

    generation_config: str = field(default="greedy", metadata={
        "help": "greedy, or model: the model's generation_config.json decides (do_sample, temperature, top_p, top_k)",
        "choices": list(GENERATION_CONFIGS), "group": "generation", "phases": ("policy",)})
    do_sample: bool | None = field(default=None, metadata={
        "help": "sample (--do_sample) or decode greedily (--no-do_sample) whatever --generation_config says; "
                "unset: as it says", "boolean_optional": True, "group": "generation", "phases": ("policy",)})
    temperature: float | None = field(default=None, metadata={
        "help": "sampling temperature; a value > 0 also turns sampling on unless --no-do_sample (default: none, "
                "from --generation_config)", "group": "generation", "phases": ("policy",)})
    top_p: float | None = field(default=None, metadata={
        "help": "nucleus sampling (default: none, from --generation_config)", "group": "generation",
        "phases": ("policy",)})
    top_k: int | None = field(default=None, metadata={
        "help": "top-k sampling, 0 = off (default: none, from --generation_config)", "group": "generation",
        "phases": ("policy",)})


def resolve_sampling(cfg: SamplingSettings, model_path: str | None) -> dict:
    """``{"temperature", "top_p", "top_k"}`` for ``LM.generate_until`` (temperature 0 = greedy)."""
    do_sample, temperature, top_p, top_k = False, 1.0, 1.0, 0
    if cfg.generation_config == "model":
        from transformers import GenerationConfig

        from aligner.core.models import check_model_path

        try:
            gen = GenerationConfig.from_pretrained(check_model_path(model_path))
        except OSError:
            gen = GenerationConfig()  # the model ships none: transformers' defaults (greedy)
        # What generate() does with the values the file leaves unset: transformers' defaults (top_k 50 among them,
        # which the study's sampling therefore used).
        get_defaults = getattr(GenerationConfig, "_get_default_generation_params", None)
        defaults = get_defaults() if get_defaults else {"do_sample": False, "temperature": 1.0, "top_p": 1.0,
                                                        "top_k": 50}

        def value(name):
            v = getattr(gen, name, None)
            return defaults[name] if v is None else v

        do_sample, temperature = bool(value("do_sample")), float(value("temperature"))
        top_p, top_k = float(value("top_p")), int(value("top_k"))
    elif cfg.generation_config != "greedy":
        raise ValueError(f"--generation_config {cfg.generation_config!r}: use one of {list(GENERATION_CONFIGS)}")
    if cfg.temperature is not None:
        temperature = cfg.temperature
        do_sample = do_sample or cfg.temperature > 0
    do_sample = do_sample if cfg.do_sample is None else cfg.do_sample
    top_p = top_p if cfg.top_p is None else cfg.top_p
    top_k = top_k if cfg.top_k is None else cfg.top_k
    if do_sample and temperature <= 0:
        raise ValueError("sampling needs --temperature > 0")
    return {"temperature": temperature if do_sample else 0.0, "top_p": top_p, "top_k": top_k}
