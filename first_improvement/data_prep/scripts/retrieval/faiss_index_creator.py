#!/usr/bin/env python
"""Stage 1: Natural Questions articles -> sentence-aligned chunks -> embeddings -> FAISS index + metadata.json.

Reads NQ shards (--nq_shards, default the study's nq-train-00..04 and nq-dev-00; original format with
document_tokens/html_token, or simplified with document_text), deduplicates articles by title, strips HTML tokens,
drops short articles, cuts ~512-word chunks with a 50-word overlap, embeds them (normalised) and writes an
IndexFlatIP (and an IVF index with --gpu_index). Streamed: articles and chunks are never all in memory, and the
embeddings are saved per block, so --resume continues an interrupted run.

Example:
    python first_improvement/data_prep/scripts/retrieval/faiss_index_creator.py \\
        --nq_dir datasets/nq --output_dir retrieval
"""

from aligner.core.cli import parse_config, run_cli
from aligner.data.retrieval_index import IndexConfig, build_retrieval_index


def parse_args(argv=None) -> IndexConfig:
    return parse_config(IndexConfig, argv, description=__doc__)


def main(argv=None):
    return build_retrieval_index(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
