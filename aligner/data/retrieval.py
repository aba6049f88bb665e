"""Retrieval corpus for the NQ RAG set: Natural Questions articles -> sentence-aligned chunks -> FAISS index,
then dense retrieval of the top-k chunks per question and a cross-encoder rerank.

Both NQ distributions are read: the original one (``document_tokens`` with an ``html_token`` flag per token,
``document_title``) and the simplified one (``document_text``, whitespace tokens with the HTML tags inline, no
title field: the title comes from the URL or the first ``<H1>``).  Answer spans index the same token lists.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from aligner.core.io import DataError
from aligner.core.runinfo import finish_stage, write_run_config
from aligner.data.sources.nq import Article, collect_articles, nq_question_items, resolve_nq_paths

logger = logging.getLogger(__name__)
# faiss logs its failed AVX-512/AVX2 imports at INFO before falling back; that is not news to our users.
logging.getLogger("faiss.loader").setLevel(logging.WARNING)

DEFAULT_EMBED_MODEL = "multi-qa-MiniLM-L6-cos-v1"
DEFAULT_RERANK_MODEL = "cross-encoder/ms-marco-MiniLM-L-6-v2"
CONTEXT_SEPARATOR = "\n\n"


# ---------------------------------------------------------------------------------------------
# Reading Natural Questions
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Sentence splitting and chunking (no downloads)
# ---------------------------------------------------------------------------------------------

_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "ft", "vs", "etc", "inc", "ltd", "co", "corp",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "no", "vol", "fig",
    "gen", "col", "lt", "sgt", "capt", "gov", "rev", "approx", "est", "dept", "univ", "ca", "cf", "al", "op",
}
# A sentence ends at . ! ? (plus closing quotes/brackets) followed by space and a plausible sentence start.
_SENT_END = re.compile(r"([.!?][\"')\]]*)\s+(?=[\"'(\[]?[A-Z0-9])")


def split_sentences(text: str) -> list[str]:
    """Rule-based sentence splitter: breaks after . ! ? before a capital letter or digit, except after
    known abbreviations, single initials (``J. Smith``) and dotted acronyms (``U.S.``)."""
    text = text.strip()
    if not text:
        return []
    sentences: list[str] = []
    start = 0
    for m in _SENT_END.finditer(text):
        end = m.end(1)
        if m.group(1).startswith("."):
            before = text[start:m.start(1)].rsplit(None, 1)
            word = before[-1] if before else ""
            bare = word.strip("\"'([").lower()
            if bare in _ABBREVIATIONS or (len(bare) == 1 and bare.isalpha()) or re.fullmatch(r"(?:[a-z]\.)+[a-z]", bare):
                continue
        piece = text[start:end].strip()
        if piece:
            sentences.append(piece)
        start = m.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


def chunk_words(text: str, max_words: int = 512, overlap: int = 50) -> list[str]:
    """Sentence-aligned chunks of at most ``max_words`` words; each chunk starts with the last ``overlap``
    words of the one before.

    Sentences are packed whole; a chunk is closed before the sentence that would overflow it.  A sentence
    longer than ``max_words - overlap`` words is cut into pieces of that size so that no chunk exceeds
    ``max_words`` (the only place a chunk boundary falls inside a sentence).
    """
    if max_words <= 0:
        raise ValueError("max_words must be positive")
    if not 0 <= overlap < max_words:
        raise ValueError("overlap must be in [0, max_words)")
    room = max_words - overlap
    pieces: list[list[str]] = []
    for sent in split_sentences(text):
        words = sent.split()
        for i in range(0, len(words), room):
            pieces.append(words[i:i + room])
    chunks: list[str] = []
    current: list[str] = []
    n_new = 0  # words in ``current`` not already in the previous chunk
    for piece in pieces:
        if current and len(current) + len(piece) > max_words:
            chunks.append(" ".join(current))
            current = current[-overlap:] if overlap else []
            n_new = 0
        current.extend(piece)
        n_new += len(piece)
    if n_new:
        chunks.append(" ".join(current))
    return chunks


def chunk_articles(articles: Iterable[Article], max_words: int = 512, overlap: int = 50,
                   progress: bool = True) -> list[dict]:
    from tqdm.auto import tqdm

    out = []
    for art in tqdm(list(articles), desc="chunking", disable=not progress, unit="article"):
        for text in chunk_words(art.text, max_words, overlap):
            out.append({"title": art.title, "text": text, "url": art.url})
    return out


# ---------------------------------------------------------------------------------------------
# Embedding and FAISS
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=2)
def load_embedder(model_name_or_path: str, device: str = "auto"):
    """The sentence-transformers model (cached per process: the index, RAG and rerank stages share it)."""
    from sentence_transformers import SentenceTransformer

    from aligner.core.models import ModelLoadError, check_model_path, resolve_device

    path = check_model_path(model_name_or_path, "embedding model")
    try:
        return SentenceTransformer(path, device=str(resolve_device(device)))
    except OSError as exc:
        raise ModelLoadError(f"could not load embedding model '{path}': {str(exc).splitlines()[0]} -- download it "
                             "on a machine with hub access and pass the local folder") from None


def embed_texts(embedder, texts: Sequence[str], batch_size: int = 64, progress: bool = True):
    """L2-normalised float32 embeddings (inner product = cosine similarity)."""
    import numpy as np

    emb = embedder.encode(list(texts), batch_size=batch_size, show_progress_bar=progress, convert_to_numpy=True,
                          normalize_embeddings=True)
    return np.ascontiguousarray(emb, dtype=np.float32)


def build_flat_ip_index(embeddings):
    import faiss

    index = faiss.IndexFlatIP(int(embeddings.shape[1]))
    index.add(embeddings)
    return index


def ivf_nlist(n_vectors: int, max_nlist: int = 4096) -> int:
    """Clusters for the IVF index: about 4*sqrt(N), at most ``max_nlist`` and never more than N."""
    return max(1, min(max_nlist, int(math.sqrt(n_vectors) * 4), n_vectors))


def build_ivf_index(embeddings, nlist: int | None = None, nprobe: int | None = None, use_gpu: bool = True,
                    seed: int = 42):
    """An inner-product IVF index, trained on GPU when faiss sees one (else on CPU); returned on CPU so it
    can be written.  Returns (index, info)."""
    import faiss

    n, dim = embeddings.shape
    nlist = nlist or ivf_nlist(n)
    quantizer = faiss.IndexFlatIP(int(dim))
    index = faiss.IndexIVFFlat(quantizer, int(dim), int(nlist), faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = int(seed)  # k-means initialisation
    n_gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    on_gpu = bool(use_gpu and n_gpus > 0)
    if on_gpu:
        res = faiss.StandardGpuResources()
        gpu_index = faiss.index_cpu_to_gpu(res, 0, index)
        gpu_index.train(embeddings)
        gpu_index.add(embeddings)
        index = faiss.index_gpu_to_cpu(gpu_index)
    else:
        index.train(embeddings)
        index.add(embeddings)
    index.nprobe = int(nprobe or max(1, min(32, nlist // 10)))
    return index, {"type": "IndexIVFFlat", "nlist": int(nlist), "nprobe": int(index.nprobe), "trained_on_gpu": on_gpu,
                   "kmeans_seed": int(seed)}


def faiss_gpu_count() -> int:
    try:
        import faiss

        return int(faiss.get_num_gpus())
    except Exception:
        return 0


def read_chunks(path: str | os.PathLike) -> list[dict]:
    from aligner.core.io import read_jsonl

    return read_jsonl(path, required=["title", "text"])


class FaissRetriever:
    """Dense retrieval over the chunk corpus: question embeddings (same model, normalised) against the index."""

    def __init__(self, index_path: str | os.PathLike, chunks_path: str | os.PathLike, embedder=None,
                 embed_model: str | None = None, device: str = "auto", nprobe: int | None = None):
        import faiss

        if not Path(index_path).is_file():
            raise DataError(index_path, "FAISS index not found (build it with faiss_index_creator.py)")
        self.index = faiss.read_index(str(index_path))
        if nprobe is not None and hasattr(self.index, "nprobe"):
            self.index.nprobe = nprobe
        self.chunks = read_chunks(chunks_path)
        if self.index.ntotal != len(self.chunks):
            raise DataError(chunks_path, f"{len(self.chunks)} chunks but the index {index_path} holds "
                                         f"{self.index.ntotal} vectors; rebuild them together")
        self.embedder = embedder if embedder is not None else load_embedder(embed_model or DEFAULT_EMBED_MODEL, device)

    def search(self, queries: Sequence[str], top_k: int = 100, batch_size: int = 64, progress: bool = False
               ) -> list[list[tuple[int, float]]]:
        """Per query, up to ``top_k`` (chunk id, inner product) pairs, best first."""
        q = embed_texts(self.embedder, queries, batch_size=batch_size, progress=progress)
        k = min(top_k, self.index.ntotal)
        scores, ids = self.index.search(q, k)
        return [[(int(i), float(s)) for i, s in zip(row_ids, row_s) if i >= 0] for row_ids, row_s in zip(ids, scores)]


@functools.lru_cache(maxsize=2)
def _load_reranker(model_path: str, dtype: str, device: str):
    from aligner.core.models import load_seq_cls

    return load_seq_cls(model_path, dtype=dtype, device=device)


class CrossEncoderReranker:
    """Scores (question, passage) pairs with any sequence-classification model (an ms-marco cross-encoder,
    or the tiny 2-label judge in tests).

    Score = the single logit of a 1-label model (the ms-marco cross-encoders); for a model with several
    labels, the log-probability of label ``positive_label`` (default: the last one).
    """

    def __init__(self, model_path: str, batch_size: int = 32, max_length: int = 512, device: str = "auto",
                 dtype: str = "auto", positive_label: int = -1):
        self.model, self.tokenizer = _load_reranker(str(model_path), dtype, device)
        if self.tokenizer is None:
            raise ValueError(f"reranker '{model_path}' has no tokenizer")
        self.batch_size = batch_size
        self.max_length = max_length
        self.positive_label = positive_label

    def _scores_from_logits(self, logits):
        import torch

        logits = logits.float()
        if logits.shape[-1] == 1:
            return logits[:, 0]
        return torch.log_softmax(logits, dim=-1)[:, self.positive_label]

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        import torch

        out: list[float] = []
        device = next(self.model.parameters()).device
        with torch.no_grad():
            for lo in range(0, len(passages), self.batch_size):
                batch = list(passages[lo: lo + self.batch_size])
                enc = self.tokenizer([query] * len(batch), batch, truncation=True,
                                     max_length=self.max_length, padding=True, return_tensors="pt")
                enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
                logits = self.model(**enc).logits
                out.extend(self._scores_from_logits(logits).tolist())
        return out

    def rerank(self, query: str, passages: Sequence[str], top_k: int = 5) -> list[tuple[int, float]]:
        """(position in ``passages``, score) of the ``top_k`` best, best first (ties keep retrieval order)."""
        scores = self.score(query, passages)
        order = sorted(range(len(passages)), key=lambda i: (-scores[i], i))
        return [(i, scores[i]) for i in order[:top_k]]


def rerank_hits(question: str, retriever: FaissRetriever, reranker: CrossEncoderReranker,
                hits: list[tuple[int, float]], top_k_rerank: int = 5) -> dict:
    """The reranker's top ``top_k_rerank`` of one question's retrieval hits: chunk ids, titles, texts, scores."""
    texts = [retriever.chunks[i]["text"] for i, _ in hits]
    best = reranker.rerank(question, texts, top_k_rerank)
    return {"chunk_ids": [hits[i][0] for i, _ in best],
            "titles": [retriever.chunks[hits[i][0]]["title"] for i, _ in best],
            "contexts": [texts[i] for i, _ in best], "rerank_scores": [s for _, s in best],
            "retrieval_scores": [hits[i][1] for i, _ in best]}


def rag_record(item: dict, retriever: FaissRetriever, reranker: CrossEncoderReranker, hits: list[tuple[int, float]],
               top_k_rerank: int = 5) -> dict:
    """The NQ RAG record for one question from its retrieval hits: the reranker's top ``top_k_rerank``."""
    top = rerank_hits(item["question"], retriever, reranker, hits, top_k_rerank)
    return {"example_id": item["example_id"], "question": item["question"], "contexts": top["contexts"],
            "context": CONTEXT_SEPARATOR.join(top["contexts"]), "answers": item["answers"],
            "chunk_ids": top["chunk_ids"], "rerank_scores": [round(s, 6) for s in top["rerank_scores"]]}


