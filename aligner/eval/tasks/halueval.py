"""HaluEval QA evaluation: the similarity flow and the two-step (generate, then judge) flow.

Similarity flow (``evaluation/eval_halueval.py``): the model answers "Context: {knowledge}\\n\\nQuestion:
{question}" (one user turn, chat template; decoded with the model's own generation_config by default, as the
study, or greedily); the answer is hallucinated when its sentence embedding is closer to the hallucinated answer
than to the right one.  BLEU, ROUGE-L and BERTScore against the right answer are reported beside it.

Two-step flow (``aligner.eval.tasks.halueval_twostep``): step 1 (``eval_haleval_llm_step1.py``) answers with a
system prompt asking for the shortest correct answer and writes predictions; step 2
(``eval_haleval_llm_step2.py``) scores each answer's faithfulness to the knowledge with a classifier judge (HHEM
or NLI); faithfulness < 0.5 counts as a hallucination.

Task code here talks to the ``aligner.lm.LM`` interface only.  Per-sample records carry ``index``, the
0-based data row (for step 2: the prediction's row), and are appended and resumed by that key through
``aligner.core.runner.run_per_sample``; a kept record whose question is not its row's, or a file written with
another model, adapter, prompt or data file, stops a ``--resume`` instead of mixing two runs, and a file of an
earlier run is never overwritten without ``--overwrite``.  A non-finite score stops the run naming its row;
empty answers are kept and counted (``n_empty``).  Metrics are the means declared in
``aligner.eval.metrics.registry``; file names come from ``aligner.core.paths``; the settings are in
``aligner.eval.tasks.halueval_config``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from aligner.core.io import read_jsonl, write_json_atomic, write_jsonl_atomic
from aligner.core.models import planned_adapter_names
from aligner.core.paths import result_file, run_tag, tag_from_file
from aligner.core.runinfo import setup_logging, write_run_config
from aligner.core.runner import path_identity, refuse_to_overwrite, run_per_sample
from aligner.data.sources.halueval import load_halueval
from aligner.eval.checks import require_finite
from aligner.eval.metrics.similarity import BertScoreF1, EmbeddingSimilarity
from aligner.eval.metrics.text import rouge_l, sentence_bleu
from aligner.eval.tasks.halueval_common import (  # noqa: F401  (re-exported: the flows' one import place)
    chunk_size,
    flow_metrics,
    generate_answers,
    generation_fingerprint,
    halueval_prompts,
    load_generator,
    same_question,
)
from aligner.eval.tasks.halueval_config import (  # noqa: F401
    DETAILED_FIELDS,
    FAITHFULNESS_METRICS,
    FAITHFULNESS_THRESHOLD,
    HHEM,
    PREDICTION_RECORD_FIELDS,
    SIMILARITY_METHOD,
    SIMILARITY_METRICS,
    BertScoreSettings,
    HaluEvalGenerationConfig,
    HaluEvalSimilarityConfig,
    HaluEvalStep1Config,
    HaluEvalStep2Config,
)
from aligner.eval.tasks.halueval_twostep import (  # noqa: F401
    aggregate_faithfulness,
    prediction_files,
    run_halueval_step1,
    run_halueval_step2,
    run_step1_generation,
    run_step2_judging,
    score_faithfulness,
)
from aligner.lm.interface import LM, release_lm, resolve_backend
from aligner.lm.settings import resolve_sampling

logger = logging.getLogger(__name__)

SCORE_FIELDS = ("sim_right", "sim_halluc", "bert_score")


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


def aggregate_similarity(records: Sequence[dict]) -> dict:
    """hallucination_rate, avg_confidence_margin (mean sim_right - sim_halluc), avg_bert_score, avg_bleu,
    avg_rouge_l, total_samples, n_empty."""
    return flow_metrics(records, SIMILARITY_METRICS, "total_samples")


def run_similarity_eval(lm: LM, rows: Sequence[dict], embedder: EmbeddingSimilarity,
                        bertscorer: BertScoreF1 | None, detailed_path: str | os.PathLike, resume: bool = False,
                        max_new_tokens: int = 128, chunk_size: int = 128, progress: bool = True,
                        fingerprint: dict | None = None, sampling: dict | None = None,
                        seed: int | None = None) -> list[dict]:
    """Generate with the LM's active adapter (greedy, or as ``sampling`` says), score and append to
    ``detailed_path``; returns the rows' records.  A non-finite similarity or BERTScore stops the run."""
    def make(chunk: list[tuple[int, dict]]) -> list[dict]:
        part = [row for _, row in chunk]
        answers = generate_answers(lm, part, max_new_tokens=max_new_tokens, sampling=sampling, seed=seed)
        records = [{"index": i, **rec} for (i, _), rec in zip(chunk, score_similarity(part, answers, embedder,
                                                                                       bertscorer))]
        require_finite(records, SCORE_FIELDS, f"{detailed_path}")
        return records

    return run_per_sample(detailed_path, list(enumerate(rows)), make, key_of=lambda it: it[0], chunk=chunk_size,
                          resume=resume, fingerprint=fingerprint, check=lambda r, it: same_question(r, it[1]["question"]),
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
    setup_logging()
    if cfg.from_detailed:
        return rescore_to_files(cfg)
    from aligner.eval.metrics.similarity import load_bertscorer

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = load_halueval(cfg.data_path, cfg.limit)
    logger.info("%d HaluEval rows from %s", len(rows), cfg.data_path)
    names = planned_adapter_names(cfg.lora_path)
    for name in names:
        refuse_to_overwrite(result_file(out, "detailed", run_tag(cfg.run_name, name, several=len(names) > 1)),
                            cfg.resume, cfg.overwrite)
    backend = resolve_backend(cfg.backend)
    sampling = resolve_sampling(cfg, cfg.model_path)
    logger.info("decoding: %s", "greedy" if sampling["temperature"] == 0 else f"sampling {sampling}, seed {cfg.seed}")
    lm = load_generator(cfg, backend)
    try:
        write_run_config(out, cfg, extra={"backend": backend, "n_rows": len(rows), "sampling": sampling})
        embedder = EmbeddingSimilarity(cfg.embed_model, batch_size=max(cfg.batch_size, 32))
        bertscorer = load_bertscorer(cfg.bertscore_model, cfg.bertscore_num_layers, batch_size=max(cfg.batch_size, 32))
        scorers = {"embed_model": path_identity(cfg.embed_model), "bertscore_model": path_identity(cfg.bertscore_model),
                   "bertscore_num_layers": cfg.bertscore_num_layers}
        results = {}
        for name, lora in lm.each_adapter():
            tag = run_tag(cfg.run_name, name, several=len(lm.adapter_names) > 1)
            detailed = result_file(out, "detailed", tag)
            logger.info("evaluating %s (adapter: %s) -> %s", cfg.model_path, lora or "none", detailed)
            records = run_similarity_eval(
                lm, rows, embedder, bertscorer, detailed, resume=cfg.resume, max_new_tokens=cfg.max_new_tokens,
                chunk_size=chunk_size(cfg, lm), progress=cfg.progress, sampling=sampling, seed=cfg.seed,
                fingerprint={**generation_fingerprint(cfg, "similarity", lora, backend, sampling=sampling),
                             **scorers})
            metrics = {"model": cfg.model_path, "lora_path": lora, "method": SIMILARITY_METHOD,
                       **aggregate_similarity(records)}
            write_json_atomic(result_file(out, "metrics", tag), metrics)
            logger.info("%s: hallucination rate %.4f, margin %.4f, BERTScore %s, BLEU %.4f, ROUGE-L %.4f (%d samples, "
                        "%d empty)", name or "base", metrics["hallucination_rate"], metrics["avg_confidence_margin"],
                        metrics["avg_bert_score"], metrics["avg_bleu"], metrics["avg_rouge_l"],
                        metrics["total_samples"], metrics["n_empty"])
            results[name or "base"] = metrics
    finally:
        release_lm(lm)
    return results


