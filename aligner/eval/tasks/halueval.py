"""HaluEval QA evaluation: the similarity flow and the two-step (generate, then judge) flow.

Similarity flow (``evaluation/eval_halueval.py``): the model answers "Context: {knowledge}\\n\\nQuestion:
{question}" (one user turn, chat template, greedy); the answer is hallucinated when its sentence
embedding is closer to the hallucinated answer than to the right one.  BLEU, ROUGE-L and BERTScore
against the right answer are reported beside it.

Two-step flow: step 1 (``eval_haleval_llm_step1.py``) answers with a system prompt asking for the
shortest correct answer and writes predictions; step 2 (``eval_haleval_llm_step2.py``) scores each
answer's faithfulness to the knowledge with a classifier judge (HHEM or NLI); faithfulness < 0.5
counts as a hallucination.

Task code here talks to the ``aligner.lm.LM`` interface only.  Per-sample records carry ``index``, the
0-based data row (for step 2: the prediction's row), and are appended and resumed by that key through
``aligner.core.runner.run_per_sample``; a kept record whose question is not its row's, or a file written with
another model, adapter, prompt or data file, stops a ``--resume`` instead of mixing two runs.  Metrics are
the means declared in ``aligner.eval.metrics.registry``; file names come from ``aligner.core.paths``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.cli import override
from aligner.core.io import DataError, read_jsonl, write_json_atomic, write_jsonl_atomic
from aligner.core.models import parse_adapter_paths, resolve_dtype
from aligner.core.paths import RESULT_FILES, result_file, run_tag, tag_from_file
from aligner.core.runinfo import write_run_config
from aligner.core.runner import data_fingerprint, path_identity, run_per_sample
from aligner.data.sft import different_question
from aligner.data.sources.halueval import (
    DEFAULT_DATA_PATH,
    PREDICTION_FIELDS,
    STEP1_FIELDS,
    load_halueval,
    load_predictions,
    resolve_data_path,
)
from aligner.eval.metrics.registry import aggregate
from aligner.eval.metrics.similarity import BertScoreF1, EmbeddingSimilarity
from aligner.eval.metrics.text import rouge_l, sentence_bleu
from aligner.lm.interface import LM, load_lm, release_lm, resolve_backend
from aligner.lm.settings import BackendSettings, ChatSettings, ModelSettings
from aligner.prompts import CONTEXT_QUESTION_TEMPLATE, HALUEVAL_STEP1_SYSTEM, halueval_messages

logger = logging.getLogger(__name__)

DETAILED_FIELDS = ("index", "question", "generated", "right_answer", "sim_right", "sim_halluc", "bert_score", "bleu",
                   "rouge_l", "is_hallucinated")
#: a step-1 record: the data row's index, then the fields step 2 reads (``PREDICTION_FIELDS``)
PREDICTION_RECORD_FIELDS = ("index", *PREDICTION_FIELDS)
SIMILARITY_METHOD = "sentence_transformer_similarity"
FAITHFULNESS_THRESHOLD = 0.5
HHEM = "vectara/hallucination_evaluation_model"
#: the declared metrics (aligner.eval.metrics.registry) each flow reports, besides its sample count
SIMILARITY_METRICS = ("hallucination_rate", "avg_confidence_margin", "avg_bert_score", "avg_bleu", "avg_rouge_l")
FAITHFULNESS_METRICS = ("hallucination_rate", "avg_faithfulness", "avg_bert_f1", "avg_bleu")


# ---------------------------------------------------------------------------------------------
# settings (the three scripts' parsers are generated from these)
# ---------------------------------------------------------------------------------------------

@dataclass(kw_only=True)
class BertScoreSettings:
    """The BERTScore scorer both flows report beside their own metric."""

    bertscore_model: str = field(default="microsoft/deberta-v3-large", metadata={
        "help": "BERTScore backbone; 'none' skips BERTScore (reported as null)", "group": "scorers"})
    bertscore_num_layers: int | None = field(default=None, metadata={
        "help": "BERTScore layer; needed for backbones bert_score does not know (default: none, bert_score's "
                "choice for the model)", "group": "scorers"})


@dataclass(kw_only=True)
class HaluEvalGenerationConfig(ModelSettings, BackendSettings, ChatSettings):
    """What both generating flows share: the data, the generation and the resumable output."""

    model_path: str = override(ModelSettings, "model_path", dataclasses.MISSING, help="generator model folder or hub id")
    run_name: str | None = field(default=None, metadata={
        "help": "names the output files (metrics_RUN.json, detailed_RUN.jsonl, predictions_RUN.jsonl)"})
    output_dir: str = field(default="evaluation/results/Halueval", metadata={"help": "where the output files go"})
    data_path: str = field(default=DEFAULT_DATA_PATH, metadata={"help": "HaluEval qa_data.json (JSON lines)"})
    limit: int = field(default=-1, metadata={"help": "evaluate the first N rows only; -1 = all"})
    batch_size: int = field(default=8, metadata={"help": "prompts per generate call (HF backend)"})
    max_new_tokens: int = field(default=128, metadata={"help": "generation length limit"})
    chunk_size: int = field(default=0, metadata={
        "help": "samples done between two appends to the per-sample file; 0 = what suits the backend "
                "(at least 128; 1024 for vLLM)"})
    resume: bool = field(default=False, metadata={
        "help": "continue an interrupted run from its per-sample file, skipping the rows it holds (default: off, "
                "start afresh)"})
    progress: bool = field(default=True, metadata={"flag": "--no_progress", "help": "no progress bars"})


@dataclass(kw_only=True)
class HaluEvalSimilarityConfig(HaluEvalGenerationConfig, BertScoreSettings):
    """``evaluation/eval_halueval.py``."""

    model_path: str | None = override(ModelSettings, "model_path", None,
                                      help="generator model folder or hub id (required unless --from_detailed)")
    run_name: str | None = override(HaluEvalGenerationConfig, "run_name", None, help=(
        "names the output files metrics_RUN.json / detailed_RUN.jsonl (required unless --from_detailed, where it "
        "defaults to the detailed file's name + '_rescored')"))
    batch_size: int = override(HaluEvalGenerationConfig, "batch_size", 8,
                               help="generation batch size (HF backend); also the embedding/BERTScore batch")
    embed_model: str = field(default="all-mpnet-base-v2", metadata={
        "help": "sentence-transformers model for sim_right/sim_halluc", "group": "scorers"})
    gpu_memory_utilization: float = override(BackendSettings, "gpu_memory_utilization", 0.7,
                                             help="vLLM GPU memory share, leaving room for the scorers")
    from_detailed: str | None = field(default=None, metadata={
        "help": "re-score an existing detailed file (BLEU, ROUGE-L, hallucination rate, margin) without any model, "
                "and write metrics for it (default: none)"})

    def __post_init__(self):
        if self.from_detailed is None and (not self.model_path or not self.run_name):
            raise ValueError("--model_path and --run_name are required (unless --from_detailed)")


@dataclass(kw_only=True)
class HaluEvalStep1Config(HaluEvalGenerationConfig):
    """``evaluation/eval_haleval_llm_step1.py``."""

    output_dir: str = override(HaluEvalGenerationConfig, "output_dir", "evaluation/results/HaluevalLLM",
                               help="where predictions_RUN.jsonl goes")
    run_name: str | None = override(HaluEvalGenerationConfig, "run_name", None,
                                    help="names the predictions file; required unless --output_file is given")
    output_file: str | None = field(default=None, metadata={
        "help": "explicit predictions file, instead of OUTPUT_DIR/predictions_RUN.jsonl; one adapter only "
                "(default: none)"})

    def __post_init__(self):
        if not self.run_name and not self.output_file:
            raise ValueError("give --run_name (or --output_file)")


@dataclass(kw_only=True)
class HaluEvalStep2Config(BertScoreSettings):
    """``evaluation/eval_haleval_llm_step2.py``."""

    predictions_dir: str | None = field(default=None, metadata={
        "help": "folder whose predictions_*.jsonl files are all judged (default: none)"})
    input_file: str | None = field(default=None, metadata={
        "help": "one predictions file to judge instead (default: none)"})
    judge_model_path: str = field(default=HHEM, metadata={
        "help": "HHEM or an NLI sequence classifier, folder or hub id", "group": "judge"})
    output_dir: str = field(default="evaluation/results/HaluevalLLM", metadata={
        "help": "where metrics_RUN.json / detailed_RUN.jsonl go"})
    run_name: str | None = field(default=None, metadata={
        "help": "output name for --input_file (default: none, the predictions file's name without 'predictions_')"})
    batch_size: int = field(default=32, metadata={"help": "judge and BERTScore batch size"})
    trust_remote_code: bool = field(default=True, metadata={
        "help": "let the judge run its own code, as HHEM needs; --no-trust_remote_code refuses",
        "boolean_optional": True, "group": "judge"})
    judge_label: str | None = field(default=None, metadata={
        "help": "the judge's label meaning consistent/entailment, when id2label does not make it plain (default: "
                "none, found from id2label)", "group": "judge"})
    threshold: float = field(default=FAITHFULNESS_THRESHOLD, metadata={
        "help": "faithfulness below this counts as hallucinated", "group": "judge"})
    dtype: str = field(default="auto", metadata={
        "help": "judge dtype: auto (bf16 on CUDA, fp32 on CPU), fp16, bf16, fp32", "group": "judge"})
    resume: bool = field(default=False, metadata={
        "help": "continue interrupted judging from the detailed files (default: off, start afresh)"})
    progress: bool = field(default=True, metadata={"flag": "--no_progress", "help": "no progress bars"})

    def __post_init__(self):
        if bool(self.predictions_dir) == bool(self.input_file):
            raise ValueError("give exactly one of --predictions_dir and --input_file")


# ---------------------------------------------------------------------------------------------
# generation
# ---------------------------------------------------------------------------------------------

def halueval_prompts(lm: LM, rows: Sequence[dict], system: str | None = None) -> list[str]:
    """Chat-rendered prompts: one user turn "Context: ...\\n\\nQuestion: ..." (after ``system`` if given)."""
    return [lm.chat_prompt(halueval_messages(r["knowledge"], r["question"], system)) for r in rows]


def generate_answers(lm: LM, rows: Sequence[dict], max_new_tokens: int = 128, system: str | None = None,
                     progress: bool = False) -> list[str]:
    """Greedy answers (stripped of surrounding whitespace, as the study stored them)."""
    outs = lm.generate_until(halueval_prompts(lm, rows, system), max_new_tokens=max_new_tokens, temperature=0.0,
                             progress=progress)
    return [o.strip() for o in outs]


def _same_question(rec: dict, question: str) -> str | None:
    problem = different_question(rec, question)
    return f"{problem}, cannot resume" if problem else None  # the flows' wording since the study


def _generation_fingerprint(cfg: HaluEvalGenerationConfig, flow: str, adapter: str | None, backend: str,
                            system: str | None = None) -> dict:
    """What a generating flow's records depend on (a resumed file must have been made with the same)."""
    return {"task": f"halueval/{flow}", "model": path_identity(cfg.model_path), "adapter": path_identity(adapter),
            "dtype": str(resolve_dtype(cfg.dtype, cfg.device)), "backend": backend,
            "prompt": CONTEXT_QUESTION_TEMPLATE, "system": system, "max_new_tokens": cfg.max_new_tokens,
            "date_string": cfg.date_string,
            "data_sha256": data_fingerprint(resolve_data_path(cfg.data_path))}


