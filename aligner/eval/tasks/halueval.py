"""HaluEval QA evaluation: the similarity flow and the two-step (generate, then judge) flow.

Similarity flow (``evaluation/eval_halueval.py``): the model answers "Context: {knowledge}\\n\\nQuestion:
{question}" (one user turn, chat template, greedy); the answer is hallucinated when its sentence
embedding is closer to the hallucinated answer than to the right one.  BLEU, ROUGE-L and BERTScore
against the right answer are reported beside it.

Two-step flow: step 1 (``eval_haleval_llm_step1.py``) answers with a system prompt asking for the
shortest correct answer and writes predictions; step 2 (``eval_haleval_llm_step2.py``) scores each
answer's faithfulness to the knowledge with a classifier judge (HHEM or NLI); faithfulness < 0.5
counts as a hallucination.

Task code here talks to the ``aligner.backends.LM`` interface only.  Per-sample records are appended
as they are produced (``ResumableJsonlWriter``); on ``resume`` the records already written must match
the data rows one for one, in order, or the run stops instead of mixing two datasets.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from aligner.core.io import DataError, ResumableJsonlWriter, read_jsonl
from aligner.eval.metrics.similarity import BertScoreF1, EmbeddingSimilarity
from aligner.eval.metrics.text import mean, rouge_l, sentence_bleu
from aligner.lm.interface import LM
from aligner.prompts import HALUEVAL_STEP1_SYSTEM, halueval_messages

logger = logging.getLogger(__name__)

DETAILED_FIELDS = ("question", "generated", "right_answer", "sim_right", "sim_halluc", "bert_score", "bleu",
                   "rouge_l", "is_hallucinated")
SIMILARITY_METHOD = "sentence_transformer_similarity"
FAITHFULNESS_THRESHOLD = 0.5


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


def run_file_name(kind: str, run_name: str, adapter: str | None = None, n_adapters: int = 1,
                  ext: str = "json") -> str:
    """``{kind}_{run}.{ext}``, or ``{kind}_{run}_{adapter}.{ext}`` when several adapters are evaluated together."""
    stem = run_name if n_adapters <= 1 else f"{run_name}_{adapter or 'base'}"
    return f"{kind}_{stem}.{ext}"


def run_name_from_file(path: str | os.PathLike, prefix: str) -> str:
    """``predictions_abc.jsonl`` -> ``abc`` (the file stem without ``prefix_``)."""
    stem = Path(path).name
    stem = re.sub(r"\.jsonl?$", "", stem)
    return stem[len(prefix) + 1:] if stem.startswith(prefix + "_") else stem


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


def _resume_check(path: Path, done: Sequence[dict], rows: Sequence[dict], question_key: str = "question") -> None:
    if len(done) > len(rows):
        raise DataError(path, f"holds {len(done)} records but this run has only {len(rows)} rows; "
                              "cannot resume (different --data_path or --limit?)")
    for i, (rec, row) in enumerate(zip(done, rows)):
        if rec.get(question_key) != row.get("question"):
            raise DataError(path, f"record {i + 1} is for another question than data row {i + 1}; cannot resume "
                                  "(different --data_path or --limit?); rerun without --resume", i + 1)


def _chunked_run(rows: Sequence[dict], out_path: str | os.PathLike, resume: bool, chunk_size: int,
                 make_records: Callable[[list[dict]], list[dict]], desc: str, progress: bool) -> list[dict]:
    """Run ``make_records`` over the rows not yet in ``out_path``, appending each chunk's records."""
    from tqdm.auto import tqdm

    out_path = Path(out_path)
    with ResumableJsonlWriter(out_path, resume=resume) as writer:
        _resume_check(out_path, writer.records, rows)
        start = len(writer.records)
        if start:
            logger.info("%s: resuming after %d of %d samples", out_path, start, len(rows))
        bar = tqdm(total=len(rows), initial=start, desc=desc, unit="sample", disable=not progress)
        for lo in range(start, len(rows), max(1, chunk_size)):
            chunk = list(rows[lo: lo + chunk_size])
            records = make_records(chunk)
            if len(records) != len(chunk):
                raise RuntimeError(f"{desc}: {len(records)} records for {len(chunk)} rows")
            writer.extend(records)
            bar.update(len(chunk))
        bar.close()
        return list(writer.records)


# ---------------------------------------------------------------------------------------------
# similarity flow
# ---------------------------------------------------------------------------------------------

def score_similarity(rows: Sequence[dict], generated: Sequence[str], embedder: EmbeddingSimilarity,
                     bertscorer: BertScoreF1 | None = None) -> list[dict]:
    """Per-sample records of the similarity flow (fields ``DETAILED_FIELDS``)."""
    if len(rows) != len(generated):
        raise ValueError(f"{len(rows)} rows but {len(generated)} generations")
    right = [r["right_answer"] for r in rows]
    halluc = [r["hallucinated_answer"] for r in rows]
    gen = list(generated)
    sim_right, sim_halluc = embedder.cosine_to_each(gen, right, halluc)
    bert = bertscorer.score(gen, right) if bertscorer is not None else [None] * len(gen)
    records = []
    for i, row in enumerate(rows):
        s_right, s_halluc = sim_right[i], sim_halluc[i]
        records.append({
            "question": row["question"],
            "generated": gen[i],
            "right_answer": right[i],
            "sim_right": s_right,
            "sim_halluc": s_halluc,
            "bert_score": bert[i],
            "bleu": sentence_bleu(gen[i], right[i]),
            "rouge_l": rouge_l(gen[i], right[i]),
            "is_hallucinated": bool(s_halluc > s_right),
        })
    return records


