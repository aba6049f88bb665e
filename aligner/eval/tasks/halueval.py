"""HaluEval QA, similarity flow (``evaluation/eval_halueval.py``), and what both generating HaluEval flows share.

The model answers "Context: {knowledge}\\n\\nQuestion: {question}" (one user turn, chat template; decoded with the
model's own generation_config by default, as the study, or greedily); the answer is hallucinated when its sentence
embedding is closer to the hallucinated answer than to the right one.  BLEU, ROUGE-L and BERTScore against the
right answer are reported beside it, and whether the answer *is* the right or the hallucinated answer once both
are normalised (``match_right`` / ``match_hallucinated``: lower case, no punctuation, single spaces).

``--study_compat`` is the variant declared here (``STUDY_VARIANT``): fp16 weights (study ``eval_halueval.py:91-95``),
the chat text tokenised with the special tokens again, i.e. two BOS (``:167-170``), HF ``generate``.  The two-step
flow is ``aligner.eval.tasks.halueval_twostep``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from aligner.core.cli import override
from aligner.core.fidelity import StudyCompat
from aligner.core.io import read_jsonl, write_json_atomic, write_jsonl_atomic
from aligner.core.paths import result_file, tag_from_file
from aligner.core.runinfo import setup_logging, write_run_config
from aligner.core.text import clean_up_tokenization_spaces
from aligner.data.sft import different_question
from aligner.data.sources.halueval import DEFAULT_DATA_PATH, load_halueval, resolve_data_path
from aligner.eval.checks import all_rows, count_empty
from aligner.eval.evaluate import evaluate
from aligner.eval.metrics.registry import aggregate
from aligner.eval.metrics.text import normalize_answer, rouge_l, sentence_bleu
from aligner.eval.task import EvalSettings, Phase, Run, Task, apply_variant
from aligner.lm.interface import LM
from aligner.lm.settings import (
    AdapterCheckSettings,
    BackendSettings,
    ChatSettings,
    ModelSettings,
    SamplingSettings,
    resolve_sampling,
)
from aligner.prompts import CONTEXT_QUESTION_TEMPLATE, halueval_messages

logger = logging.getLogger(__name__)

DETAILED_FIELDS = ("index", "question", "generated", "right_answer", "sim_right", "sim_halluc", "bert_score", "bleu",
                   "rouge_l", "is_hallucinated", "match_right", "match_hallucinated")
SIMILARITY_METHOD = "sentence_transformer_similarity"
#: the declared metrics (aligner.eval.metrics.registry) the similarity flow reports, besides its counts
SIMILARITY_METRICS = ("hallucination_rate", "avg_confidence_margin", "avg_bert_score", "avg_bleu", "avg_rouge_l",
                      "match_right_rate", "match_hallucinated_rate")
SCORE_FIELDS = ("sim_right", "sim_halluc", "bert_score")
GREEDY = {"temperature": 0.0}
#: ``--study_compat`` of both generating flows (README: Differences from the study, E7/E8): fp16, two BOS
STUDY_VARIANT = {"dtype": "fp16", "double_bos": True}
#: ... and of the similarity flow: the adapter merged into the fp16 weights (E7), transformers 4's decode clean-up
#: (E26), a NaN BERTScore F1 set to 0 (E16)
SIMILARITY_STUDY_VARIANT = {**STUDY_VARIANT, "merge_adapter": True, "clean_up_decode": True, "nan_bertscore": "zero"}


@dataclass(kw_only=True)
class BertScoreSettings:
    """The BERTScore scorer both flows report beside their own metric."""

    bertscore_model: str = field(default="microsoft/deberta-v3-large", metadata={
        "help": "BERTScore backbone; 'none' skips BERTScore (reported as null)", "group": "scorers",
        "identity": "path"})
    bertscore_num_layers: int | None = field(default=None, metadata={
        "help": "BERTScore layer; needed for backbones bert_score does not know (default: none, bert_score's "
                "choice for the model)", "group": "scorers"})
    nan_bertscore: str = field(default="stop", metadata={
        "help": "a NaN BERTScore F1: stop (the run stops, naming the row) or zero (set to 0 and counted in "
                "n_bertscore_nan, as bert_score did for the study; on with --study_compat)",
        "choices": ["stop", "zero"], "group": "scorers"})


@dataclass(kw_only=True)
class HaluEvalGenerationConfig(EvalSettings, ModelSettings, BackendSettings, ChatSettings, AdapterCheckSettings,
                               StudyCompat):
    """What both generating flows share: the data, the generation and the resumable output."""

    model_path: str = override(ModelSettings, "model_path", dataclasses.MISSING, help="generator model folder or hub id")
    output_dir: str = override(EvalSettings, "output_dir", "evaluation/results/Halueval")
    data_path: str = field(default=DEFAULT_DATA_PATH, metadata={"help": "HaluEval qa_data.json (JSON lines)",
                                                                "identity": "data"})
    batch_size: int = field(default=8, metadata={"help": "prompts per generate call (HF backend)", "record": False})
    max_new_tokens: int = field(default=128, metadata={"help": "generation length limit"})
    double_bos: bool = field(default=False, metadata={
        "help": "tokenise the chat-rendered prompt with the special tokens again, giving two BOS as the study's code "
                "did (on with --study_compat)", "group": "fidelity"})
    chunk_size: int = field(default=0, metadata={
        "help": "samples done between two appends to the per-sample file; 0 = what suits the backend "
                "(at least 128; 1024 for vLLM)", "record": False})

    def __post_init__(self):
        self.limit = all_rows(self.limit)
        if self.study_compat:
            apply_variant(self, STUDY_VARIANT)


@dataclass(kw_only=True)
class HaluEvalSimilarityConfig(HaluEvalGenerationConfig, BertScoreSettings, SamplingSettings):
    """``evaluation/eval_halueval.py``."""

    model_path: str | None = override(ModelSettings, "model_path", None,
                                      help="generator model folder or hub id (required unless --from_detailed)")
    run_name: str | None = override(EvalSettings, "run_name", None, help=(
        "names the output files metrics_RUN.json / detailed_RUN.jsonl (required unless --from_detailed, where it "
        "defaults to the detailed file's name + '_rescored')"))
    batch_size: int = override(HaluEvalGenerationConfig, "batch_size", 8,
                               help="generation batch size (HF backend); also the embedding/BERTScore batch")
    generation_config: str = override(SamplingSettings, "generation_config", "model", help=(
        "model (the study's: its generate call had no do_sample=False, so the model's generation_config.json "
        "applied: Llama-3.2-Instruct samples at temperature 0.6, top-p 0.9, top-k 50), or greedy"))
    embed_model: str = field(default="all-mpnet-base-v2", metadata={
        "help": "sentence-transformers model for sim_right/sim_halluc", "group": "scorers", "identity": "path"})
    gpu_memory_utilization: float = override(BackendSettings, "gpu_memory_utilization", 0.7,
                                             help="vLLM GPU memory share, leaving room for the scorers")
    clean_up_decode: bool = field(default=False, metadata={
        "help": "apply transformers 4's decode clean-up (' .' -> '.', \" n't\" -> \"n't\" ...) to the answers, as the "
                "study's HF decode on transformers 4.56 did (on with --study_compat)", "group": "fidelity"})
    from_detailed: str | None = field(default=None, metadata={
        "help": "re-score an existing detailed file (BLEU, ROUGE-L, hallucination rate, margin) without any model, "
                "and write metrics for it (default: none)", "record": False})

    def __post_init__(self):
        super().__post_init__()
        if self.study_compat:
            apply_variant(self, SIMILARITY_STUDY_VARIANT)
        if self.from_detailed is None and (not self.model_path or not self.run_name):
            raise ValueError("--model_path and --run_name are required (unless --from_detailed)")
        if self.study_compat and self.backend == "auto":
            self.backend = "hf"  # the study's similarity flow generated with HF


# ---------------------------------------------------------------------------------------------
# what both generating flows share
# ---------------------------------------------------------------------------------------------

def halueval_prompts(lm: LM, rows: Sequence[dict], system: str | None = None) -> list[str]:
    """Chat-rendered prompts: one user turn "Context: ...\\n\\nQuestion: ..." (after ``system`` if given)."""
    return [lm.chat_prompt(halueval_messages(r["knowledge"], r["question"], system)) for r in rows]


def generate_answers(lm: LM, rows: Sequence[dict], max_new_tokens: int = 128, system: str | None = None,
                     progress: bool = False, sampling: dict | None = None, seed: int | None = None,
                     clean_up: bool = False) -> list[str]:
    """Answers (stripped of surrounding whitespace, as the study stored them): greedy, or as ``sampling`` says
    (``aligner.lm.settings.resolve_sampling``), seeded by ``seed``; ``clean_up``: transformers 4's decode clean-up
    first."""
    outs = lm.generate_until(halueval_prompts(lm, rows, system), max_new_tokens=max_new_tokens, progress=progress,
                             seed=seed, **(sampling or GREEDY))
    return [(clean_up_tokenization_spaces(o) if clean_up else o).strip() for o in outs]


def bertscore_nan(records: list[dict], rule: str) -> list[dict]:
    """``--nan_bertscore zero``: a NaN BERTScore F1 becomes 0.0 and the record says so (``bert_score_nan``), as
    bert_score's own masked_fill did for the study; ``stop`` leaves it for the finite check."""
    if rule == "zero":
        for rec in records:
            nan = isinstance(rec.get("bert_score"), float) and math.isnan(rec["bert_score"])
            rec["bert_score_nan"] = nan
            if nan:
                rec["bert_score"] = 0.0
    return records