def _load_generator(cfg: HaluEvalGenerationConfig, backend: str) -> LM:
    return load_lm(backend, cfg.model_path, cfg.lora_path, batch_size=cfg.batch_size, dtype=cfg.dtype,
                   device=cfg.device, tensor_parallel_size=cfg.tensor_parallel_size,
                   gpu_memory_utilization=cfg.gpu_memory_utilization, seed=cfg.seed, date_string=cfg.date_string)


def _chunk_size(cfg: HaluEvalGenerationConfig, lm: LM) -> int:
    # Appends that are too frequent cost an fsync per few samples; the backend says what one call should hold.
    return cfg.chunk_size or max(lm.generation_chunk, 128)


# ---------------------------------------------------------------------------------------------
# similarity flow
# ---------------------------------------------------------------------------------------------

def score_similarity(rows: Sequence[dict], generated: Sequence[str], embedder: EmbeddingSimilarity,
                     bertscorer: BertScoreF1 | None = None) -> list[dict]:
    """Per-sample records of the similarity flow (the fields of ``DETAILED_FIELDS`` but ``index``)."""
    if len(rows) != len(generated):
        raise ValueError(f"{len(rows)} rows but {len(generated)} generations")
    right = [r["right_answer"] for r in rows]
    halluc = [r["hallucinated_answer"] for r in rows]
    gen = list(generated)
    sim_right, sim_halluc = embedder.cosine_to_each(gen, right, halluc)
    bert = bertscorer.score(gen, right) if bertscorer is not None else [None] * len(gen)
    return [{"question": row["question"], "generated": g, "right_answer": r, "sim_right": s_right,
             "sim_halluc": s_halluc, "bert_score": b, "bleu": sentence_bleu(g, r), "rouge_l": rouge_l(g, r),
             "is_hallucinated": bool(s_halluc > s_right)}
            for row, g, r, s_right, s_halluc, b in zip(rows, gen, right, sim_right, sim_halluc, bert)]