def aggregate_similarity(records: Sequence[dict]) -> dict:
    """hallucination_rate, avg_confidence_margin (mean sim_right - sim_halluc), avg_bert_score, avg_bleu,
    avg_rouge_l, total_samples."""
    n = len(records)
    if n == 0:
        raise ValueError("no samples to aggregate")
    return {
        "hallucination_rate": sum(bool(r["is_hallucinated"]) for r in records) / n,
        "avg_confidence_margin": mean([r["sim_right"] - r["sim_halluc"] for r in records]),
        "avg_bert_score": mean([r.get("bert_score") for r in records]),
        "avg_bleu": mean([r["bleu"] for r in records]),
        "avg_rouge_l": mean([r["rouge_l"] for r in records]),
        "total_samples": n,
    }


def run_similarity_eval(lm: LM, rows: Sequence[dict], embedder: EmbeddingSimilarity,
                        bertscorer: BertScoreF1 | None, detailed_path: str | os.PathLike, resume: bool = False,
                        max_new_tokens: int = 128, chunk_size: int = 128, progress: bool = True) -> list[dict]:
    """Generate with the LM's active adapter, score and append to ``detailed_path``; returns all records."""
    def make(chunk: list[dict]) -> list[dict]:
        gen = generate_answers(lm, chunk, max_new_tokens=max_new_tokens)
        return score_similarity(chunk, gen, embedder, bertscorer)

    return _chunked_run(rows, detailed_path, resume, chunk_size, make, "halueval", progress)


def rescore_detailed(path: str | os.PathLike) -> tuple[list[dict], dict]:
    """Recompute BLEU, ROUGE-L, is_hallucinated and the margin of an existing detailed file (no model).

    Works on the study's own detailed files too (which stored no BLEU/ROUGE-L per sample); BERTScore is
    averaged from the stored values when every record has one.
    """
    rows = read_jsonl(path, required=("generated", "right_answer", "sim_right", "sim_halluc"), allow_empty=True)
    records = []
    for r in rows:
        rec = dict(r)
        rec["bleu"] = sentence_bleu(r["generated"], r["right_answer"])
        rec["rouge_l"] = rouge_l(r["generated"], r["right_answer"])
        rec["is_hallucinated"] = bool(r["sim_halluc"] > r["sim_right"])
        records.append(rec)
    return records, aggregate_similarity(records)


# ---------------------------------------------------------------------------------------------
# two-step flow
# ---------------------------------------------------------------------------------------------

def run_step1_generation(lm: LM, rows: Sequence[dict], predictions_path: str | os.PathLike, resume: bool = False,
                         max_new_tokens: int = 128, chunk_size: int = 128, system: str = HALUEVAL_STEP1_SYSTEM,
                         progress: bool = True) -> list[dict]:
    """Step 1: answers to ``predictions_path`` as {question, knowledge, right_answer, generated_text}."""
    def make(chunk: list[dict]) -> list[dict]:
        gen = generate_answers(lm, chunk, max_new_tokens=max_new_tokens, system=system)
        return [{"question": r["question"], "knowledge": r["knowledge"], "right_answer": r["right_answer"],
                 "generated_text": g} for r, g in zip(chunk, gen)]

    return _chunked_run(rows, predictions_path, resume, chunk_size, make, "generate", progress)


def score_faithfulness(predictions: Sequence[dict], judge, bertscorer: BertScoreF1 | None = None,
                       threshold: float = FAITHFULNESS_THRESHOLD) -> list[dict]:
    """Per-sample records of step 2: faithfulness of the answer to the knowledge, BERTScore and BLEU
    against the right answer."""
    from aligner.eval.metrics.judges import judge_faithfulness

    gen = [p["generated_text"] for p in predictions]
    right = [p["right_answer"] for p in predictions]
    faith = judge_faithfulness(judge, [p["knowledge"] for p in predictions], gen, progress=False)
    bert = bertscorer.score(gen, right) if bertscorer is not None else [None] * len(gen)
    return [{
        "question": p["question"],
        "right_answer": p["right_answer"],
        "generated": g,
        "faithfulness_score": f,
        "is_hallucinated": bool(f < threshold),
        "bert_score": b,
        "bleu": sentence_bleu(g, r),
    } for p, g, r, f, b in zip(predictions, gen, right, faith, bert)]


def aggregate_faithfulness(records: Sequence[dict]) -> dict:
    """hallucination_rate, avg_faithfulness, avg_bert_f1, avg_bleu, total."""
    n = len(records)
    if n == 0:
        raise ValueError("no samples to aggregate")
    return {
        "hallucination_rate": sum(bool(r["is_hallucinated"]) for r in records) / n,
        "avg_faithfulness": mean([r["faithfulness_score"] for r in records]),
        "avg_bert_f1": mean([r.get("bert_score") for r in records]),
        "avg_bleu": mean([r["bleu"] for r in records]),
        "total": n,
    }


def run_step2_judging(predictions: Sequence[dict], judge, bertscorer: BertScoreF1 | None,
                      detailed_path: str | os.PathLike, resume: bool = False, chunk_size: int = 256,
                      threshold: float = FAITHFULNESS_THRESHOLD, progress: bool = True) -> list[dict]:
    def make(chunk: list[dict]) -> list[dict]:
        return score_faithfulness(chunk, judge, bertscorer, threshold)

    return _chunked_run(predictions, detailed_path, resume, chunk_size, make, "judge", progress)