# ---------------------------------------------------------------------------------------------
# Stage runners (called by the thin scripts)
# ---------------------------------------------------------------------------------------------


def run_index_creation(nq_paths: Sequence[Path], output_dir: str | os.PathLike, embed_model: str,
                       chunks_file: str = "nq_wiki_chunks.jsonl", index_file: str = "nq_wiki_index.faiss",
                       gpu_index_file: str = "nq_wiki_index_gpu.faiss", metadata_file: str = "metadata.json",
                       chunk_size: int = 512, chunk_overlap: int = 50, min_chars: int = 200, batch_size: int = 64,
                       gpu_index: bool = False, nlist: int | None = None, nprobe: int | None = None,
                       device: str = "auto", limit: int | None = None, skip_invalid: bool = False, seed: int = 42,
                       progress: bool = True) -> dict:
    """Articles -> chunks file -> embeddings -> IndexFlatIP (+ IVF when ``gpu_index``) -> metadata.json."""
    import faiss

    from aligner.core.io import write_json_atomic, write_jsonl_atomic

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    articles, cstats = collect_articles(nq_paths, min_chars=min_chars, skip_invalid=skip_invalid, limit=limit,
                                        progress=progress)
    if not articles:
        raise DataError(nq_paths[0], f"no usable article in {len(nq_paths)} shard(s) "
                                     f"({cstats.records} records, {cstats.too_short} shorter than {min_chars} chars)")
    chunks = chunk_articles(articles, chunk_size, chunk_overlap, progress)
    write_jsonl_atomic(out / chunks_file, chunks)
    embedder = load_embedder(embed_model, device)
    emb = embed_texts(embedder, [c["text"] for c in chunks], batch_size=batch_size, progress=progress)
    flat = build_flat_ip_index(emb)
    faiss.write_index(flat, str(out / index_file))
    indexes = {"cpu": {"file": index_file, "type": "IndexFlatIP", "metric": "inner_product"}}
    if gpu_index:
        n_gpus = faiss_gpu_count()
        if n_gpus == 0:
            logger.warning("--gpu_index: faiss sees no GPU (faiss-cpu build?); training the IVF index on CPU")
        ivf, info = build_ivf_index(emb, nlist, nprobe, use_gpu=True, seed=seed)
        faiss.write_index(ivf, str(out / gpu_index_file))
        indexes["gpu"] = {"file": gpu_index_file, "metric": "inner_product", **info}
    meta = {
        "embedding_model": embed_model, "embedding_dim": int(emb.shape[1]), "normalized_embeddings": True,
        "chunking": {"method": "sentence_aligned_words", "sentence_splitter": "aligner.data.retrieval.split_sentences "
                     "(rule-based, no downloads)", "chunk_size_words": chunk_size, "chunk_overlap_words": chunk_overlap},
        "min_article_chars": min_chars, "indexes": indexes, "chunks_file": chunks_file,
        "total_chunks": len(chunks), "total_articles": len(articles), "nq_records_read": cstats.records,
        "duplicate_titles_dropped": cstats.duplicate_titles, "short_articles_dropped": cstats.too_short,
        "untitled_dropped": cstats.untitled, "invalid_lines_skipped": cstats.invalid,
        "sources": [str(p) for p in nq_paths],
    }
    write_json_atomic(out / metadata_file, meta)
    return {"nq_records": cstats.records, "articles": len(articles), "duplicate_titles": cstats.duplicate_titles,
            "short_articles_dropped": cstats.too_short, "untitled_dropped": cstats.untitled,
            "invalid_lines_skipped": cstats.invalid, "chunks": len(chunks), "embedding_dim": int(emb.shape[1]),
            "indexes": sorted(indexes)}