def _flow_metrics(records: Sequence[dict], names: Sequence[str], count: str) -> dict:
    if not records:
        raise ValueError("no samples to aggregate")
    return {**aggregate(records, names), count: len(records)}


def aggregate_similarity(records: Sequence[dict]) -> dict:
    """hallucination_rate, avg_confidence_margin (mean sim_right - sim_halluc), avg_bert_score, avg_bleu,
    avg_rouge_l, total_samples."""
    return _flow_metrics(records, SIMILARITY_METRICS, "total_samples")


def run_similarity_eval(lm: LM, rows: Sequence[dict], embedder: EmbeddingSimilarity,
                        bertscorer: BertScoreF1 | None, detailed_path: str | os.PathLike, resume: bool = False,
                        max_new_tokens: int = 128, chunk_size: int = 128, progress: bool = True,
                        fingerprint: dict | None = None) -> list[dict]:
    """Generate with the LM's active adapter, score and append to ``detailed_path``; returns the rows' records."""
    def make(chunk: list[tuple[int, dict]]) -> list[dict]:
        part = [row for _, row in chunk]
        scored = score_similarity(part, generate_answers(lm, part, max_new_tokens=max_new_tokens), embedder,
                                  bertscorer)
        return [{"index": i, **rec} for (i, _), rec in zip(chunk, scored)]

    return run_per_sample(detailed_path, list(enumerate(rows)), make, key_of=lambda it: it[0], chunk=chunk_size,
                          resume=resume, fingerprint=fingerprint, check=lambda r, it: _same_question(r, it[1]["question"]),
                          desc="halueval", progress=progress)


