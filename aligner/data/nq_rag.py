"""Stage 2, the NQ RAG set (create_nq_training.py / create_nq_validation.py): per NQ question with a gold
answer, the top-k chunks of the FAISS index, reranked by a cross-encoder, the best few kept; and the
stand-alone retrieve+rerank command for any questions (faiss_rerank.py).

RAG records are appended per batch through ``aligner.core.runner.run_per_sample``, keyed by ``example_id``; a
resumed file must carry the same run fingerprint (models, dtype, corpus, k's).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.cli import override
from aligner.core.io import read_jsonl, write_jsonl_atomic
from aligner.core.runinfo import finish_stage, setup_logging, start_stage, write_run_config
from aligner.core.runner import data_fingerprint, path_identity, run_per_sample
from aligner.data.retrieval import (
    CONTEXT_SEPARATOR,
    CrossEncoderReranker,
    FaissRetriever,
    RetrievalSettings,
    load_retrieval,
    rerank_hits,
)
from aligner.data.sft import different_question
from aligner.data.sources.nq import STUDY_TRAIN_SHARDS, NQShards, nq_question_items


@dataclass(kw_only=True)
class NQRagConfig(NQShards, RetrievalSettings):
    """create_nq_training.py: the study's shards train 00-04 (create_nq_validation.py: --nq_shards nq-dev-00,
    val_nq_rag.jsonl, --limit 1000)."""

    nq_shards: list[str] = override(NQShards, "nq_shards", list(STUDY_TRAIN_SHARDS))
    output_file: str = field(default="train_nq_rag.jsonl", metadata={"help": "RAG records"})
    retrieval_batch_size: int = field(default=64, metadata={"help": "questions embedded per batch"})
    rerank_batch_size: int = field(default=32, metadata={"help": "(question, chunk) pairs per reranker batch"})
    limit: int = field(default=-1, metadata={
        "help": "the first N NQ records (each is written, with answers [] when it has no gold answer), -1 = all"})
    skip_unanswered: bool = field(default=False, metadata={
        "help": "leave out records without a gold answer (default: written with answers [], as the study did; the "
                "SFT view skips them)"})
    seed: int = field(default=42, metadata={"help": "recorded only; retrieval and reranking are deterministic"})
    resume: bool = field(default=False, metadata={"help": "keep the records already in --output_file"})
    skip_invalid: bool = field(default=False, metadata={"help": "skip (and count) malformed NQ lines"})
    progress: bool = field(default=True, metadata={"help": "no progress bars (default: bars on)",
                                                   "flag": "--no_progress"})


@dataclass(kw_only=True)
class RerankConfig(RetrievalSettings):
    """faiss_rerank.py: questions -> top-k chunks -> cross-encoder -> best few."""

    # "action": "extend" keeps `--query A --query B` adding up, as the study's repeatable flag did.
    query: list[str] = field(default_factory=list, metadata={
        "help": "the question(s) to retrieve for; repeat or list several (default: none)", "nargs": "*",
        "action": "extend"})
    queries_file: str | None = field(default=None, metadata={
        "help": "JSON lines with a 'question' field (default: none)"})
    output_file: str | None = field(default=None, metadata={
        "help": "write results as JSON lines here; else print them (default: none)"})
    batch_size: int = field(default=32, metadata={"help": "reranker batch size"})
    limit: int = field(default=-1, metadata={"help": "at most this many queries, -1 = all"})
    seed: int = field(default=42, metadata={"help": "recorded only; retrieval is deterministic"})


def rag_record(item: dict, retriever: FaissRetriever, reranker: CrossEncoderReranker, hits: list[tuple[int, float]],
               top_k_rerank: int = 5) -> dict:
    """The NQ RAG record for one question from its retrieval hits: the reranker's top ``top_k_rerank``."""
    top = rerank_hits(item["question"], retriever, reranker, hits, top_k_rerank)
    return {"example_id": item["example_id"], "question": item["question"], "contexts": top["contexts"],
            "context": CONTEXT_SEPARATOR.join(top["contexts"]), "answers": item["answers"],
            "chunk_ids": top["chunk_ids"], "rerank_scores": [round(s, 6) for s in top["rerank_scores"]]}