def run_nq_rag(nq_paths: Sequence[Path], output_file: str | os.PathLike, index_file: str, chunks_file: str,
               embed_model: str, rerank_model: str, top_k_retrieve: int = 100, top_k_rerank: int = 5,
               retrieval_batch_size: int = 64, rerank_batch_size: int = 32, rerank_max_length: int = 512,
               device: str = "auto",
               limit: int | None = None, resume: bool = False, skip_invalid: bool = False, progress: bool = True,
               retriever: FaissRetriever | None = None, reranker: CrossEncoderReranker | None = None) -> dict:
    """NQ questions -> top ``top_k_retrieve`` chunks -> cross-encoder -> top ``top_k_rerank`` -> RAG records,
    appended per batch (resumable, keyed by example_id)."""
    from tqdm.auto import tqdm

    from aligner.core.io import ResumableJsonlWriter

    stats: dict = {}
    items = list(nq_question_items(nq_paths, skip_invalid=skip_invalid, limit=limit, stats=stats))
    written = 0
    with ResumableJsonlWriter(output_file, key="example_id", resume=resume) as writer:
        todo = [it for it in items if it["example_id"] not in writer.done]
        already = len(items) - len(todo)
        if todo:  # models are loaded only when there is work left
            retriever = retriever or FaissRetriever(index_file, chunks_file, embed_model=embed_model, device=device)
            reranker = reranker or CrossEncoderReranker(rerank_model, batch_size=rerank_batch_size,
                                                        max_length=rerank_max_length, device=device)
        bar = tqdm(total=len(todo), desc="retrieve+rerank", disable=not progress, unit="question")
        for lo in range(0, len(todo), retrieval_batch_size):
            batch = todo[lo: lo + retrieval_batch_size]
            hits = retriever.search([it["question"] for it in batch], top_k_retrieve, batch_size=retrieval_batch_size)
            writer.extend(rag_record(it, retriever, reranker, h, top_k_rerank) for it, h in zip(batch, hits))
            written += len(batch)
            bar.update(len(batch))
        bar.close()
    return {"nq_records_read": stats.get("read", 0), "short_answers": stats.get("answer_short", 0),
            "long_answer_fallbacks": stats.get("answer_long", 0), "skipped_no_answer": stats.get("no_answer", 0),
            "invalid_lines_skipped": stats.get("invalid", 0), "already_done": already, "written": written,
            "corpus_chunks": len(retriever.chunks) if retriever is not None else None}


