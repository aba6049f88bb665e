#!/usr/bin/env python
"""Retrieve and rerank: questions -> top-k chunks from the FAISS index -> cross-encoder -> best few.

The reranker is any sequence-classification model (default the ms-marco MiniLM cross-encoder). Queries
come from --query (repeatable) or a JSON-lines --queries_file with a "question" field.

Example:
    python first_improvement/data_prep/scripts/retrieval/faiss_rerank.py --index_file retrieval/nq_wiki_index.faiss \\
        --chunks_file retrieval/nq_wiki_chunks.jsonl --query "who wrote the iliad"
"""

import argparse
import json
from pathlib import Path

from aligner.core.cli import run_cli
from aligner.core.io import read_jsonl, write_jsonl_atomic
from aligner.core.runinfo import setup_logging, write_run_config
from aligner.data.retrieval import (
    DEFAULT_EMBED_MODEL,
    DEFAULT_RERANK_MODEL,
    CrossEncoderReranker,
    FaissRetriever,
    rerank_hits,
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index_file", default="retrieval/nq_wiki_index.faiss", help="FAISS index (default: %(default)s)")
    p.add_argument("--chunks_file", default="retrieval/nq_wiki_chunks.jsonl", help="chunks behind the index (default: %(default)s)")
    p.add_argument("--embed_model", default=DEFAULT_EMBED_MODEL, help="the index's embedding model (default: %(default)s)")
    p.add_argument("--rerank_model", default=DEFAULT_RERANK_MODEL,
                   help="cross-encoder / sequence-classification model (default: %(default)s)")
    p.add_argument("--query", action="append", default=[], help="a question; repeat for several (default: none)")
    p.add_argument("--queries_file", default=None, help="JSON lines with a 'question' field (default: %(default)s)")
    p.add_argument("--output_file", default=None, help="write results as JSON lines here; else print them (default: %(default)s)")
    p.add_argument("--top_k_retrieve", type=int, default=100, help="chunks retrieved per question (default: %(default)s)")
    p.add_argument("--top_k_rerank", type=int, default=5, help="chunks kept after reranking (default: %(default)s)")
    p.add_argument("--batch_size", type=int, default=32, help="reranker batch size (default: %(default)s)")
    p.add_argument("--rerank_max_length", type=int, default=512,
                   help="tokens per (question, chunk) pair given to the reranker (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (default: %(default)s)")
    p.add_argument("--limit", type=int, default=-1, help="at most this many queries, -1 = all (default: %(default)s)")
    p.add_argument("--seed", type=int, default=42, help="recorded only; retrieval is deterministic (default: %(default)s)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    queries = list(args.query)
    if args.queries_file:
        queries += [r["question"] for r in read_jsonl(args.queries_file, required=["question"])]
    if args.limit >= 0:
        queries = queries[:args.limit]
    if not queries:
        raise SystemExit("error: give --query or --queries_file")
    retriever = FaissRetriever(args.index_file, args.chunks_file, embed_model=args.embed_model, device=args.device)
    reranker = CrossEncoderReranker(args.rerank_model, batch_size=args.batch_size,
                                    max_length=args.rerank_max_length, device=args.device)
    results = []
    for q, hits in zip(queries, retriever.search(queries, args.top_k_retrieve)):
        results.append({"question": q, **rerank_hits(q, retriever, reranker, hits, args.top_k_rerank)})
    if args.output_file:
        write_jsonl_atomic(args.output_file, results)
        write_run_config(Path(args.output_file).parent, args, extra={"counts": {"queries": len(results)}})
    else:
        for r in results:
            print(json.dumps({k: r[k] for k in ("question", "titles", "rerank_scores")}, ensure_ascii=False))
    counts = {"queries": len(results), "corpus_chunks": len(retriever.chunks)}
    print(json.dumps(counts, indent=2))
    return counts


if __name__ == "__main__":
    run_cli(main)
