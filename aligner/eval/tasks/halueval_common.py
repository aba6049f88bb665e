"""What both HaluEval generating flows share: the prompts, the answers, the run fingerprint, loading the generator,
and the checks every per-sample file gets (``aligner.eval.checks``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aligner.core.models import resolve_dtype
from aligner.core.runner import data_fingerprint, path_identity
from aligner.data.sft import different_question
from aligner.data.sources.halueval import resolve_data_path
from aligner.eval.checks import count_empty
from aligner.eval.metrics.registry import aggregate
from aligner.eval.tasks.halueval_config import HaluEvalGenerationConfig
from aligner.lm.interface import LM, load_lm
from aligner.lm.settings import lm_kwargs
from aligner.prompts import CONTEXT_QUESTION_TEMPLATE, halueval_messages

logger = logging.getLogger(__name__)

GREEDY = {"temperature": 0.0}


def halueval_prompts(lm: LM, rows: Sequence[dict], system: str | None = None) -> list[str]:
    """Chat-rendered prompts: one user turn "Context: ...\\n\\nQuestion: ..." (after ``system`` if given)."""
    return [lm.chat_prompt(halueval_messages(r["knowledge"], r["question"], system)) for r in rows]


def generate_answers(lm: LM, rows: Sequence[dict], max_new_tokens: int = 128, system: str | None = None,
                     progress: bool = False, sampling: dict | None = None, seed: int | None = None) -> list[str]:
    """Answers (stripped of surrounding whitespace, as the study stored them): greedy, or as ``sampling`` says
    (``aligner.lm.settings.resolve_sampling``), seeded by ``seed``."""
    outs = lm.generate_until(halueval_prompts(lm, rows, system), max_new_tokens=max_new_tokens, progress=progress,
                             seed=seed, **(sampling or GREEDY))
    return [o.strip() for o in outs]


def same_question(rec: dict, question: str) -> str | None:
    problem = different_question(rec, question)
    return f"{problem}, cannot resume" if problem else None  # the flows' wording since the study


def generation_fingerprint(cfg: HaluEvalGenerationConfig, flow: str, adapter: str | None, backend: str,
                           system: str | None = None, sampling: dict | None = None) -> dict:
    """What a generating flow's records depend on (a resumed file must have been made with the same)."""
    sampling = sampling or GREEDY
    return {"task": f"halueval/{flow}", "model": path_identity(cfg.model_path), "adapter": path_identity(adapter),
            "dtype": str(resolve_dtype(cfg.dtype, cfg.device)), "backend": backend,
            "prompt": CONTEXT_QUESTION_TEMPLATE, "system": system, "max_new_tokens": cfg.max_new_tokens,
            "date_string": cfg.date_string, "double_bos": cfg.double_bos, "sampling": sampling,
            "seed": cfg.seed if sampling.get("temperature", 0) > 0 else None,
            "max_model_len": cfg.max_model_len if backend == "vllm" else None,
            "data_sha256": data_fingerprint(resolve_data_path(cfg.data_path))}


def load_generator(cfg: HaluEvalGenerationConfig, backend: str) -> LM:
    return load_lm(backend, cfg.model_path, cfg.lora_path, **lm_kwargs(cfg))


def chunk_size(cfg: HaluEvalGenerationConfig, lm: LM) -> int:
    # Appends that are too frequent cost an fsync per few samples; the backend says what one call should hold.
    return cfg.chunk_size or max(lm.generation_chunk, 128)


def flow_metrics(records: Sequence[dict], names: Sequence[str], count: str, generated: str = "generated") -> dict:
    """The declared means, the sample count and ``n_empty`` (empty generations, kept and scored as answers)."""
    if not records:
        raise ValueError("no samples to aggregate")
    return {**aggregate(records, names), count: len(records), "n_empty": count_empty(records, generated)}