def nan_count(records: Sequence[dict], rule: str) -> dict:
    return {"n_bertscore_nan": sum(bool(r.get("bert_score_nan")) for r in records)} if rule == "zero" else {}


def same_question(rec: dict, item: tuple[int, dict]) -> str | None:
    problem = different_question(rec, item[1]["question"])
    return f"{problem}, cannot resume" if problem else None  # the flows' wording since the study


def flow_metrics(records: Sequence[dict], names: Sequence[str], count: str) -> dict:
    """The declared means and the sample count (``n_empty`` is the runner's, from the phase's text field)."""
    if not records:
        raise ValueError("no samples to aggregate")
    return {**aggregate(records, names), count: len(records)}


class HaluEvalGeneration(Task):
    """What both generating flows' tasks share: the rows, their identity, the chunk size."""

    def documents(self) -> dict:
        cfg = self.cfg
        self.rows = load_halueval(cfg.data_path, cfg.limit, required=self.required)
        logger.info("%d HaluEval rows from %s", len(self.rows), cfg.data_path)
        return {"docs": list(enumerate(self.rows))}

    def data_identity(self) -> dict:
        return {"data": str(resolve_data_path(self.cfg.data_path))}

    def chunk(self, lm: LM) -> int:
        # Appends that are too frequent cost an fsync per few samples; the backend says what one call should hold.
        return self.cfg.chunk_size or max(lm.generation_chunk, 128)


