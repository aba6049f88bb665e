"""What the two generation stages of data preparation share (the hard fakes, ``aligner.data.hard_fakes``, and
the teacher pairs, ``aligner.data.teacher``): their model, backend and sampling settings, loading the
generator, and the run fingerprint their resumable output files carry."""

from __future__ import annotations

from dataclasses import dataclass, field

from aligner.core.cli import override
from aligner.core.runner import path_identity
from aligner.data.sft import SFTView, view_fingerprint
from aligner.lm.settings import BackendSettings, ChatSettings, ModelSettings

#: the backend name a stage's counts report (``counts["backend"]``), by resolved backend; the names the
#: counts have always carried
BACKEND_LABELS = {"hf": "HFLM", "vllm": "VLLMLM"}


def _g(help: str, **more) -> dict:
    return {"help": help, "group": "generation", **more}


@dataclass(kw_only=True)
class GeneratorSettings(ModelSettings, BackendSettings, ChatSettings):
    """The instruct model that writes records, and how it samples; its output file is appended per batch."""

    # One model writes every record; adapters are not offered (the study never used them here).
    lora_path: list[str] | None = override(ModelSettings, "lora_path", None, cli=False)
    merge_adapter: bool = override(ModelSettings, "merge_adapter", False, cli=False)
    seed: int = override(BackendSettings, "seed", 42, help="sampling seed", group="generation")
    batch_size: int = field(default=16, metadata=_g("prompts per generate call"))
    max_new_tokens: int = field(default=128, metadata=_g("tokens generated per item"))
    temperature: float = field(default=0.7, metadata=_g("sampling temperature, 0 = greedy"))
    top_p: float = field(default=0.9, metadata=_g("nucleus sampling"))
    resume: bool = field(default=False, metadata=_g(
        "keep the records already in the output file and generate only the rest"))
    progress: bool = field(default=True, metadata=_g("no progress bars (default: bars on)", flag="--no_progress"))


def load_generator(cfg: GeneratorSettings):
    """(the LM for ``cfg``, the backend it runs on: hf or vllm)."""
    from aligner.lm.interface import load_lm, resolve_backend
    from aligner.lm.settings import lm_kwargs

    backend = resolve_backend(cfg.backend)
    lm = load_lm(backend, cfg.model_path, **lm_kwargs(cfg))
    return lm, backend


def generator_fingerprint(task: str, cfg: GeneratorSettings, view_cfg: SFTView, backend: str, **prompt) -> dict:
    """What a generation stage's records depend on: the model, dtype, backend, sampling, the view's input files
    and the stage's prompt settings (``prompt``).  A resumed output file must have been written with the same."""
    from aligner.core.models import resolve_dtype

    return {"task": task, "model": path_identity(cfg.model_path), "dtype": str(resolve_dtype(cfg.dtype, cfg.device)),
            "backend": backend, "seed": cfg.seed, "max_new_tokens": cfg.max_new_tokens,
            "temperature": cfg.temperature, "top_p": cfg.top_p, "date_string": cfg.date_string,
            **({"max_model_len": cfg.max_model_len} if backend == "vllm" else {}),  # vLLM cuts longer prompts
            **view_fingerprint(view_cfg), **prompt}


def sampling_seed(cfg: GeneratorSettings, first_position: int) -> int | None:
    """The seed of one generate call: the stage seed plus the view position of the call's first item (so a batch
    draws the same numbers whatever ran before it)."""
    return None if cfg.seed is None else cfg.seed + first_position
