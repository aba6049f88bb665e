"""Stage 1: Natural Questions articles -> sentence-aligned chunks -> embeddings -> FAISS index + metadata.json
(faiss_index_creator.py).

Everything streams: articles are read, deduplicated (only the titles seen are held) and chunked one by one into
the chunks file; the embeddings are computed block by block (``--embed_block`` chunks) and each block is saved
under ``<index_file>.embeddings/`` as it finishes, so ``--resume`` after a crash keeps the chunks file and the
finished blocks (when they were made from the same shards and settings) and embeds only the rest.  Memory is the
index itself (chunks x dimension x 4 bytes) plus one block.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aligner.core.cli import override
from aligner.core.io import DataError, read_json, write_json_atomic
from aligner.core.runinfo import finish_stage, start_stage
from aligner.core.runner import data_fingerprint, path_identity
from aligner.data.retrieval import (
    EmbeddingSettings,
    build_flat_ip_index,
    build_ivf_index,
    chunk_articles,
    embed_texts,
    faiss_gpu_count,
    load_embedder,
)
from aligner.data.sources.nq import STUDY_INDEX_SHARDS, CorpusStats, NQShards, iter_articles

logger = logging.getLogger(__name__)

PROGRESS_FILE = "progress.json"


@dataclass(kw_only=True)
class IndexConfig(NQShards, EmbeddingSettings):
    """faiss_index_creator.py: the NQ shards (the study's: train 00-04 and dev 00) -> the chunk corpus and its
    indexes."""

    nq_shards: list[str] = override(NQShards, "nq_shards", list(STUDY_INDEX_SHARDS))
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
    embed_block: int = field(default=65536, metadata={
        "help": "chunks embedded (and saved) per block: what a resumed run keeps"})
    gpu_index: bool = field(default=False, metadata={
        "help": "also build an IVF index (trained on the GPU when faiss sees one, else on CPU)"})
    nlist: int | None = field(default=None, metadata={"help": "IVF clusters (default: about 4*sqrt(chunks), <= 4096)"})
    nprobe: int | None = field(default=None, metadata={"help": "IVF clusters searched (default: min(32, nlist/10))"})
    limit: int = field(default=-1, metadata={"help": "read at most this many NQ records, -1 = all"})
    seed: int = field(default=42, metadata={"help": "IVF k-means seed"})
    resume: bool = field(default=False, metadata={
        "help": "keep the chunks file and the embedding blocks of an interrupted run made from the same shards and "
                "settings"})
    keep_embeddings: bool = field(default=False, metadata={
        "help": "keep the embedding blocks after the index is written (default: deleted)"})
    skip_invalid: bool = field(default=False, metadata={
        "help": "skip (and count) malformed NQ lines instead of stopping"})
    progress: bool = field(default=True, metadata={"help": "no progress bars (default: bars on)",
                                                   "flag": "--no_progress"})


def _corpus_key(cfg: IndexConfig, paths) -> dict:
    """What the chunks file depends on (a resumed run reuses it only when this is unchanged)."""
    return {"sources": [str(p) for p in paths], "sources_sha256": [data_fingerprint(p) for p in paths],
            "chunk_size": cfg.chunk_size, "chunk_overlap": cfg.chunk_overlap, "min_chars": cfg.min_chars,
            "limit": cfg.limit}


def write_chunks(cfg: IndexConfig, paths, out: Path) -> tuple[CorpusStats, int]:
    """The chunks file, streamed from the shards through a temporary file (renamed when complete); with
    ``cfg.resume`` a complete chunks file of the same corpus is kept.  Returns (corpus counts, chunks)."""
    chunks_path, progress_path = out / cfg.chunks_file, out / (cfg.chunks_file + ".progress.json")
    key = _corpus_key(cfg, paths)
    if cfg.resume and chunks_path.is_file() and progress_path.is_file():
        done = read_json(progress_path)
        if done.get("key") == key:
            logger.info("%s: kept from the interrupted run (%d chunks)", chunks_path, done["n_chunks"])
            return CorpusStats(**done["corpus"]), int(done["n_chunks"])
    cstats = CorpusStats()
    tmp = chunks_path.with_name(f".{chunks_path.name}.tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as fh:
        articles = iter_articles(paths, cstats, cfg.min_chars, cfg.skip_invalid, cfg.limit, cfg.progress)
        for chunk in chunk_articles(articles, cfg.chunk_size, cfg.chunk_overlap, progress=False):
            fh.write(json.dumps(chunk, ensure_ascii=False) + "\n")
            n += 1
        fh.flush()
        os.fsync(fh.fileno())
    if not cstats.articles:
        tmp.unlink()
        raise DataError(paths[0], f"no usable article in {len(paths)} shard(s) ({cstats.records} records, "
                                  f"{cstats.too_short} shorter than {cfg.min_chars} chars)")
    os.replace(tmp, chunks_path)
    write_json_atomic(progress_path, {"key": key, "n_chunks": n, "corpus": asdict(cstats)})
    return cstats, n


def _iter_text_blocks(chunks_path: Path, block: int, skip_blocks: int):
    """Lists of up to ``block`` chunk texts, in file order, from block ``skip_blocks`` on."""
    texts: list[str] = []
    j = 0
    with chunks_path.open(encoding="utf-8") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            if j >= skip_blocks * block:
                texts.append(json.loads(raw)["text"])
                if len(texts) == block:
                    yield texts
                    texts = []
            j += 1
    if texts:
        yield texts


def embed_blocks(cfg: IndexConfig, chunks_path: Path, n_chunks: int, emb_dir: Path) -> list[Path]:
    """Embed the chunks block by block into ``emb_dir/block_NNNNNN.npy`` (each written when it finishes); blocks of
    an interrupted run of the same chunks file, model and block size are kept.  Returns the block files."""
    import numpy as np
    from tqdm.auto import tqdm

    key = {"chunks_sha256": data_fingerprint(chunks_path), "n_chunks": n_chunks, "block": cfg.embed_block,
           "embed_model": path_identity(cfg.embed_model)}
    progress = emb_dir / PROGRESS_FILE
    if emb_dir.is_dir() and not (cfg.resume and progress.is_file() and read_json(progress) == key):
        shutil.rmtree(emb_dir)
    emb_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(progress, key)
    n_blocks = (n_chunks + cfg.embed_block - 1) // cfg.embed_block
    files = [emb_dir / f"block_{b:06d}.npy" for b in range(n_blocks)]
    done = 0
    while done < n_blocks and files[done].is_file():
        done += 1
    if done:
        logger.info("%s: %d of %d embedding blocks kept from the interrupted run", emb_dir, done, n_blocks)
    embedder = load_embedder(cfg.embed_model, cfg.device) if done < n_blocks else None
    bar = tqdm(total=n_chunks, initial=min(n_chunks, done * cfg.embed_block), desc="embedding", unit="chunk",
               disable=not cfg.progress)
    for b, texts in enumerate(_iter_text_blocks(chunks_path, cfg.embed_block, done), start=done):
        emb = embed_texts(embedder, texts, batch_size=cfg.batch_size, progress=False)
        tmp = files[b].with_name(f".{files[b].stem}.tmp.npy")
        np.save(tmp, emb)
        os.replace(tmp, files[b])
        bar.update(len(texts))
    bar.close()
    return files


def _write_indexes(blocks: list[Path], out: Path, cfg: IndexConfig) -> tuple[dict, int]:
    """IndexFlatIP (+ IVF with ``cfg.gpu_index``) of the embedding blocks into ``out``; returns the metadata's
    ``indexes`` entry and the dimension."""
    import numpy as np

    flat = build_flat_ip_index(np.load(blocks[0]))
    for path in blocks[1:]:
        flat.add(np.load(path))
    _atomic_index(flat, out / cfg.index_file)
    indexes = {"cpu": {"file": cfg.index_file, "type": "IndexFlatIP", "metric": "inner_product"}}
    if cfg.gpu_index:
        if faiss_gpu_count() == 0:
            logger.warning("--gpu_index: faiss sees no GPU (faiss-cpu build?); training the IVF index on CPU")
        ivf, info = build_ivf_index(flat.reconstruct_n(0, flat.ntotal), cfg.nlist, cfg.nprobe, use_gpu=True,
                                    seed=cfg.seed)
        _atomic_index(ivf, out / cfg.gpu_index_file)
        indexes["gpu"] = {"file": cfg.gpu_index_file, "metric": "inner_product", **info}
    return indexes, int(flat.d)


def _atomic_index(index, path: Path) -> None:
    import faiss

    tmp = path.with_name(f".{path.name}.tmp")
    faiss.write_index(index, str(tmp))
    os.replace(tmp, path)


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
    """Articles -> chunks file -> embedding blocks -> IndexFlatIP (+ IVF with ``cfg.gpu_index``) -> metadata.json,
    and run_config.json, in ``cfg.output_dir``, streamed and resumable (module docstring); returns the counts."""
    sstats: dict = {}
    paths = cfg.paths(sstats)
    out = start_stage(cfg.output_dir, cfg)
    out.mkdir(parents=True, exist_ok=True)
    cstats, n_chunks = write_chunks(cfg, paths, out)
    emb_dir = out / (cfg.index_file + ".embeddings")
    blocks = embed_blocks(cfg, out / cfg.chunks_file, n_chunks, emb_dir)
    indexes, dim = _write_indexes(blocks, out, cfg)
    if not cfg.keep_embeddings:
        shutil.rmtree(emb_dir)
    write_json_atomic(out / cfg.metadata_file, _metadata(cfg, paths, cstats, cstats.articles, n_chunks, dim, indexes))
    counts = {"nq_shards": [str(p) for p in paths], "missing_shards": sstats.get("missing_shards", []),
              "nq_records": cstats.records, "articles": cstats.articles, "duplicate_titles": cstats.duplicate_titles,
              "short_articles_dropped": cstats.too_short, "untitled_dropped": cstats.untitled,
              "invalid_lines_skipped": cstats.invalid, "chunks": n_chunks, "embedding_dim": dim,
              "embedding_blocks": len(blocks), "indexes": sorted(indexes)}
    return finish_stage(out, cfg, counts)
