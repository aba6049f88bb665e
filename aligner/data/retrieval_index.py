"""Stage 1: Natural Questions articles -> sentence-aligned chunks -> embeddings -> FAISS index + metadata.json
(faiss_index_creator.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.io import DataError, write_json_atomic, write_jsonl_atomic
from aligner.core.runinfo import finish_stage, start_stage
from aligner.data.retrieval import (
    EmbeddingSettings,
    build_flat_ip_index,
    build_ivf_index,
    chunk_articles,
    embed_texts,
    faiss_gpu_count,
    load_embedder,
)
from aligner.data.sources.nq import CorpusStats, NQShards, collect_articles

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class IndexConfig(NQShards, EmbeddingSettings):
    """faiss_index_creator.py: every NQ shard (train and dev) -> the chunk corpus and its indexes."""

    output_dir: str = field(default="retrieval", metadata={"help": "where the chunks, index and metadata go"})
    chunks_file: str = field(default="nq_wiki_chunks.jsonl", metadata={
        "help": "chunk file name {title, text, url}, in --output_dir"})
    index_file: str = field(default="nq_wiki_index.faiss", metadata={"help": "IndexFlatIP file name"})
    gpu_index_file: str = field(default="nq_wiki_index_gpu.faiss", metadata={"help": "IVF index file name"})
    metadata_file: str = field(default="metadata.json", metadata={"help": "metadata file name"})
    chunk_size: int = field(default=512, metadata={"help": "maximum words per chunk"})
    chunk_overlap: int = field(default=50, metadata={"help": "words shared by consecutive chunks"})
    min_chars: int = field(default=200, metadata={"help": "drop articles with less plain text"})
    batch_size: int = field(default=64, metadata={"help": "embedding batch size"})
    gpu_index: bool = field(default=False, metadata={
        "help": "also build an IVF index (trained on the GPU when faiss sees one, else on CPU)"})
    nlist: int | None = field(default=None, metadata={"help": "IVF clusters (default: about 4*sqrt(chunks), <= 4096)"})
    nprobe: int | None = field(default=None, metadata={"help": "IVF clusters searched (default: min(32, nlist/10))"})
    limit: int = field(default=-1, metadata={"help": "read at most this many NQ records, -1 = all"})
    seed: int = field(default=42, metadata={"help": "IVF k-means seed"})
    skip_invalid: bool = field(default=False, metadata={
        "help": "skip (and count) malformed NQ lines instead of stopping"})
    progress: bool = field(default=True, metadata={"help": "no progress bars (default: bars on)",
                                                   "flag": "--no_progress"})


def _write_indexes(emb, out: Path, cfg: IndexConfig) -> dict:
    """IndexFlatIP (+ IVF with ``cfg.gpu_index``) of the embeddings into ``out``; returns the metadata's
    ``indexes`` entry."""
    import faiss

    faiss.write_index(build_flat_ip_index(emb), str(out / cfg.index_file))
    indexes = {"cpu": {"file": cfg.index_file, "type": "IndexFlatIP", "metric": "inner_product"}}
    if cfg.gpu_index:
        if faiss_gpu_count() == 0:
            logger.warning("--gpu_index: faiss sees no GPU (faiss-cpu build?); training the IVF index on CPU")
        ivf, info = build_ivf_index(emb, cfg.nlist, cfg.nprobe, use_gpu=True, seed=cfg.seed)
        faiss.write_index(ivf, str(out / cfg.gpu_index_file))
        indexes["gpu"] = {"file": cfg.gpu_index_file, "metric": "inner_product", **info}
    return indexes


def _metadata(cfg: IndexConfig, sources, cstats: CorpusStats, n_articles: int, n_chunks: int, dim: int,
              indexes: dict) -> dict:
    return {
        "embedding_model": cfg.embed_model, "embedding_dim": dim, "normalized_embeddings": True,
        "chunking": {"method": "sentence_aligned_words", "sentence_splitter": "aligner.data.retrieval.split_sentences "
                     "(rule-based, no downloads)", "chunk_size_words": cfg.chunk_size,
                     "chunk_overlap_words": cfg.chunk_overlap},
        "min_article_chars": cfg.min_chars, "indexes": indexes, "chunks_file": cfg.chunks_file,
        "total_chunks": n_chunks, "total_articles": n_articles, "nq_records_read": cstats.records,
        "duplicate_titles_dropped": cstats.duplicate_titles, "short_articles_dropped": cstats.too_short,
        "untitled_dropped": cstats.untitled, "invalid_lines_skipped": cstats.invalid,
        "sources": [str(p) for p in sources],
    }


def build_retrieval_index(cfg: IndexConfig) -> dict:
    """Articles -> chunks file -> embeddings -> IndexFlatIP (+ IVF with ``cfg.gpu_index``) -> metadata.json, and
    run_config.json, in ``cfg.output_dir``; returns the counts."""
    paths = cfg.paths("all")
    out = start_stage(cfg.output_dir, cfg)
    out.mkdir(parents=True, exist_ok=True)
    articles, cstats = collect_articles(paths, min_chars=cfg.min_chars, skip_invalid=cfg.skip_invalid,
                                        limit=cfg.limit, progress=cfg.progress)
    if not articles:
        raise DataError(paths[0], f"no usable article in {len(paths)} shard(s) "
                                  f"({cstats.records} records, {cstats.too_short} shorter than {cfg.min_chars} chars)")
    chunks = chunk_articles(articles, cfg.chunk_size, cfg.chunk_overlap, cfg.progress)
    write_jsonl_atomic(out / cfg.chunks_file, chunks)
    emb = embed_texts(load_embedder(cfg.embed_model, cfg.device), [c["text"] for c in chunks],
                      batch_size=cfg.batch_size, progress=cfg.progress)
    indexes = _write_indexes(emb, out, cfg)
    dim = int(emb.shape[1])
    write_json_atomic(out / cfg.metadata_file, _metadata(cfg, paths, cstats, len(articles), len(chunks), dim, indexes))
    counts = {"nq_records": cstats.records, "articles": len(articles), "duplicate_titles": cstats.duplicate_titles,
              "short_articles_dropped": cstats.too_short, "untitled_dropped": cstats.untitled,
              "invalid_lines_skipped": cstats.invalid, "chunks": len(chunks), "embedding_dim": dim,
              "indexes": sorted(indexes)}
    return finish_stage(out, cfg, counts)