# ---------------------------------------------------------------------------------------------
# the similarity flow
# ---------------------------------------------------------------------------------------------

def score_similarity(rows: Sequence[dict], generated: Sequence[str], embedder, bertscorer=None) -> list[dict]:
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
             "is_hallucinated": bool(s_halluc > s_right), **answer_matches(g, r, h)}
            for row, g, r, h, s_right, s_halluc, b in zip(rows, gen, right, halluc, sim_right, sim_halluc, bert)]


def answer_matches(generated: str, right: str, hallucinated: str) -> dict:
    """Whether the answer is the right / the hallucinated answer after normalisation (``normalize_answer``)."""
    g = normalize_answer(generated)
    return {"match_right": g == normalize_answer(right), "match_hallucinated": g == normalize_answer(hallucinated)}


def aggregate_similarity(records: Sequence[dict], nan_rule: str = "stop") -> dict:
    """hallucination_rate, avg_confidence_margin (mean sim_right - sim_halluc), avg_bert_score, avg_bleu,
    avg_rouge_l, match_right_rate, match_hallucinated_rate, total_samples, n_empty (and n_bertscore_nan with
    ``--nan_bertscore zero``): the similarity phase's metrics and the re-scoring's."""
    return {**flow_metrics(records, SIMILARITY_METRICS, "total_samples"), "n_empty": count_empty(records),
            **nan_count(records, nan_rule)}


