"""Retrieval over the Natural Questions articles: sentence-aligned chunks, embeddings and FAISS indexes, dense
retrieval of the top-k chunks per question and a cross-encoder rerank, with the settings the retrieval stages
share.  The stages: ``aligner.data.retrieval_index`` (stage 1, chunks + index) and ``aligner.data.nq_rag``
(stage 2, the NQ RAG set; the stand-alone retrieve+rerank command).  NQ itself is read by
``aligner.data.sources.nq``.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.io import DataError
from aligner.data.sources.nq import Article

logger = logging.getLogger(__name__)
# faiss logs its failed AVX-512/AVX2 imports at INFO before falling back; that is not news to our users.
logging.getLogger("faiss.loader").setLevel(logging.WARNING)

DEFAULT_EMBED_MODEL = "multi-qa-MiniLM-L6-cos-v1"
DEFAULT_RERANK_MODEL = "cross-encoder/ms-marco-MiniLM-L-6-v2"
CONTEXT_SEPARATOR = "\n\n"


@dataclass(kw_only=True)
class EmbeddingSettings:
    """The sentence-embedding model of the index (and of the questions searched in it)."""

    embed_model: str = field(default=DEFAULT_EMBED_MODEL, metadata={
        "help": "sentence-transformers model name or local folder; the same for the index and its questions"})
    device: str = field(default="auto", metadata={"help": "device of the embedding and reranking models: auto, "
                                                          "cpu, cuda"})


@dataclass(kw_only=True)
class RetrievalSettings(EmbeddingSettings):
    """What a question is searched in and how its hits are reranked."""

    index_file: str = field(default="retrieval/nq_wiki_index.faiss", metadata={"help": "FAISS index"})
    chunks_file: str = field(default="retrieval/nq_wiki_chunks.jsonl", metadata={"help": "chunks behind the index"})
    rerank_model: str = field(default=DEFAULT_RERANK_MODEL, metadata={
        "help": "cross-encoder or any sequence-classification model"})
    top_k_retrieve: int = field(default=100, metadata={"help": "chunks retrieved per question"})
    top_k_rerank: int = field(default=5, metadata={"help": "chunks kept after reranking"})
    rerank_max_length: int = field(default=512, metadata={
        "help": "tokens per (question, chunk) pair given to the reranker"})


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
                   progress: bool = True) -> Iterator[dict]:
    """{title, text, url} per chunk, article by article in order, streamed."""
    from tqdm.auto import tqdm

    for art in tqdm(articles, desc="chunking", disable=not progress, unit="article"):
        for text in chunk_words(art.text, max_words, overlap):
            yield {"title": art.title, "text": text, "url": art.url}


class ChunkStore:
    """The chunk corpus behind an index, read from its JSON-lines file on demand: only the byte offset of each
    line is held (8 bytes a chunk), so a corpus of millions of chunks costs tens of MB, not its text.
    ``store[i]`` is chunk i's record {title, text, url}; ``len(store)`` the number of chunks."""

    def __init__(self, path: str | os.PathLike):
        import numpy as np

        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(self.path, "chunks file not found (build it with faiss_index_creator.py)")
        offsets = []
        with self.path.open("rb") as fh:
            pos = 0
            for raw in fh:
                if raw.strip():
                    offsets.append(pos)
                pos += len(raw)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self._fh = None

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> dict:
        import json

        if self._fh is None:
            self._fh = self.path.open("rb")
        self._fh.seek(int(self.offsets[i]))
        line = self._fh.readline()
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(self.path, f"invalid JSON ({exc.msg})", i + 1) from None
        if not isinstance(rec, dict) or "text" not in rec:
            raise DataError(self.path, "a chunk needs a 'text' field", i + 1)
        return rec


# ---------------------------------------------------------------------------------------------
# Embedding and FAISS
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=2)
def load_embedder(model_name_or_path: str, device: str = "auto"):
    """The sentence-transformers model (cached per process: the index, RAG and rerank stages share it)."""
    from aligner.core.models import load_sentence_model

    return load_sentence_model(model_name_or_path, device, "embedding model")


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


def read_chunks(path: str | os.PathLike) -> ChunkStore:
    """The chunk corpus of an index, read on demand (``ChunkStore``)."""
    return ChunkStore(path)


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
    recs = [retriever.chunks[i] for i, _ in hits]
    texts = [r["text"] for r in recs]
    best = reranker.rerank(question, texts, top_k_rerank)
    return {"chunk_ids": [hits[i][0] for i, _ in best],
            "titles": [recs[i].get("title", "") for i, _ in best],
            "contexts": [texts[i] for i, _ in best], "rerank_scores": [s for _, s in best],
            "retrieval_scores": [hits[i][1] for i, _ in best]}


def load_retrieval(cfg: RetrievalSettings, rerank_batch_size: int) -> tuple[FaissRetriever, CrossEncoderReranker]:
    """The retriever and reranker ``cfg`` names."""
    retriever = FaissRetriever(cfg.index_file, cfg.chunks_file, embed_model=cfg.embed_model, device=cfg.device)
    reranker = CrossEncoderReranker(cfg.rerank_model, batch_size=rerank_batch_size, max_length=cfg.rerank_max_length,
                                    device=cfg.device)
    return retriever, reranker