def rescore_detailed(path: str | os.PathLike) -> tuple[list[dict], dict]:
    """Recompute BLEU, ROUGE-L, is_hallucinated and the margin of an existing detailed file (no model).

    Works on the study's own detailed files too (which stored no BLEU/ROUGE-L per sample); BERTScore is
    averaged from the stored values when every record has one.
    """
    rows = read_jsonl(path, required=("generated", "right_answer", "sim_right", "sim_halluc"), allow_empty=True)
    records = [{**r, "bleu": sentence_bleu(r["generated"], r["right_answer"]),
                "rouge_l": rouge_l(r["generated"], r["right_answer"]),
                "is_hallucinated": bool(r["sim_halluc"] > r["sim_right"])} for r in rows]
    return records, aggregate_similarity(records)


def rescore_to_files(cfg: HaluEvalSimilarityConfig) -> dict:
    """``--from_detailed``: the re-scored detailed file and its metrics, under the run name (default: the
    detailed file's tag + ``_rescored``); returns the metrics."""
    records, metrics = rescore_detailed(cfg.from_detailed)
    tag = cfg.run_name or tag_from_file(cfg.from_detailed, "detailed") + "_rescored"
    lora = ",".join(cfg.lora_path) if cfg.lora_path else None  # as given, the study's one-string form
    result = {"model": cfg.model_path, "lora_path": lora, "method": SIMILARITY_METHOD, **metrics,
              "rescored_from": str(cfg.from_detailed)}
    write_jsonl_atomic(result_file(cfg.output_dir, "detailed", tag), records)
    write_json_atomic(result_file(cfg.output_dir, "metrics", tag), result)
    write_run_config(cfg.output_dir, cfg)
    logger.info("re-scored %s: %s", cfg.from_detailed, result)
    return result


