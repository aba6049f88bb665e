"""TruthfulQA: data, exact MC1/MC2 scoring, batched greedy generation and judged truthfulness.

Definitions (issue 4; the same as lm-evaluation-harness where it defines them):

* Data: the Hugging Face ``truthful_qa`` dataset (``multiple_choice`` and ``generation`` configs, validation
  split), or a local file: the TruthfulQA CSV (mc1 = [Best Answer] + Incorrect Answers, label 1 for the first
  only; mc2 = Correct Answers + Incorrect Answers, label 1 for the correct ones; answers split on "; ", a
  trailing separator dropped), or JSON/JSONL/parquet rows in the HF schema (``question``, ``mc1_targets{choices,labels}``,
  ``mc2_targets{choices,labels}``).
* Choice score: summed log p(" {choice}" | "Q: {question}\\nA:"), the text read with the tokenizer's special
  tokens (BOS); the continuation tokens are those of the full text after the context's tokens
  (``aligner.logprobs.encode_prompt_response``).
* MC1: share of questions whose highest-scoring mc1 choice (first one on a tie, as numpy's argmax) is the
  labelled one.  MC2: mean over questions of the softmax mass of the mc2 scores on the true choices.
* Generation: greedy from "Q: {question}\\nA:", optionally cut at stop sequences; judged by
  ``aligner.judges.judge_truthfulness`` (P(true) > 0.5 counts as truthful).

Speed without changing a number: a question's identical choices (mc1 and mc2 share most of them) are scored
once, and on the Hugging Face backend all choices of a question are packed into ONE row behind a single copy
of the shared question prefix, each choice seeing the prefix and itself only (a block attention mask with
per-choice position ids restarting after the prefix).  Several questions go into one forward, up to
``mc_batch`` choices.  The result equals scoring every (context, choice) sequence on its own to float rounding.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.io import DataError, ResumableJsonlWriter
from aligner.core.runinfo import PhaseTimer
from aligner.data.sources.truthfulqa import HF_DATASET, GenItem, MCItem, load_truthfulqa, read_generations
from aligner.eval.hf import HFLM
from aligner.eval.lm import LM, release_lm
from aligner.eval.metrics.judges import judge_truthfulness
from aligner.eval.metrics.mc import mc1_hit, mc2_mass
from aligner.prompts import truthfulqa_choice, truthfulqa_prompt

logger = logging.getLogger(__name__)

VLLM_CHUNK = 512  # prompts per vLLM generate call between saves


class EvalConfigError(ValueError):
    """Flags that cannot work together; the message says which."""


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# MC metrics (pure functions of the scores)
# ---------------------------------------------------------------------------------------------


@dataclass
class MCResult:
    index: int
    question: str
    mc1_choices: list[str]
    mc1_labels: list[int]
    mc1_scores: list[float]
    mc2_choices: list[str]
    mc2_labels: list[int]
    mc2_scores: list[float]
    mc1_hit: bool = field(init=False)
    mc2_mass: float = field(init=False)

    def __post_init__(self):
        self.mc1_hit = mc1_hit(self.mc1_scores, self.mc1_labels)
        self.mc2_mass = mc2_mass(self.mc2_scores, self.mc2_labels)

    def record(self) -> dict:
        return {"index": self.index, "question": self.question, "mc1_hit": self.mc1_hit, "mc2_mass": self.mc2_mass,
                "mc1_choices": self.mc1_choices, "mc1_labels": self.mc1_labels, "mc1_scores": self.mc1_scores,
                "mc2_choices": self.mc2_choices, "mc2_labels": self.mc2_labels, "mc2_scores": self.mc2_scores}


def mc_metrics(records: Sequence[dict]) -> dict:
    n = len(records)
    if not n:
        return {"mc1": None, "mc2": None, "n_mc_questions": 0}
    return {"mc1": sum(bool(r["mc1_hit"]) for r in records) / n,
            "mc2": sum(float(r["mc2_mass"]) for r in records) / n, "n_mc_questions": n}


# ---------------------------------------------------------------------------------------------
# MC scoring
# ---------------------------------------------------------------------------------------------

def unique_choices(item: MCItem) -> list[str]:
    """mc1 and mc2 choices without repeats, first-seen order (mc2 repeats most of mc1)."""
    return list(dict.fromkeys([*item.mc1_choices, *item.mc2_choices]))


def score_mc(lm: LM, items: Sequence[MCItem], progress: bool = False) -> list[MCResult]:
    """Score every mc1/mc2 choice of ``items`` (each distinct choice once) and return per-question results."""
    uniq = [unique_choices(it) for it in items]
    groups = [(truthfulqa_prompt(it.question), [truthfulqa_choice(c) for c in u]) for it, u in zip(items, uniq)]
    scores = lm.loglikelihood_groups(groups, progress=progress, desc="MC scoring")
    results = []
    for it, u, s in zip(items, uniq, scores):
        by_choice = dict(zip(u, s))
        results.append(MCResult(index=it.index, question=it.question,
                                mc1_choices=it.mc1_choices, mc1_labels=it.mc1_labels,
                                mc1_scores=[by_choice[c] for c in it.mc1_choices],
                                mc2_choices=it.mc2_choices, mc2_labels=it.mc2_labels,
                                mc2_scores=[by_choice[c] for c in it.mc2_choices]))
    return results


def chunk_by_choices(items: Sequence[MCItem], choices_per_chunk: int) -> list[list[MCItem]]:
    """Consecutive questions holding about ``choices_per_chunk`` distinct choices (at least one question)."""
    chunks, cur, n = [], [], 0
    for it in items:
        k = len(unique_choices(it))
        if cur and n + k > choices_per_chunk:
            chunks.append(cur)
            cur, n = [], 0
        cur.append(it)
        n += k
    if cur:
        chunks.append(cur)
    return chunks


# ---------------------------------------------------------------------------------------------
# resumable phases
# ---------------------------------------------------------------------------------------------

def check_resumed(writer: ResumableJsonlWriter, questions: dict[int, str]) -> None:
    """A resumed file must have been written for the same questions; otherwise its numbers would mix."""
    for rec in writer.records:
        idx = rec.get("index")
        if idx in questions and rec.get("question") != questions[idx]:
            raise DataError(writer.path, f"record for question {idx} holds a different question "
                                         f"({str(rec.get('question'))[:60]!r}); it was written for other data. "
                                         f"Delete it or run without --resume")


def _records_for(writer: ResumableJsonlWriter, indices: Sequence[int]) -> list[dict]:
    by_index = {r["index"]: r for r in writer.records}
    return [by_index[i] for i in indices if i in by_index]


def run_mc(lm: LM, items: Sequence[MCItem], path: str | os.PathLike, resume: bool = False, mc_batch: int = 64,
           forwards_per_save: int = 4, progress: bool = True) -> list[dict]:
    """Score ``items``, appending one record per question to ``path`` as chunks finish; with ``resume``
    questions already in the file are skipped.  Returns the records of ``items`` in order."""
    from tqdm.auto import tqdm

    with ResumableJsonlWriter(path, key="index", resume=resume) as writer:
        check_resumed(writer, {it.index: it.question for it in items})
        todo = [it for it in items if it.index not in writer.done]
        if len(todo) < len(items):
            logger.info("%s: %d of %d questions already scored, resuming", path, len(items) - len(todo), len(items))
        bar = tqdm(total=len(todo), desc="MC scoring", disable=not progress, unit="question")
        for chunk in chunk_by_choices(todo, max(1, mc_batch) * max(1, forwards_per_save)):
            for res in score_mc(lm, chunk):
                writer.append(res.record())
            bar.update(len(chunk))
        bar.close()
        return _records_for(writer, [it.index for it in items])


def run_generation(lm: LM, items: Sequence[GenItem], path: str | os.PathLike, resume: bool = False,
                   max_new_tokens: int = 128, stop: Sequence[str] | None = None,
                   progress: bool = True) -> list[dict]:
    """Greedy answers for ``items``, one record {index, question, generated} per question appended per batch."""
    from tqdm.auto import tqdm

    with ResumableJsonlWriter(path, key="index", resume=resume) as writer:
        check_resumed(writer, {it.index: it.question for it in items})
        todo = [it for it in items if it.index not in writer.done]
        if len(todo) < len(items):
            logger.info("%s: %d of %d answers already generated, resuming", path, len(items) - len(todo), len(items))
        # HF: one generate call per batch, saved as it goes; vLLM schedules its own batches, so it gets
        # large chunks (still saved between them).
        step = lm.generation_chunk
        bar = tqdm(total=len(todo), desc="generation", disable=not progress, unit="question")
        for lo in range(0, len(todo), step):
            chunk = todo[lo: lo + step]
            answers = lm.generate_until([truthfulqa_prompt(it.question) for it in chunk],
                                        max_new_tokens=max_new_tokens, stop=stop, temperature=0.0, progress=False)
            writer.extend({"index": it.index, "question": it.question, "generated": a}
                          for it, a in zip(chunk, answers))
            bar.update(len(chunk))
        bar.close()
        return _records_for(writer, [it.index for it in items])


def run_judge(judge: LM, generations: Sequence[dict], path: str | os.PathLike, resume: bool = False,
              answers_per_save: int = 64, progress: bool = True, judge_fn: Callable | None = None) -> list[dict]:
    """Judge ``generations`` (records with index, question, generated); appends the detailed records."""
    from tqdm.auto import tqdm

    judge_fn = judge_fn or judge_truthfulness
    with ResumableJsonlWriter(path, key="index", resume=resume) as writer:
        check_resumed(writer, {g["index"]: g["question"] for g in generations})
        todo = [g for g in generations if g["index"] not in writer.done]
        if len(todo) < len(generations):
            logger.info("%s: %d of %d answers already judged, resuming", path, len(generations) - len(todo),
                        len(generations))
        bar = tqdm(total=len(todo), desc="judging", disable=not progress, unit="answer")
        for lo in range(0, len(todo), max(1, answers_per_save)):
            chunk = todo[lo: lo + answers_per_save]
            verdicts = judge_fn(judge, [g["question"] for g in chunk], [g["generated"] for g in chunk],
                                progress=False)
            writer.extend({"index": g["index"], "question": g["question"], "generated": g["generated"],
                           "truth_prob": v.truth_prob, "is_truthful": v.is_truthful, "logp_yes": v.logp_yes,
                           "logp_no": v.logp_no} for g, v in zip(chunk, verdicts))
            bar.update(len(chunk))
        bar.close()
        return _records_for(writer, [g["index"] for g in generations])


def gen_metrics(records: Sequence[dict]) -> dict:
    n = len(records)
    if not n:
        return {"gen_truthfulness": None, "gen_avg_prob": None, "n_gen_questions": 0}
    return {"gen_truthfulness": sum(bool(r["is_truthful"]) for r in records) / n,
            "gen_avg_prob": sum(float(r["truth_prob"]) for r in records) / n, "n_gen_questions": n}


# ---------------------------------------------------------------------------------------------
# outputs and memory
# ---------------------------------------------------------------------------------------------

@dataclass
class OutputPaths:
    metrics: Path
    detailed_mc: Path
    generations: Path
    detailed_gen: Path


def output_paths(output_dir: str | os.PathLike, run_name: str, adapter: str | None = None) -> OutputPaths:
    """File names of a run; ``adapter`` (several adapters in one run) is appended to the run name."""
    tag = run_name if adapter is None else f"{run_name}_{adapter}"
    d = Path(output_dir)
    return OutputPaths(metrics=d / f"metrics_{tag}.json", detailed_mc=d / f"detailed_mc_{tag}.jsonl",
                       generations=d / f"generations_{tag}.jsonl", detailed_gen=d / f"detailed_gen_{tag}.jsonl")


# ---------------------------------------------------------------------------------------------
# the whole evaluation (evaluation/eval_truthfulqa.py is its command line)
# ---------------------------------------------------------------------------------------------

@dataclass
class TruthfulQAEvalConfig:
    run_name: str
    output_dir: str = "evaluation/results/TruthfulQA"
    model_path: str | None = None
    lora_path: list[str] | str | None = None
    judge_model_path: str | None = None
    data_path: str | None = None
    hf_dataset: str = HF_DATASET
    limit: int = -1
    mc_batch: int = 64
    share_prefix: bool = True
    gen_batch_size: int = 32
    max_new_tokens: int = 128
    stop_sequences: list[str] | None = None
    judge_batch_size: int = 32
    backend: str = "auto"
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85
    dtype: str = "auto"
    device: str = "auto"
    seed: int = 0
    skip_mc: bool = False
    skip_generation: bool = False
    judge_only: str | None = None
    resume: bool = False
    progress: bool = True


def _resolve_backend(backend: str) -> str:
    from aligner.eval.lm import vllm_available

    if backend == "auto":
        return "vllm" if vllm_available() else "hf"
    if backend not in ("hf", "vllm"):
        raise EvalConfigError(f"unknown backend {backend!r}; use hf, vllm or auto")
    return backend


def _carried_metrics(path: Path, keys: Sequence[str]) -> dict:
    """Fields of phases not run now, taken from an earlier metrics file of the same run (logged)."""
    if not path.is_file():
        return {}
    from aligner.core.io import read_json

    old = read_json(path)
    kept = {k: old[k] for k in keys if k in old}
    if kept:
        logger.info("%s: keeping %s from the earlier run", path, ", ".join(sorted(kept)))
    return kept


MC_KEYS = ("mc1", "mc2", "n_mc_questions")
GEN_KEYS = ("gen_truthfulness", "gen_avg_prob", "n_gen_questions")


def write_metrics(path: Path, base: dict, mc: dict | None, gen: dict | None, seconds: dict) -> dict:
    """metrics_R.json: the study's fields (model, lora, mc1, mc2, gen_truthfulness, gen_avg_prob) and more.
    A phase not run in this invocation keeps its numbers from an earlier file of the same run, else null."""
    from aligner.core.io import write_json_atomic

    carried = _carried_metrics(path, (MC_KEYS if mc is None else ()) + (GEN_KEYS if gen is None else ()))
    mc = mc if mc is not None else {k: carried.get(k) for k in MC_KEYS}
    gen = gen if gen is not None else {k: carried.get(k) for k in GEN_KEYS}
    metrics = {**base, "mc1": mc["mc1"], "mc2": mc["mc2"], "gen_truthfulness": gen["gen_truthfulness"],
               "gen_avg_prob": gen["gen_avg_prob"],
               "n_questions": max(mc["n_mc_questions"] or 0, gen["n_gen_questions"] or 0),
               "n_mc_questions": mc["n_mc_questions"], "n_gen_questions": gen["n_gen_questions"],
               "seconds": seconds}
    write_json_atomic(path, metrics)
    return metrics


def _load_policy(cfg: TruthfulQAEvalConfig, backend: str) -> LM:
    from aligner.eval.lm import load_lm

    return load_lm(backend, cfg.model_path, cfg.lora_path, dtype=cfg.dtype, device=cfg.device,
                   batch_size=cfg.mc_batch, gen_batch_size=cfg.gen_batch_size, share_prefix=cfg.share_prefix,
                   tensor_parallel_size=cfg.tensor_parallel_size,
                   gpu_memory_utilization=cfg.gpu_memory_utilization, seed=cfg.seed)


def _load_judge(cfg: TruthfulQAEvalConfig) -> LM:
    # The judge reads two short continuations per answer: the exact HF log-likelihood path is used on
    # every backend, and only after the policy has been released (a 7B judge beside a 3B policy would
    # not fit every card).
    return HFLM(cfg.judge_model_path, dtype=cfg.dtype, device=cfg.device, batch_size=cfg.judge_batch_size)


def _check_adapter(expected: str, loaded: str | None) -> None:
    # File names are fixed before the model loads; the backend must have named the adapter the same way.
    if (loaded or "base") != expected:
        raise RuntimeError(f"adapter order mismatch: expected {expected!r}, the backend has {loaded!r}")


def run_truthfulqa_eval(cfg: TruthfulQAEvalConfig) -> dict[str, dict]:
    """MC1/MC2 and judged generation for the base model and/or each adapter; returns metrics per adapter.

    Order (one model in memory at a time): the policy with every adapter for MC (HF backend, exact), the
    policy for generation (the same HF model, or vLLM when the backend is vllm), then the judge over all
    answers.  Per-sample files are appended as work is done; ``resume`` skips what is on disk.
    """
    from aligner.core.models import adapter_name, parse_adapter_paths

    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.judge_only:
        return {"judge_only": _judge_only(cfg)}
    if not cfg.model_path:
        raise EvalConfigError("--model_path is required (unless --judge_only)")
    adapter_paths = parse_adapter_paths(cfg.lora_path)
    if cfg.skip_mc and cfg.skip_generation:
        raise EvalConfigError("--skip_mc and --skip_generation together leave nothing to do")
    names: list[str] = []  # as the backends name them: the folder name, made unique; "base" for none
    for p in adapter_paths:
        names.append(adapter_name(p, [n for n in names if n != "base"]))
    several = len(adapter_paths) > 1
    paths = {n: output_paths(out_dir, cfg.run_name, n if several else None) for n in names}
    do_judge = not cfg.skip_generation and bool(cfg.judge_model_path)
    if not cfg.skip_generation and not cfg.judge_model_path:
        logger.warning("no --judge_model_path: answers are generated but not judged; judge them later with "
                       "--judge_only <generations file>")

    data = load_truthfulqa(cfg.data_path, cfg.limit, need_mc=not cfg.skip_mc, need_gen=not cfg.skip_generation,
                           hf_name=cfg.hf_dataset)
    gen_backend = _resolve_backend(cfg.backend)
    timer = {n: PhaseTimer() for n in names}
    shared = PhaseTimer()
    mc_metrics_by, generations_by, gen_metrics_by = {}, {}, {}

    lm = None
    try:
        if not cfg.skip_mc:
            with shared("load_model"):
                lm = _load_policy(cfg, "hf")
            for name, lm_name in zip(names, lm.adapter_names, strict=True):
                _check_adapter(name, lm_name)
                lm.set_adapter(lm_name)
                logger.info("MC scoring: %s, %d questions", name, len(data.mc))
                with timer[name]("mc"):
                    recs = run_mc(lm, data.mc, paths[name].detailed_mc, resume=cfg.resume, mc_batch=cfg.mc_batch,
                                  progress=cfg.progress)
                mc_metrics_by[name] = mc_metrics(recs)
                logger.info("%s: MC1 %.4f  MC2 %.4f", name, mc_metrics_by[name]["mc1"], mc_metrics_by[name]["mc2"])
        if not cfg.skip_generation:
            if lm is not None and gen_backend != "hf":
                release_lm(lm)
                lm = None
            if lm is None:
                with shared("load_generation_model"):
                    lm = _load_policy(cfg, gen_backend)
            for name, lm_name in zip(names, lm.adapter_names, strict=True):
                _check_adapter(name, lm_name)
                lm.set_adapter(lm_name)
                logger.info("generation: %s, %d questions (%s)", name, len(data.gen), gen_backend)
                with timer[name]("generation"):
                    generations_by[name] = run_generation(
                        lm, data.gen, paths[name].generations, resume=cfg.resume, max_new_tokens=cfg.max_new_tokens,
                        stop=cfg.stop_sequences, progress=cfg.progress)
    finally:
        release_lm(lm)
        lm = None

    def base_fields(name: str, path: str | None) -> dict:
        return {"model": cfg.model_path, "lora": path, "adapter": name, "run_name": cfg.run_name,
                "judge_model": cfg.judge_model_path, "data": data.source, "backend": gen_backend}

    # Metrics now, so nothing is lost if the judge fails.  Fresh answers not judged yet have no numbers
    # (an earlier file's would describe other answers); a phase skipped now keeps the earlier file's.
    results = {}
    for name, p in zip(names, adapter_paths):
        unjudged = None if cfg.skip_generation else {"gen_truthfulness": None, "gen_avg_prob": None,
                                                     "n_gen_questions": len(generations_by[name])}
        results[name] = write_metrics(paths[name].metrics, base_fields(name, p), mc_metrics_by.get(name), unjudged,
                                      {**shared.seconds, **timer[name].seconds})
    if do_judge:
        judge = None
        try:
            with shared("load_judge"):
                judge = _load_judge(cfg)
            for name in names:
                with timer[name]("judge"):
                    recs = run_judge(judge, generations_by[name], paths[name].detailed_gen, resume=cfg.resume,
                                     answers_per_save=max(1, cfg.judge_batch_size), progress=cfg.progress)
                gen_metrics_by[name] = gen_metrics(recs)
        finally:
            release_lm(judge)
        for name, p in zip(names, adapter_paths):
            results[name] = write_metrics(paths[name].metrics, base_fields(name, p), mc_metrics_by.get(name),
                                          gen_metrics_by[name], {**shared.seconds, **timer[name].seconds})
    for name in names:
        logger.info("%s -> %s", name, paths[name].metrics)
    return results


def _judge_only(cfg: TruthfulQAEvalConfig) -> dict:
    if not cfg.judge_model_path:
        raise EvalConfigError("--judge_only needs --judge_model_path")
    paths = output_paths(cfg.output_dir, cfg.run_name)
    src = Path(cfg.judge_only)
    if src.resolve() == paths.detailed_gen.resolve():
        raise EvalConfigError(f"--judge_only reads {src}, which is the file this run would write; "
                         f"pass another --run_name (or the generations_*.jsonl file)")
    generations = read_generations(src)
    if cfg.limit is not None and cfg.limit >= 0:
        generations = generations[: cfg.limit]
    timer = PhaseTimer()
    judge = None
    try:
        with timer("load_judge"):
            judge = _load_judge(cfg)
        with timer("judge"):
            recs = run_judge(judge, generations, paths.detailed_gen, resume=cfg.resume,
                             answers_per_save=max(1, cfg.judge_batch_size), progress=cfg.progress)
    finally:
        release_lm(judge)
    base = {"model": cfg.model_path, "lora": None, "adapter": None, "run_name": cfg.run_name,
            "judge_model": cfg.judge_model_path, "data": str(src), "backend": None}
    base.update(_carried_metrics(paths.metrics, ("model", "lora", "adapter", "backend")) if not cfg.model_path else {})
    return write_metrics(paths.metrics, base, None, gen_metrics(recs), timer.seconds)
