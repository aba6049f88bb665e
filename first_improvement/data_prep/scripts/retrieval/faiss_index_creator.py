#!/usr/bin/env python
"""Stage 1: Natural Questions articles -> sentence-aligned chunks -> embeddings -> FAISS index + metadata.json.

Reads NQ shards (original format with document_tokens/html_token, or simplified with document_text),
deduplicates articles by title, strips HTML tokens, drops short articles, cuts ~512-word chunks with a
50-word overlap, embeds them (normalised) and writes an IndexFlatIP (and an IVF index with --gpu_index).

Example:
    python first_improvement/data_prep/scripts/retrieval/faiss_index_creator.py \\
        --nq_dir datasets/nq --output_dir retrieval
"""

import argparse

from aligner.core.cli import run_cli
from aligner.core.runinfo import finish_stage, setup_logging, write_run_config
from aligner.data.retrieval import DEFAULT_EMBED_MODEL, run_index_creation
from aligner.data.sources.nq import resolve_nq_paths


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nq_files", nargs="*", default=None,
                   help="NQ shards (*.jsonl.gz or *.jsonl); overrides --nq_dir (default: %(default)s)")
    p.add_argument("--nq_dir", default=None,
                   help="folder searched recursively for NQ shards (train and dev) (default: %(default)s)")
    p.add_argument("--output_dir", default="retrieval", help="where the chunks, index and metadata go (default: %(default)s)")
    p.add_argument("--chunks_file", default="nq_wiki_chunks.jsonl", help="chunk file name {title, text, url} (default: %(default)s)")
    p.add_argument("--index_file", default="nq_wiki_index.faiss", help="IndexFlatIP file name (default: %(default)s)")
    p.add_argument("--gpu_index_file", default="nq_wiki_index_gpu.faiss", help="IVF index file name (default: %(default)s)")
    p.add_argument("--metadata_file", default="metadata.json", help="metadata file name (default: %(default)s)")
    p.add_argument("--embed_model", default=DEFAULT_EMBED_MODEL,
                   help="sentence-transformers model name or local folder (default: %(default)s)")
    p.add_argument("--chunk_size", type=int, default=512, help="maximum words per chunk (default: %(default)s)")
    p.add_argument("--chunk_overlap", type=int, default=50, help="words shared by consecutive chunks (default: %(default)s)")
    p.add_argument("--min_chars", type=int, default=200, help="drop articles with less plain text (default: %(default)s)")
    p.add_argument("--batch_size", type=int, default=64, help="embedding batch size (default: %(default)s)")
    p.add_argument("--gpu_index", action="store_true",
                   help="also build an IVF index (trained on the GPU when faiss sees one, else on CPU) (default: %(default)s)")
    p.add_argument("--nlist", type=int, default=None, help="IVF clusters (default: about 4*sqrt(chunks), <= 4096)")
    p.add_argument("--nprobe", type=int, default=None, help="IVF clusters searched (default: min(32, nlist/10))")
    p.add_argument("--device", default="auto", help="embedding device: auto, cpu, cuda (default: %(default)s)")
    p.add_argument("--limit", type=int, default=-1, help="read at most this many NQ records, -1 = all (default: %(default)s)")
    p.add_argument("--seed", type=int, default=42, help="IVF k-means seed (default: %(default)s)")
    p.add_argument("--skip_invalid", action="store_true",
                   help="skip (and count) malformed NQ lines instead of stopping (default: %(default)s)")
    p.add_argument("--no_progress", action="store_true", help="no progress bars (default: %(default)s)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    paths = resolve_nq_paths(args.nq_files, args.nq_dir, "all")
    write_run_config(args.output_dir, args)
    counts = run_index_creation(
        paths, args.output_dir, args.embed_model, chunks_file=args.chunks_file, index_file=args.index_file,
        gpu_index_file=args.gpu_index_file, metadata_file=args.metadata_file, chunk_size=args.chunk_size,
        chunk_overlap=args.chunk_overlap, min_chars=args.min_chars, batch_size=args.batch_size,
        gpu_index=args.gpu_index, nlist=args.nlist, nprobe=args.nprobe, device=args.device, limit=args.limit,
        skip_invalid=args.skip_invalid, seed=args.seed, progress=not args.no_progress)
    return finish_stage(args.output_dir, args, counts)


if __name__ == "__main__":
    run_cli(main)