def run_halueval_similarity(cfg: HaluEvalSimilarityConfig) -> dict:
    """The similarity flow for the base model and/or each adapter (on one loaded base): detailed_R.jsonl and
    metrics_R.json per adapter; returns {adapter name or "base": metrics}.  With ``from_detailed``, only
    re-scores that file (``rescore_to_files``) and returns its metrics."""
    if cfg.from_detailed:
        return rescore_to_files(cfg)
    from aligner.eval.metrics.similarity import load_bertscorer

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = load_halueval(cfg.data_path, cfg.limit)
    logger.info("%d HaluEval rows from %s", len(rows), cfg.data_path)
    backend = resolve_backend(cfg.backend)
    lm = _load_generator(cfg, backend)
    try:
        write_run_config(out, cfg, extra={"backend": backend, "n_rows": len(rows)})
        embedder = EmbeddingSimilarity(cfg.embed_model, batch_size=max(cfg.batch_size, 32))
        bertscorer = load_bertscorer(cfg.bertscore_model, cfg.bertscore_num_layers, batch_size=max(cfg.batch_size, 32))
        scorers = {"embed_model": path_identity(cfg.embed_model), "bertscore_model": path_identity(cfg.bertscore_model),
                   "bertscore_num_layers": cfg.bertscore_num_layers}
        results = {}
        for name in lm.adapter_names:
            lm.set_adapter(name)
            lora = lm.adapter_paths.get(name)
            tag = run_tag(cfg.run_name, name, several=len(lm.adapter_names) > 1)
            detailed = result_file(out, "detailed", tag)
            logger.info("evaluating %s (adapter: %s) -> %s", cfg.model_path, lora or "none", detailed)
            records = run_similarity_eval(
                lm, rows, embedder, bertscorer, detailed, resume=cfg.resume, max_new_tokens=cfg.max_new_tokens,
                chunk_size=_chunk_size(cfg, lm), progress=cfg.progress,
                fingerprint={**_generation_fingerprint(cfg, "similarity", lora, backend), **scorers})
            metrics = {"model": cfg.model_path, "lora_path": lora, "method": SIMILARITY_METHOD,
                       **aggregate_similarity(records)}
            write_json_atomic(result_file(out, "metrics", tag), metrics)
            logger.info("%s: hallucination rate %.4f, margin %.4f, BERTScore %s, BLEU %.4f, ROUGE-L %.4f (%d samples)",
                        name or "base", metrics["hallucination_rate"], metrics["avg_confidence_margin"],
                        metrics["avg_bert_score"], metrics["avg_bleu"], metrics["avg_rouge_l"],
                        metrics["total_samples"])
            results[name or "base"] = metrics
    finally:
        release_lm(lm)
    return results


# ---------------------------------------------------------------------------------------------
# two-step flow, step 1: answers
# ---------------------------------------------------------------------------------------------