# --- the NQ RAG stage's command line (create_nq_training.py and create_nq_validation.py differ only in defaults)

def add_nq_rag_args(p, split: str = "train", output_file: str = "train_nq_rag.jsonl", limit: int = -1) -> None:
    """The flags of the NQ RAG stage; ``split``, ``output_file`` and ``limit`` are the per-set defaults."""
    p.add_argument("--nq_files", nargs="*", default=None, help="NQ shards; overrides --nq_dir (default: %(default)s)")
    p.add_argument("--nq_dir", default=None,
                   help="folder of NQ shards; the ones whose name contains --split are used (default: %(default)s)")
    p.add_argument("--split", default=split,
                   help="shard-name filter inside --nq_dir: train, dev or all (default: %(default)s)")
    p.add_argument("--index_file", default="retrieval/nq_wiki_index.faiss", help="FAISS index (default: %(default)s)")
    p.add_argument("--chunks_file", default="retrieval/nq_wiki_chunks.jsonl",
                   help="chunks behind the index (default: %(default)s)")
    p.add_argument("--embed_model", default=DEFAULT_EMBED_MODEL,
                   help="the index's embedding model (default: %(default)s)")
    p.add_argument("--rerank_model", default=DEFAULT_RERANK_MODEL,
                   help="cross-encoder or any sequence-classification model (default: %(default)s)")
    p.add_argument("--output_file", default=output_file, help="RAG records (default: %(default)s)")
    p.add_argument("--top_k_retrieve", type=int, default=100,
                   help="chunks retrieved per question (default: %(default)s)")
    p.add_argument("--top_k_rerank", type=int, default=5, help="chunks kept after reranking (default: %(default)s)")
    p.add_argument("--retrieval_batch_size", type=int, default=64,
                   help="questions embedded per batch (default: %(default)s)")
    p.add_argument("--rerank_batch_size", type=int, default=32,
                   help="(question, chunk) pairs per reranker batch (default: %(default)s)")
    p.add_argument("--rerank_max_length", type=int, default=512,
                   help="tokens per (question, chunk) pair given to the reranker (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (default: %(default)s)")
    p.add_argument("--limit", type=int, default=limit,
                   help="read at most this many NQ records, -1 = all (default: %(default)s)")
    p.add_argument("--seed", type=int, default=42,
                   help="recorded only; retrieval and reranking are deterministic (default: %(default)s)")
    p.add_argument("--resume", action="store_true",
                   help="keep the records already in --output_file (default: %(default)s)")
    p.add_argument("--skip_invalid", action="store_true",
                   help="skip (and count) malformed NQ lines (default: %(default)s)")
    p.add_argument("--no_progress", action="store_true", help="no progress bars (default: %(default)s)")


def nq_rag_stage(args) -> dict:
    """Run the NQ RAG stage from the flags of ``add_nq_rag_args``; run_config.json goes beside --output_file."""
    paths = resolve_nq_paths(args.nq_files, args.nq_dir, args.split)
    out_dir = Path(args.output_file).resolve().parent
    write_run_config(out_dir, args)
    counts = run_nq_rag(paths, args.output_file, args.index_file, args.chunks_file, args.embed_model,
                        args.rerank_model, top_k_retrieve=args.top_k_retrieve, top_k_rerank=args.top_k_rerank,
                        retrieval_batch_size=args.retrieval_batch_size, rerank_batch_size=args.rerank_batch_size,
                        rerank_max_length=args.rerank_max_length,
                        device=args.device, limit=args.limit, resume=args.resume, skip_invalid=args.skip_invalid,
                        progress=not args.no_progress)
    return finish_stage(out_dir, args, counts)
