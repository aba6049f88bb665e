#!/usr/bin/env python
"""Stage 2 (NQ training set): per NQ question, the gold short answer (else the long answer), the top-k chunks
from the FAISS index, reranked by a cross-encoder, the best few kept.

Output, one JSON object per line: {example_id, question, contexts[k], context (joined by a blank line),
answers, chunk_ids, rerank_scores}. Questions without any gold answer are skipped and counted.

Example:
    python first_improvement/data_prep/scripts/create_nq_training.py --nq_dir datasets/nq \\
        --index_file retrieval/nq_wiki_index.faiss --chunks_file retrieval/nq_wiki_chunks.jsonl --output_file train_nq_rag.jsonl
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from aligner.io import DataError  # noqa: E402
from aligner.retrieval import DEFAULT_EMBED_MODEL, DEFAULT_RERANK_MODEL, resolve_nq_paths, run_nq_rag  # noqa: E402
from aligner.runinfo import setup_logging, write_run_config  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nq_files", nargs="*", default=None, help="NQ shards; overrides --nq_dir (default: %(default)s)")
    p.add_argument("--nq_dir", default=None,
                   help="folder of NQ shards; the ones whose name contains --split are used (default: %(default)s)")
    p.add_argument("--split", default="train", help="shard-name filter inside --nq_dir: train, dev or all (default: %(default)s)")
    p.add_argument("--index_file", default="retrieval/nq_wiki_index.faiss", help="FAISS index (default: %(default)s)")
    p.add_argument("--chunks_file", default="retrieval/nq_wiki_chunks.jsonl", help="chunks behind the index (default: %(default)s)")
    p.add_argument("--embed_model", default=DEFAULT_EMBED_MODEL, help="the index's embedding model (default: %(default)s)")
    p.add_argument("--rerank_model", default=DEFAULT_RERANK_MODEL,
                   help="cross-encoder or any sequence-classification model (default: %(default)s)")
    p.add_argument("--output_file", default="train_nq_rag.jsonl", help="RAG records (default: %(default)s)")
    p.add_argument("--top_k_retrieve", type=int, default=100, help="chunks retrieved per question (default: %(default)s)")
    p.add_argument("--top_k_rerank", type=int, default=5, help="chunks kept after reranking (default: %(default)s)")
    p.add_argument("--retrieval_batch_size", type=int, default=64, help="questions embedded per batch (default: %(default)s)")
    p.add_argument("--rerank_batch_size", type=int, default=32, help="(question, chunk) pairs per reranker batch (default: %(default)s)")
    p.add_argument("--rerank_max_length", type=int, default=512,
                   help="tokens per (question, chunk) pair given to the reranker (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (default: %(default)s)")
    p.add_argument("--limit", type=int, default=-1, help="read at most this many NQ records, -1 = all (default: %(default)s)")
    p.add_argument("--seed", type=int, default=42, help="recorded only; retrieval and reranking are deterministic (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="keep the records already in --output_file (default: %(default)s)")
    p.add_argument("--skip_invalid", action="store_true", help="skip (and count) malformed NQ lines (default: %(default)s)")
    p.add_argument("--no_progress", action="store_true", help="no progress bars (default: %(default)s)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    paths = resolve_nq_paths(args.nq_files, args.nq_dir, args.split)
    out_dir = Path(args.output_file).resolve().parent
    write_run_config(out_dir, args)
    counts = run_nq_rag(paths, args.output_file, args.index_file, args.chunks_file, args.embed_model,
                        args.rerank_model, top_k_retrieve=args.top_k_retrieve, top_k_rerank=args.top_k_rerank,
                        retrieval_batch_size=args.retrieval_batch_size, rerank_batch_size=args.rerank_batch_size,
                        rerank_max_length=args.rerank_max_length,
                        device=args.device, limit=args.limit, resume=args.resume, skip_invalid=args.skip_invalid,
                        progress=not args.no_progress)
    write_run_config(out_dir, args, extra={"counts": counts})
    print(json.dumps(counts, indent=2))
    return counts


if __name__ == "__main__":
    try:
        main()
    except DataError as err:
        sys.exit(f"error: {err}")