def run_step1_generation(lm: LM, rows: Sequence[dict], predictions_path: str | os.PathLike, resume: bool = False,
                         max_new_tokens: int = 128, chunk_size: int = 128, system: str = HALUEVAL_STEP1_SYSTEM,
                         progress: bool = True, fingerprint: dict | None = None) -> list[dict]:
    """Step 1: answers to ``predictions_path`` as {index, question, knowledge, right_answer, generated_text}."""
    def make(chunk: list[tuple[int, dict]]) -> list[dict]:
        gen = generate_answers(lm, [row for _, row in chunk], max_new_tokens=max_new_tokens, system=system)
        return [{"index": i, "question": r["question"], "knowledge": r["knowledge"], "right_answer": r["right_answer"],
                 "generated_text": g} for (i, r), g in zip(chunk, gen)]

    return run_per_sample(predictions_path, list(enumerate(rows)), make, key_of=lambda it: it[0], chunk=chunk_size,
                          resume=resume, fingerprint=fingerprint, check=lambda r, it: _same_question(r, it[1]["question"]),
                          desc="generate", progress=progress)


def run_halueval_step1(cfg: HaluEvalStep1Config) -> dict[str, str]:
    """Step 1 for the base model and/or each adapter: predictions_R.jsonl (or ``output_file``) each, and
    run_config_step1.json beside them; returns {adapter name or "base": predictions file}."""
    n_adapters = len(parse_adapter_paths(cfg.lora_path))
    if cfg.output_file and n_adapters > 1:
        raise ValueError("--output_file takes one adapter; with several, use --output_dir and --run_name")
    rows = load_halueval(cfg.data_path, cfg.limit, required=STEP1_FIELDS)
    logger.info("%d HaluEval rows from %s", len(rows), cfg.data_path)
    backend = resolve_backend(cfg.backend)
    lm = _load_generator(cfg, backend)
    written = {}
    try:
        for name in lm.adapter_names:
            lm.set_adapter(name)
            lora = lm.adapter_paths.get(name)
            path = Path(cfg.output_file) if cfg.output_file else \
                result_file(cfg.output_dir, "predictions", run_tag(cfg.run_name, name, several=n_adapters > 1))
            write_run_config(path.parent, cfg, extra={"backend": backend, "n_rows": len(rows)},
                             filename="run_config_step1.json")  # step 2 may write into the same folder
            logger.info("generating with adapter %s -> %s", lora or "none", path)
            records = run_step1_generation(
                lm, rows, path, resume=cfg.resume, max_new_tokens=cfg.max_new_tokens, chunk_size=_chunk_size(cfg, lm),
                progress=cfg.progress,
                fingerprint=_generation_fingerprint(cfg, "step1", lora, backend, HALUEVAL_STEP1_SYSTEM))
            written[name or "base"] = str(path)
            logger.info("%d predictions in %s", len(records), path)
    finally:
        release_lm(lm)
    return written


# ---------------------------------------------------------------------------------------------
# two-step flow, step 2: judging
# ---------------------------------------------------------------------------------------------

def score_faithfulness(predictions: Sequence[dict], judge, bertscorer: BertScoreF1 | None = None,
                       threshold: float = FAITHFULNESS_THRESHOLD) -> list[dict]:
    """Per-sample records of step 2: faithfulness of the answer to the knowledge, BERTScore and BLEU
    against the right answer."""
    from aligner.eval.metrics.judges import judge_faithfulness

    gen = [p["generated_text"] for p in predictions]
    right = [p["right_answer"] for p in predictions]
    faith = judge_faithfulness(judge, [p["knowledge"] for p in predictions], gen, progress=False)
    bert = bertscorer.score(gen, right) if bertscorer is not None else [None] * len(gen)
    return [{"question": p["question"], "right_answer": r, "generated": g, "faithfulness_score": f,
             "is_hallucinated": bool(f < threshold), "bert_score": b, "bleu": sentence_bleu(g, r)}
            for p, g, r, f, b in zip(predictions, gen, right, faith, bert)]


def aggregate_faithfulness(records: Sequence[dict]) -> dict:
    """hallucination_rate, avg_faithfulness, avg_bert_f1, avg_bleu, total."""
    return _flow_metrics(records, FAITHFULNESS_METRICS, "total")


def _same_prediction(rec: dict, prediction: dict) -> str | None:
    problem = _same_question(rec, prediction["question"])
    if problem is None and rec.get("generated") != prediction["generated_text"]:
        problem = f"judges another answer ({str(rec.get('generated'))[:60]!r}) than the one to judge now"
    return problem


