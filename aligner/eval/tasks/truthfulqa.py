"""TruthfulQA: exact MC1/MC2 scoring, greedy generation and judged truthfulness.

Definitions (the same as lm-evaluation-harness where it defines them):

* Choice score: summed log p(" {choice}" | "Q: {question}\\nA:"), the text read with the tokenizer's special
  tokens (BOS); the continuation tokens are those of the full text after the context's tokens
  (``aligner.core.logprobs.encode_prompt_response``).
* MC1: share of questions whose highest-scoring mc1 choice (first one on a tie, as numpy's argmax) is the
  labelled one.  MC2: mean over questions of the softmax mass of the mc2 scores on the true choices
  (``aligner.eval.metrics.mc``).
* Generation: greedy from "Q: {question}\\nA:", optionally cut at stop sequences; judged by
  ``aligner.eval.metrics.judges.judge_truthfulness`` (P(true) > 0.5 counts as truthful).

A question's identical choices (mc1 and mc2 share most of them) are scored once, as one group of
continuations of the question (``LM.loglikelihood_groups``, which the HF backend packs behind one copy of the
question).  Data comes from ``aligner.data.sources.truthfulqa``; per-sample files are written and resumed by
``aligner.core.runner``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.cli import override
from aligner.core.fidelity import StudyCompat
from aligner.core.io import read_json, write_json_atomic
from aligner.core.models import adapter_name, parse_adapter_paths, resolve_dtype
from aligner.core.paths import result_file, run_tag
from aligner.core.runinfo import PhaseTimer, setup_logging, write_run_config
from aligner.core.runner import data_fingerprint, path_identity, refuse_to_overwrite, run_per_sample
from aligner.data.sources.truthfulqa import (
    HF_DATASET,
    GenItem,
    MCItem,
    TruthfulQAData,
    load_truthfulqa,
    read_generations,
)
from aligner.eval.checks import OverwriteSettings, all_rows, count_empty, require_finite
from aligner.eval.metrics.judges import JUDGE_CONTINUATIONS, judge_truthfulness
from aligner.eval.metrics.registry import aggregate
from aligner.eval.tasks.truthfulqa_mc import (  # noqa: F401  (re-exported)
    MC_INPUTS,
    MCResult,
    chunk_by_choices,
    mc_metrics,
    score_mc,
    unique_choices,
)
from aligner.lm.interface import LM, load_lm, release_lm, resolve_backend
from aligner.lm.settings import AdapterCheckSettings, BackendSettings, ModelSettings, lm_kwargs
from aligner.prompts import (
    TRUTHFULQA_JUDGE_TEMPLATE,
    TRUTHFULQA_PROMPT_STYLES,
    TRUTHFULQA_QA_TEMPLATE,
    truthfulqa_mc_template,
    truthfulqa_prompt,
)

logger = logging.getLogger(__name__)

MC_KEYS = ("mc1", "mc2", "n_mc_questions")
GEN_KEYS = ("gen_truthfulness", "gen_avg_prob", "n_gen_questions", "n_empty")
#: the judge's scores every detailed_gen record must have finite
JUDGE_SCORES = ("truth_prob", "logp_yes", "logp_no")


def decode_escapes(text: str) -> str:
    """Shells pass '\\n' literally; stop sequences such as '\\nQ:' mean a newline."""
    return text.replace("\\n", "\n").replace("\\t", "\t")


@dataclass(kw_only=True)
class TruthfulQAEvalConfig(ModelSettings, BackendSettings, AdapterCheckSettings, StudyCompat, OverwriteSettings):
    run_name: str = field(metadata={"help": "name used in every output file name"})
    model_path: str | None = override(ModelSettings, "model_path", None,
                                      help="policy model folder or hub id (required unless --judge_only)")
    judge_model_path: str | None = field(default=None, metadata={
        "help": "truth judge (allenai/truthfulqa-truth-judge-llama2-7B style causal LM); without it answers are "
                "generated but not judged", "group": "model"})
    output_dir: str = field(default="evaluation/results/TruthfulQA", metadata={"help": "where outputs go"})
    data_path: str | None = field(default=None, metadata={
        "help": "local data instead of the Hugging Face dataset: the TruthfulQA CSV, or JSON/JSONL/parquet rows in "
                "the HF schema (question, mc1_targets, mc2_targets) (default: none = hub)"})
    hf_dataset: str = field(default=HF_DATASET, metadata={
        "help": "hub dataset with the multiple_choice and generation configs"})
    limit: int = field(default=-1, metadata={"help": "first N questions; 0 or -1 = all (as the study)"})
    mc_inputs: str = field(default="continuation", metadata={
        "choices": list(MC_INPUTS), "group": "fidelity",
        "help": "MC tokens: continuation = the context with BOS, the choice's tokens those after the context's; "
                "study = the study's inputs: build_inputs_with_special_tokens (no BOS for Llama-3's tokenizer), the "
                "span found by searching the choice's standalone tokens (on with --study_compat)"})
    judge_continuation: str = field(default="study", metadata={
        "choices": list(JUDGE_CONTINUATIONS), "group": "fidelity",
        "help": "how the judge's ' yes'/' no' are tokenised: study = alone, appended to the prompt's ids, as the "
                "study (transformers 4 on the Llama-2 judge: '▁' then '▁yes', the form the judge puts its mass "
                "on); in_context = within the whole text ('▁yes')"})
    mc_batch: int = field(default=64, metadata={"help": "MC choices scored per forward pass, across questions"})
    prompt_style: str = field(default="study", metadata={
        "choices": list(TRUTHFULQA_PROMPT_STYLES),
        "help": "MC context: study = the study's 0-shot 'Q: ...\\nA:'; lm_eval = lm-evaluation-harness's "
                "truthfulqa_mc1/mc2 prompt (the TruthfulQA paper's 6-shot QA preamble, then the same), the one "
                "comparable with leaderboard numbers. Generation always uses the study's prompt"})
    share_prefix: bool = field(default=True, metadata={
        "flag": "--no_share_prefix", "help": "score every (question, choice) as its own sequence instead of packing "
                                             "a question's choices behind one copy of its prefix (same numbers; "
                                             "default: off)"})
    gen_batch_size: int = field(default=32, metadata={"help": "prompts per generate call, left padded (HF backend)"})
    max_new_tokens: int = field(default=128, metadata={"help": "greedy answer length"})
    stop_sequences: list[str] | None = field(default=None, metadata={
        "help": "cut answers at these strings; '\\n' is a newline, e.g. --stop_sequences '\\nQ:' (default: none, as "
                "the study)", "nargs": "*"})
    judge_batch_size: int = field(default=32, metadata={"help": "judge sequences per forward (two per answer)"})
    backend: str = override(BackendSettings, "backend", "auto",
                            help="generation backend; auto = vLLM when installed with a GPU. MC log-likelihoods and "
                                 "the judge always use the exact HF path")
    gpu_memory_utilization: float = override(BackendSettings, "gpu_memory_utilization", 0.85)
    seed: int = override(BackendSettings, "seed", 0, help="vLLM seed (greedy decoding)")
    skip_mc: bool = field(default=False, metadata={"help": "no MC scoring"})
    skip_generation: bool = field(default=False, metadata={"help": "no generation and no judging"})
    judge_only: str | None = field(default=None, metadata={
        "metavar": "DETAILED.jsonl",
        "help": "only judge the answers in this JSONL (question, generated), e.g. generations_R.jsonl of an earlier "
                "run; writes detailed_gen_R.jsonl and gen fields of metrics_R.json"})
    resume: bool = field(default=False, metadata={
        "help": "keep per-sample files already written and skip the questions they hold (without it an existing "
                "file needs --overwrite)"})
    progress: bool = field(default=True, metadata={"flag": "--no_progress", "help": "no progress bars"})

    def __post_init__(self):
        if not self.judge_only and not self.model_path:
            raise ValueError("--model_path is required (unless --judge_only)")
        if self.skip_mc and self.skip_generation:
            raise ValueError("--skip_mc and --skip_generation together leave nothing to do")
        if self.judge_only and not self.judge_model_path:
            raise ValueError("--judge_only needs --judge_model_path")
        self.limit = all_rows(self.limit)
        if self.study_compat:
            self.mc_inputs = "study"
        if self.stop_sequences:
            self.stop_sequences = [decode_escapes(s) for s in self.stop_sequences]


# ---------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------

def gen_metrics(records: Sequence[dict]) -> dict:
    return {**aggregate(records, ("gen_truthfulness", "gen_avg_prob")), "n_gen_questions": len(records),
            "n_empty": count_empty(records)}


# ---------------------------------------------------------------------------------------------
# resumable phases
# ---------------------------------------------------------------------------------------------

def _same_question(rec: dict, question: str) -> str | None:
    if rec.get("question") != question:
        return f"holds a different question ({str(rec.get('question'))[:60]!r})"
    return None


def run_mc(lm: LM, items: Sequence[MCItem], path: str | os.PathLike, resume: bool = False, mc_batch: int = 64,
           forwards_per_save: int = 4, progress: bool = True, fingerprint: dict | None = None,
           prompt_style: str = "study", mc_inputs: str = "continuation") -> list[dict]:
    """Score ``items``, appending one record per question to ``path`` as chunks finish; with ``resume``
    questions already in the file are skipped.  Returns the records of ``items`` in order.  A non-finite
    choice score stops the run (an argmax over a NaN depends on the choices' order)."""
    per_chunk = max(1, mc_batch) * max(1, forwards_per_save)

    def make(chunk: list[MCItem]) -> list[dict]:
        records = [r.record() for r in score_mc(lm, chunk, prompt_style=prompt_style, mc_inputs=mc_inputs)]
        require_finite(records, ("mc1_scores", "mc2_scores"), f"{path}")
        return records

    return run_per_sample(path, items, make,
                          key_of=lambda it: it.index, chunk=lambda todo: chunk_by_choices(todo, per_chunk),
                          resume=resume, fingerprint=fingerprint, check=lambda r, it: _same_question(r, it.question),
                          desc="MC scoring", unit="question", progress=progress)


def run_generation(lm: LM, items: Sequence[GenItem], path: str | os.PathLike, resume: bool = False,
                   max_new_tokens: int = 128, stop: Sequence[str] | None = None, progress: bool = True,
                   fingerprint: dict | None = None) -> list[dict]:
    """Greedy answers for ``items``, one record {index, question, generated} per question, saved per chunk."""
    def make(chunk: list[GenItem]) -> list[dict]:
        answers = lm.generate_until([truthfulqa_prompt(it.question) for it in chunk], max_new_tokens=max_new_tokens,
                                    stop=stop, temperature=0.0, progress=False)
        return [{"index": it.index, "question": it.question, "generated": a} for it, a in zip(chunk, answers)]

    return run_per_sample(path, items, make, key_of=lambda it: it.index, chunk=lm.generation_chunk, resume=resume,
                          fingerprint=fingerprint, check=lambda r, it: _same_question(r, it.question),
                          desc="generation", unit="question", progress=progress)


def _same_answer(rec: dict, g: dict) -> str | None:
    problem = _same_question(rec, g["question"])
    if problem is None and rec.get("generated") != g["generated"]:
        problem = f"judges another answer ({str(rec.get('generated'))[:60]!r}) than the one to judge now"
    return problem


def run_judge(judge: LM, generations: Sequence[dict], path: str | os.PathLike, resume: bool = False,
              answers_per_save: int = 64, progress: bool = True, judge_fn: Callable | None = None,
              fingerprint: dict | None = None, continuation: str = "study") -> list[dict]:
    """Judge ``generations`` (records with index, question, generated); appends the detailed records (empty
    answers included: they are judged as answers).  A non-finite judge score stops the run."""
    def make(chunk: list[dict]) -> list[dict]:
        questions, answers = [g["question"] for g in chunk], [g["generated"] for g in chunk]
        if judge_fn is None:
            verdicts = judge_truthfulness(judge, questions, answers, progress=False, continuation=continuation)
        else:
            verdicts = judge_fn(judge, questions, answers, progress=False)
        records = [{"index": g["index"], "question": g["question"], "generated": g["generated"],
                    "truth_prob": v.truth_prob, "is_truthful": v.is_truthful, "logp_yes": v.logp_yes,
                    "logp_no": v.logp_no} for g, v in zip(chunk, verdicts)]
        require_finite(records, JUDGE_SCORES, f"{path}")
        return records

    return run_per_sample(path, generations, make, key_of=lambda g: g["index"], chunk=max(1, answers_per_save),
                          resume=resume, fingerprint=fingerprint, check=_same_answer, desc="judging", unit="answer",
                          progress=progress)


# ---------------------------------------------------------------------------------------------
# the whole evaluation (evaluation/eval_truthfulqa.py is its command line)
# ---------------------------------------------------------------------------------------------

def _carried_metrics(path: Path, keys: Sequence[str]) -> dict:
    """Fields of phases not run now, taken from an earlier metrics file of the same run (logged)."""
    if not path.is_file():
        return {}
    old = read_json(path)
    kept = {k: old[k] for k in keys if k in old}
    if kept:
        logger.info("%s: keeping %s from the earlier run", path, ", ".join(sorted(kept)))
    return kept


def write_metrics(path: Path, base: dict, mc: dict | None, gen: dict | None, seconds: dict) -> dict:
    """metrics_R.json: the study's fields (model, lora, mc1, mc2, gen_truthfulness, gen_avg_prob) and more.
    A phase not run in this invocation keeps its numbers from an earlier file of the same run, else null."""
    carried = _carried_metrics(path, (MC_KEYS if mc is None else ()) + (GEN_KEYS if gen is None else ()))
    mc = mc if mc is not None else {k: carried.get(k) for k in MC_KEYS}
    gen = gen if gen is not None else {k: carried.get(k) for k in GEN_KEYS}
    metrics = {**base, "mc1": mc["mc1"], "mc2": mc["mc2"], "gen_truthfulness": gen["gen_truthfulness"],
               "gen_avg_prob": gen["gen_avg_prob"],
               "n_questions": max(mc["n_mc_questions"] or 0, gen["n_gen_questions"] or 0),
               "n_mc_questions": mc["n_mc_questions"], "n_gen_questions": gen["n_gen_questions"],
               "n_empty": gen.get("n_empty"),
               "seconds": seconds}
    write_json_atomic(path, metrics)
    return metrics


def _fingerprint(cfg: TruthfulQAEvalConfig, phase: str, adapter: str | None, data: TruthfulQAData | None,
                 backend: str = "hf") -> dict:
    """What a phase's per-sample records depend on (a resumed file must have been made with the same)."""
    fp = {"task": f"truthfulqa/{phase}", "dtype": str(resolve_dtype(cfg.dtype, cfg.device))}
    if phase == "judge":
        return {**fp, "judge_model": path_identity(cfg.judge_model_path), "prompt": TRUTHFULQA_JUDGE_TEMPLATE,
                "judge_continuation": cfg.judge_continuation}
    fp.update(model=path_identity(cfg.model_path), adapter=path_identity(adapter), prompt=TRUTHFULQA_QA_TEMPLATE,
              data=data.source if data is not None else None, data_sha256=data_fingerprint(cfg.data_path))
    if phase == "generation":
        fp.update(backend=backend, max_new_tokens=cfg.max_new_tokens, stop=cfg.stop_sequences)
    if phase == "mc":
        fp.update(prompt=truthfulqa_mc_template(cfg.prompt_style))  # the study's style keeps the old fingerprint
        if cfg.mc_inputs != "continuation":
            fp.update(mc_inputs=cfg.mc_inputs)
    return fp


def _load_policy(cfg: TruthfulQAEvalConfig, backend: str) -> LM:
    return load_lm(backend, cfg.model_path, cfg.lora_path, **lm_kwargs(
        cfg, batch_size=cfg.mc_batch, gen_batch_size=cfg.gen_batch_size, share_prefix=cfg.share_prefix))


def _load_judge(cfg: TruthfulQAEvalConfig) -> LM:
    # The judge reads two short continuations per answer: the exact HF log-likelihood path is used on
    # every backend, and only after the policy has been released (a 7B judge beside a 3B policy would
    # not fit every card).
    return load_lm("hf", cfg.judge_model_path, dtype=cfg.dtype, device=cfg.device, batch_size=cfg.judge_batch_size)


def _check_adapter(expected: str, loaded: str | None) -> None:
    # File names are fixed before the model loads; the backend must have named the adapter the same way.
    if (loaded or "base") != expected:
        raise RuntimeError(f"adapter order mismatch: expected {expected!r}, the backend has {loaded!r}")


@dataclass
class _Run:
    """One invocation: its adapters (as the backends name them), their file tags, the data, the timers."""

    cfg: TruthfulQAEvalConfig
    names: list[str]
    paths: list[str | None]
    tags: dict[str, str]
    data: TruthfulQAData
    backend: str
    timer: dict[str, PhaseTimer]
    shared: PhaseTimer = field(default_factory=PhaseTimer)

    def file(self, kind: str, name: str) -> Path:
        return result_file(self.cfg.output_dir, kind, self.tags[name])

    def seconds(self, name: str) -> dict:
        return {**self.shared.seconds, **self.timer[name].seconds}

    def base_fields(self, name: str, path: str | None) -> dict:
        return {"model": self.cfg.model_path, "lora": path, "adapter": name, "run_name": self.cfg.run_name,
                "judge_model": self.cfg.judge_model_path, "data": self.data.source, "backend": self.backend,
                "prompt_style": self.cfg.prompt_style, "mc_inputs": self.cfg.mc_inputs,
                "judge_continuation": self.cfg.judge_continuation}


def _start(cfg: TruthfulQAEvalConfig) -> _Run:
    adapter_paths = parse_adapter_paths(cfg.lora_path)
    names: list[str] = []  # the folder name, made unique; "base" for none
    for p in adapter_paths:
        names.append(adapter_name(p, [n for n in names if n != "base"]))
    tags = {n: run_tag(cfg.run_name, n, several=len(names) > 1) for n in names}
    kinds = ([] if cfg.skip_mc else ["detailed_mc"]) + ([] if cfg.skip_generation else ["generations"]) + \
        (["detailed_gen"] if not cfg.skip_generation and cfg.judge_model_path else [])
    for tag in tags.values():  # before any model is loaded
        for kind in kinds:
            refuse_to_overwrite(result_file(cfg.output_dir, kind, tag), cfg.resume, cfg.overwrite)
    data = load_truthfulqa(cfg.data_path, cfg.limit, need_mc=not cfg.skip_mc, need_gen=not cfg.skip_generation,
                           hf_name=cfg.hf_dataset)
    return _Run(cfg, names, adapter_paths, tags, data, resolve_backend(cfg.backend), {n: PhaseTimer() for n in names})


def _policy_phases(run: _Run) -> tuple[dict, dict]:
    """MC for every adapter (HF, exact), then generation (the same model, or vLLM); one model at a time."""
    cfg, data = run.cfg, run.data
    mc_by, generations_by = {}, {}
    lm = None
    try:
        if not cfg.skip_mc:
            with run.shared("load_model"):
                lm = _load_policy(cfg, "hf")
            for name, path, lm_name in zip(run.names, run.paths, lm.adapter_names, strict=True):
                _check_adapter(name, lm_name)
                lm.set_adapter(lm_name)
                logger.info("MC scoring: %s, %d questions", name, len(data.mc))
                with run.timer[name]("mc"):
                    recs = run_mc(lm, data.mc, run.file("detailed_mc", name), resume=cfg.resume,
                                  mc_batch=cfg.mc_batch, progress=cfg.progress,
                                  fingerprint=_fingerprint(cfg, "mc", path, data), prompt_style=cfg.prompt_style,
                                  mc_inputs=cfg.mc_inputs)
                mc_by[name] = mc_metrics(recs)
                logger.info("%s: MC1 %.4f  MC2 %.4f", name, mc_by[name]["mc1"], mc_by[name]["mc2"])
        if not cfg.skip_generation:
            if lm is not None and run.backend != "hf":
                release_lm(lm)
                lm = None
            if lm is None:
                with run.shared("load_generation_model"):
                    lm = _load_policy(cfg, run.backend)
            for name, path, lm_name in zip(run.names, run.paths, lm.adapter_names, strict=True):
                _check_adapter(name, lm_name)
                lm.set_adapter(lm_name)
                logger.info("generation: %s, %d questions (%s)", name, len(data.gen), run.backend)
                with run.timer[name]("generation"):
                    generations_by[name] = run_generation(
                        lm, data.gen, run.file("generations", name), resume=cfg.resume,
                        max_new_tokens=cfg.max_new_tokens, stop=cfg.stop_sequences, progress=cfg.progress,
                        fingerprint=_fingerprint(cfg, "generation", path, data, run.backend))
    finally:
        release_lm(lm)
    return mc_by, generations_by


def _judge_phase(run: _Run, generations_by: dict) -> dict:
    gen_by = {}
    judge = None
    try:
        with run.shared("load_judge"):
            judge = _load_judge(run.cfg)
        for name in run.names:
            with run.timer[name]("judge"):
                recs = run_judge(judge, generations_by[name], run.file("detailed_gen", name), resume=run.cfg.resume,
                                 answers_per_save=max(1, run.cfg.judge_batch_size), progress=run.cfg.progress,
                                 fingerprint=_fingerprint(run.cfg, "judge", None, None),
                                 continuation=run.cfg.judge_continuation)
            gen_by[name] = gen_metrics(recs)
    finally:
        release_lm(judge)
    return gen_by


def run_truthfulqa_eval(cfg: TruthfulQAEvalConfig) -> dict[str, dict]:
    """MC1/MC2 and judged generation for the base model and/or each adapter; returns metrics per adapter.

    Order (one model in memory at a time): the policy with every adapter for MC (HF backend, exact), the
    policy for generation (the same HF model, or vLLM when the backend is vllm), then the judge over all
    answers.  Per-sample files are appended as work is done; ``resume`` skips what is on disk.
    """
    setup_logging()
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    if cfg.judge_only:
        return {"judge_only": _judge_only(cfg)}
    if not cfg.skip_generation and not cfg.judge_model_path:
        logger.warning("no --judge_model_path: answers are generated but not judged; judge them later with "
                       "--judge_only <generations file>")
    run = _start(cfg)
    write_run_config(cfg.output_dir, cfg)
    mc_by, generations_by = _policy_phases(run)
    # Metrics now, so nothing is lost if the judge fails.  Fresh answers not judged yet have no numbers
    # (an earlier file's would describe other answers); a phase skipped now keeps the earlier file's.
    results = {}
    for name, p in zip(run.names, run.paths):
        unjudged = None if cfg.skip_generation else {"gen_truthfulness": None, "gen_avg_prob": None,
                                                     "n_gen_questions": len(generations_by[name]),
                                                     "n_empty": count_empty(generations_by[name])}
        results[name] = write_metrics(run.file("metrics", name), run.base_fields(name, p), mc_by.get(name), unjudged,
                                      run.seconds(name))
    if not cfg.skip_generation and cfg.judge_model_path:
        gen_by = _judge_phase(run, generations_by)
        for name, p in zip(run.names, run.paths):
            results[name] = write_metrics(run.file("metrics", name), run.base_fields(name, p), mc_by.get(name),
                                          gen_by[name], run.seconds(name))
    for name, m in results.items():
        logger.info("%s: MC1 %s, MC2 %s, judged truthfulness %s, judged P(yes) %s (%d questions) -> %s", name,
                    m.get("mc1"), m.get("mc2"), m.get("gen_truthfulness"), m.get("gen_avg_prob"), m["n_questions"],
                    run.file("metrics", name))
    return results


def _judge_only(cfg: TruthfulQAEvalConfig) -> dict:
    detailed = result_file(cfg.output_dir, "detailed_gen", cfg.run_name)
    metrics_path = result_file(cfg.output_dir, "metrics", cfg.run_name)
    src = Path(cfg.judge_only)
    if src.resolve() == detailed.resolve():
        raise ValueError(f"--judge_only reads {src}, which is the file this run would write; "
                         f"pass another --run_name (or the generations_*.jsonl file)")
    refuse_to_overwrite(detailed, cfg.resume, cfg.overwrite)
    write_run_config(cfg.output_dir, cfg)
    generations = read_generations(src)
    if cfg.limit is not None and cfg.limit > 0:
        generations = generations[: cfg.limit]
    timer = PhaseTimer()
    judge = None
    try:
        with timer("load_judge"):
            judge = _load_judge(cfg)
        with timer("judge"):
            recs = run_judge(judge, generations, detailed, resume=cfg.resume,
                             answers_per_save=max(1, cfg.judge_batch_size), progress=cfg.progress,
                             fingerprint=_fingerprint(cfg, "judge", None, None), continuation=cfg.judge_continuation)
    finally:
        release_lm(judge)
    base = {"model": cfg.model_path, "lora": None, "adapter": None, "run_name": cfg.run_name,
            "judge_model": cfg.judge_model_path, "data": str(src), "backend": None}
    base.update(_carried_metrics(metrics_path, ("model", "lora", "adapter", "backend")) if not cfg.model_path else {})
    return write_metrics(metrics_path, base, None, gen_metrics(recs), timer.seconds)