class HaluEvalSimilarity(HaluEvalGeneration):
    name = "halueval/similarity"
    versions = ("sentence-transformers", "bert-score")
    required = ("knowledge", "question", "right_answer", "hallucinated_answer")

    def __init__(self, cfg):
        super().__init__(cfg)
        self._scorers = self._sampling = None

    @property
    def sampling(self) -> dict:
        """The decoding settings (the model's generation_config read once, after the data is checked)."""
        if self._sampling is None:
            self._sampling = resolve_sampling(self.cfg, self.cfg.model_path)
            logger.info("decoding: %s", "greedy" if self._sampling["temperature"] == 0 else
                        f"sampling {self._sampling}, seed {self.cfg.seed}")
        return self._sampling

    def scorers(self):
        if self._scorers is None:  # once, after the generator loaded (the order the study's memory use assumed)
            from aligner.eval.metrics.similarity import EmbeddingSimilarity, load_bertscorer

            batch = max(self.cfg.batch_size, 32)
            self._scorers = (EmbeddingSimilarity(self.cfg.embed_model, batch_size=batch),
                             load_bertscorer(self.cfg.bertscore_model, self.cfg.bertscore_num_layers, batch_size=batch))
        return self._scorers

    def phases(self) -> list[Phase]:
        cfg = self.cfg

        def make(lm, items):
            rows = [row for _, row in items]
            answers = generate_answers(lm, rows, max_new_tokens=cfg.max_new_tokens, sampling=self.sampling,
                                       seed=cfg.seed, clean_up=cfg.clean_up_decode)
            return bertscore_nan(score_similarity(rows, answers, *self.scorers()), cfg.nan_bertscore)

        return [Phase("similarity", "detailed", make, key_of=lambda it: it[0], check=same_question, chunk=self.chunk,
                      finite=SCORE_FIELDS, text="generated",
                      metrics=lambda recs: aggregate_similarity(recs, cfg.nan_bertscore),
                      metric_keys=(*SIMILARITY_METRICS, "total_samples"))]

    def templates(self) -> tuple[str, ...]:
        return (CONTEXT_QUESTION_TEMPLATE,)

    def fingerprint_extras(self, phase: Phase) -> dict:
        return {"sampling": self.sampling}

    def run_fields(self, run: Run) -> dict:
        return {**super().run_fields(run), "method": SIMILARITY_METHOD}


def rescore_detailed(path: str | os.PathLike) -> tuple[list[dict], dict]:
    """Recompute BLEU, ROUGE-L, is_hallucinated and the margin of an existing detailed file (no model).

    Works on the study's own detailed files too (which stored no BLEU/ROUGE-L per sample); BERTScore is
    averaged from the stored values when every record has one; the answer matches need the hallucinated answer,
    which those files do not hold (reported as null then).
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
    write_run_config(cfg.output_dir, cfg, filename=f"run_config_{tag}.json")
    logger.info("re-scored %s: %s", cfg.from_detailed, result)
    return result


def run_halueval_similarity(cfg: HaluEvalSimilarityConfig) -> dict:
    """The similarity flow for the base model and/or each adapter (on one loaded base): detailed_R.jsonl and
    metrics_R.json per run; returns {adapter name or "base": metrics}.  With ``from_detailed``, only re-scores that
    file (``rescore_to_files``) and returns its metrics."""
    setup_logging()
    if cfg.from_detailed:
        return rescore_to_files(cfg)
    return evaluate(HaluEvalSimilarity(cfg))