def run_step2_judging(predictions: Sequence[dict], judge, bertscorer: BertScoreF1 | None,
                      detailed_path: str | os.PathLike, resume: bool = False, chunk_size: int = 256,
                      threshold: float = FAITHFULNESS_THRESHOLD, progress: bool = True,
                      fingerprint: dict | None = None) -> list[dict]:
    """Judge ``predictions`` into ``detailed_path``, keyed by the prediction's ``index`` (its position in the
    file for the study's predictions, which carry none)."""
    def make(chunk: list[dict]) -> list[dict]:
        return [{"index": p["index"], **rec} for p, rec in zip(chunk, score_faithfulness(chunk, judge, bertscorer,
                                                                                          threshold))]

    items = [{**p, "index": p.get("index", i)} for i, p in enumerate(predictions)]
    return run_per_sample(detailed_path, items, make, key_of=lambda p: p["index"], chunk=chunk_size, resume=resume,
                          fingerprint=fingerprint, check=_same_prediction, desc="judge", progress=progress)


def prediction_files(cfg: HaluEvalStep2Config) -> list[tuple[Path, str]]:
    """(predictions file, run tag) pairs to judge: ``input_file``, or every predictions_*.jsonl of the folder."""
    if cfg.input_file:
        path = Path(cfg.input_file)
        if not path.is_file():
            raise DataError(path, "--input_file does not exist")
        return [(path, cfg.run_name or tag_from_file(path, "predictions"))]
    files = sorted(Path(cfg.predictions_dir).glob(RESULT_FILES["predictions"].format(tag="*")))
    if not files:
        raise DataError(cfg.predictions_dir, "no predictions_*.jsonl here; run eval_haleval_llm_step1.py first")
    return [(f, tag_from_file(f, "predictions")) for f in files]


def run_halueval_step2(cfg: HaluEvalStep2Config) -> dict[str, dict]:
    """Step 2 over every predictions file: detailed_R.jsonl and metrics_R.json each; returns {R: metrics}."""
    from aligner.eval.metrics.judges import load_faithfulness_judge
    from aligner.eval.metrics.similarity import load_bertscorer

    files = prediction_files(cfg)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_run_config(out, cfg, extra={"predictions": [str(f) for f, _ in files]})
    judge = load_faithfulness_judge(cfg.judge_model_path, batch_size=cfg.batch_size, dtype=cfg.dtype,
                                    trust_remote_code=cfg.trust_remote_code, positive_label=cfg.judge_label)
    bertscorer = load_bertscorer(cfg.bertscore_model, cfg.bertscore_num_layers, batch_size=cfg.batch_size)
    fingerprint = {"task": "halueval/step2", "judge_model": path_identity(cfg.judge_model_path),
                   "judge_label": cfg.judge_label, "dtype": cfg.dtype, "threshold": cfg.threshold,
                   "bertscore_model": path_identity(cfg.bertscore_model),
                   "bertscore_num_layers": cfg.bertscore_num_layers}
    results = {}
    for path, tag in files:
        predictions = load_predictions(path)
        detailed = result_file(out, "detailed", tag)
        logger.info("judging %d predictions from %s -> %s", len(predictions), path, detailed)
        records = run_step2_judging(predictions, judge, bertscorer, detailed, resume=cfg.resume,
                                    chunk_size=max(cfg.batch_size * 8, 64), threshold=cfg.threshold,
                                    progress=cfg.progress, fingerprint=fingerprint)
        metrics = aggregate_faithfulness(records)
        write_json_atomic(result_file(out, "metrics", tag), metrics)
        logger.info("%s: hallucination rate %.4f, faithfulness %.4f, BERTScore %s, BLEU %.4f (%d)", tag,
                    metrics["hallucination_rate"], metrics["avg_faithfulness"], metrics["avg_bert_f1"],
                    metrics["avg_bleu"], metrics["total"])
        results[tag] = metrics
    return results
