"""HaluEval two-step flow: step 1 writes answers (predictions), step 2 judges their faithfulness to the knowledge
with a classifier judge (HHEM or NLI).  Settings: ``aligner.eval.tasks.halueval_config``."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from aligner.core.io import DataError, write_json_atomic
from aligner.core.models import parse_adapter_paths, planned_adapter_names
from aligner.core.paths import RESULT_FILES, result_file, run_tag, tag_from_file
from aligner.core.runinfo import setup_logging, write_run_config
from aligner.core.runner import path_identity, refuse_to_overwrite, run_per_sample
from aligner.data.sources.halueval import STEP1_FIELDS, load_halueval, load_predictions
from aligner.eval.checks import require_finite
from aligner.eval.metrics.similarity import BertScoreF1
from aligner.eval.metrics.text import sentence_bleu
from aligner.eval.tasks.halueval_common import (
    chunk_size,
    flow_metrics,
    generate_answers,
    generation_fingerprint,
    load_generator,
    same_question,
)
from aligner.eval.tasks.halueval_config import (
    FAITHFULNESS_METRICS,
    FAITHFULNESS_THRESHOLD,
    HaluEvalStep1Config,
    HaluEvalStep2Config,
)
from aligner.lm.interface import LM, release_lm, resolve_backend
from aligner.prompts import HALUEVAL_STEP1_SYSTEM

logger = logging.getLogger(__name__)


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
                          resume=resume, fingerprint=fingerprint, check=lambda r, it: same_question(r, it[1]["question"]),
                          desc="generate", progress=progress)


def run_halueval_step1(cfg: HaluEvalStep1Config) -> dict[str, str]:
    """Step 1 for the base model and/or each adapter: predictions_R.jsonl (or ``output_file``) each, and
    run_config_step1.json beside them; returns {adapter name or "base": predictions file}."""
    setup_logging()
    n_adapters = len(parse_adapter_paths(cfg.lora_path))
    if cfg.output_file and n_adapters > 1:
        raise ValueError("--output_file takes one adapter; with several, use --output_dir and --run_name")
    rows = load_halueval(cfg.data_path, cfg.limit, required=STEP1_FIELDS)
    logger.info("%d HaluEval rows from %s", len(rows), cfg.data_path)

    def path_of(name: str | None) -> Path:
        return Path(cfg.output_file) if cfg.output_file else \
            result_file(cfg.output_dir, "predictions", run_tag(cfg.run_name, name, several=n_adapters > 1))

    planned = planned_adapter_names(cfg.lora_path)
    for name in planned:
        refuse_to_overwrite(path_of(name), cfg.resume, cfg.overwrite)
    backend = resolve_backend(cfg.backend)
    lm = load_generator(cfg, backend)
    written = {}
    try:
        write_run_config(path_of(planned[0]).parent, cfg, extra={"backend": backend, "n_rows": len(rows)},
                         filename="run_config_step1.json")  # step 2 may write into the same folder
        for name, lora in lm.each_adapter():
            path = path_of(name)
            logger.info("generating with adapter %s -> %s", lora or "none", path)
            records = run_step1_generation(
                lm, rows, path, resume=cfg.resume, max_new_tokens=cfg.max_new_tokens, chunk_size=chunk_size(cfg, lm),
                progress=cfg.progress,
                fingerprint=generation_fingerprint(cfg, "step1", lora, backend, HALUEVAL_STEP1_SYSTEM))
            written[name or "base"] = str(path)
            logger.info("%d predictions in %s", len(records), path)
    finally:
        release_lm(lm)
    return written


# ---------------------------------------------------------------------------------------------
# two-step flow, step 2: judging
# ---------------------------------------------------------------------------------------------

def score_faithfulness(predictions: Sequence[dict], judge, bertscorer: BertScoreF1 | None = None,
                       threshold: float = FAITHFULNESS_THRESHOLD, bleu: bool = True) -> list[dict]:
    """Per-sample records of step 2: faithfulness of the answer to the knowledge, BERTScore and BLEU
    against the right answer (``bleu=False``: 0.0, what the study's step 2 stored for every row)."""
    from aligner.eval.metrics.judges import judge_faithfulness

    gen = [p["generated_text"] for p in predictions]
    right = [p["right_answer"] for p in predictions]
    faith = judge_faithfulness(judge, [p["knowledge"] for p in predictions], gen, progress=False)
    bert = bertscorer.score(gen, right) if bertscorer is not None else [None] * len(gen)
    return [{"question": p["question"], "right_answer": r, "generated": g, "faithfulness_score": f,
             "is_hallucinated": bool(f < threshold), "bert_score": b, "bleu": sentence_bleu(g, r) if bleu else 0.0}
            for p, g, r, f, b in zip(predictions, gen, right, faith, bert)]


def aggregate_faithfulness(records: Sequence[dict], bleu: bool = True) -> dict:
    """hallucination_rate, avg_faithfulness, avg_bert_f1, avg_bleu (not with ``bleu=False``: the study's step 2
    reported none), total, n_empty."""
    names = FAITHFULNESS_METRICS if bleu else tuple(m for m in FAITHFULNESS_METRICS if m != "avg_bleu")
    return flow_metrics(records, names, "total")


def _same_prediction(rec: dict, prediction: dict) -> str | None:
    problem = same_question(rec, prediction["question"])
    if problem is None and rec.get("generated") != prediction["generated_text"]:
        problem = f"judges another answer ({str(rec.get('generated'))[:60]!r}) than the one to judge now"
    return problem


def run_step2_judging(predictions: Sequence[dict], judge, bertscorer: BertScoreF1 | None,
                      detailed_path: str | os.PathLike, resume: bool = False, chunk_size: int = 256,
                      threshold: float = FAITHFULNESS_THRESHOLD, progress: bool = True,
                      fingerprint: dict | None = None, bleu: bool = True) -> list[dict]:
    """Judge ``predictions`` into ``detailed_path``, keyed by the prediction's ``index`` (its position in the
    file for the study's predictions, which carry none).  A non-finite faithfulness or BERTScore stops the run
    (a NaN compared with the threshold would count as "not hallucinated")."""
    def make(chunk: list[dict]) -> list[dict]:
        records = [{"index": p["index"], **rec}
                   for p, rec in zip(chunk, score_faithfulness(chunk, judge, bertscorer, threshold, bleu))]
        require_finite(records, ("faithfulness_score", "bert_score"), f"{detailed_path}")
        return records

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
    setup_logging()
    from aligner.eval.metrics.judges import load_faithfulness_judge
    from aligner.eval.metrics.similarity import load_bertscorer

    files = prediction_files(cfg)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for _, tag in files:
        refuse_to_overwrite(result_file(out, "detailed", tag), cfg.resume, cfg.overwrite)
    write_run_config(out, cfg, extra={"predictions": [str(f) for f, _ in files]})
    judge = load_faithfulness_judge(cfg.judge_model_path, batch_size=cfg.batch_size, dtype=cfg.dtype,
                                    trust_remote_code=cfg.trust_remote_code, positive_label=cfg.judge_label)
    bertscorer = load_bertscorer(cfg.bertscore_model, cfg.bertscore_num_layers, batch_size=cfg.batch_size)
    fingerprint = {"task": "halueval/step2", "judge_model": path_identity(cfg.judge_model_path),
                   "judge_label": cfg.judge_label, "dtype": cfg.dtype, "threshold": cfg.threshold,
                   "bertscore_model": path_identity(cfg.bertscore_model),
                   "bertscore_num_layers": cfg.bertscore_num_layers, "bleu": not cfg.study_compat}
    results = {}
    for path, tag in files:
        predictions = load_predictions(path)
        detailed = result_file(out, "detailed", tag)
        logger.info("judging %d predictions from %s -> %s", len(predictions), path, detailed)
        records = run_step2_judging(predictions, judge, bertscorer, detailed, resume=cfg.resume,
                                    chunk_size=max(cfg.batch_size * 8, 64), threshold=cfg.threshold,
                                    progress=cfg.progress, fingerprint=fingerprint, bleu=not cfg.study_compat)
        metrics = aggregate_faithfulness(records, bleu=not cfg.study_compat)
        write_json_atomic(result_file(out, "metrics", tag), metrics)
        logger.info("%s: hallucination rate %.4f, faithfulness %.4f, BERTScore %s, BLEU %s (%d, %d empty)", tag,
                    metrics["hallucination_rate"], metrics["avg_faithfulness"], metrics["avg_bert_f1"],
                    metrics.get("avg_bleu"), metrics["total"], metrics["n_empty"])
        results[tag] = metrics
    return results