def nq_rag_fingerprint(cfg: RetrievalSettings) -> dict:
    """What a RAG record depends on: the models (and the dtype they run in), the chunk corpus, the k's."""
    from aligner.core.models import resolve_dtype

    return {"task": "nq_rag", "embed_model": path_identity(cfg.embed_model),
            "rerank_model": path_identity(cfg.rerank_model), "dtype": str(resolve_dtype("auto", cfg.device)),
            "chunks_sha256": data_fingerprint(cfg.chunks_file), "top_k_retrieve": cfg.top_k_retrieve,
            "top_k_rerank": cfg.top_k_rerank, "rerank_max_length": cfg.rerank_max_length}


def make_nq_rag_set(cfg: NQRagConfig) -> dict:
    """The NQ RAG records of ``cfg``'s shards into ``cfg.output_file`` (run_config.json beside it); returns the
    counts."""
    stats: dict = {}
    paths = cfg.paths(stats)
    out_dir = start_stage(Path(cfg.output_file).resolve().parent, cfg)
    items = list(nq_question_items(paths, skip_invalid=cfg.skip_invalid, limit=cfg.limit, stats=stats,
                                   keep_unanswered=not cfg.skip_unanswered))
    models: list = []  # (retriever, reranker), loaded by the first batch: a finished run loads nothing
    written = 0

    def make(batch: list[dict]) -> list[dict]:
        nonlocal written
        if not models:
            models.extend(load_retrieval(cfg, cfg.rerank_batch_size))
        retriever, reranker = models
        hits = retriever.search([it["question"] for it in batch], cfg.top_k_retrieve,
                                batch_size=cfg.retrieval_batch_size)
        written += len(batch)
        return [rag_record(it, retriever, reranker, h, cfg.top_k_rerank) for it, h in zip(batch, hits)]

    run_per_sample(cfg.output_file, items, make, key_of=lambda it: it["example_id"], key="example_id",
                   chunk=cfg.retrieval_batch_size, resume=cfg.resume, fingerprint=nq_rag_fingerprint(cfg),
                   check=lambda rec, it: different_question(rec, it["question"]), desc="retrieve+rerank",
                   unit="question", progress=cfg.progress, keep_records=False)
    counts = {"nq_shards": [str(p) for p in paths], "missing_shards": stats.get("missing_shards", []),
              "nq_records_read": stats.get("read", 0), "short_answers": stats.get("answer_short", 0),
              "long_answer_fallbacks": stats.get("answer_long", 0), "no_answer": stats.get("answer_none", 0),
              "skipped_no_answer": stats.get("no_answer", 0),
              "invalid_lines_skipped": stats.get("invalid", 0), "already_done": len(items) - written,
              "written": written, "corpus_chunks": len(models[0].chunks) if models else None}
    return finish_stage(out_dir, cfg, counts)


def rerank_queries(cfg: RerankConfig) -> dict:
    """faiss_rerank.py: the reranked top chunks of every query, written to ``cfg.output_file`` or printed;
    returns the counts."""
    setup_logging()
    queries = list(cfg.query)
    if cfg.queries_file:
        queries += [r["question"] for r in read_jsonl(cfg.queries_file, required=["question"])]
    if cfg.limit >= 0:
        queries = queries[:cfg.limit]
    if not queries:
        raise ValueError("give --query or --queries_file")
    retriever, reranker = load_retrieval(cfg, cfg.batch_size)
    results = [{"question": q, **rerank_hits(q, retriever, reranker, hits, cfg.top_k_rerank)}
               for q, hits in zip(queries, retriever.search(queries, cfg.top_k_retrieve))]
    if cfg.output_file:
        write_jsonl_atomic(cfg.output_file, results)
        write_run_config(Path(cfg.output_file).parent, cfg, extra={"counts": {"queries": len(results)}})
    else:
        for r in results:
            print(json.dumps({k: r[k] for k in ("question", "titles", "rerank_scores")}, ensure_ascii=False))
    counts = {"queries": len(results), "corpus_chunks": len(retriever.chunks)}
    print(json.dumps(counts, indent=2))
    return counts
