#!/usr/bin/env python
"""Retrieve and rerank: questions -> top-k chunks from the FAISS index -> cross-encoder -> best few.

The reranker is any sequence-classification model (default the ms-marco MiniLM cross-encoder). Queries
come from --query (one or more) or a JSON-lines --queries_file with a "question" field.

Example:
    python first_improvement/data_prep/scripts/retrieval/faiss_rerank.py --index_file retrieval/nq_wiki_index.faiss \\
        --chunks_file retrieval/nq_wiki_chunks.jsonl --query "who wrote the iliad"
"""

from aligner.core.cli import parse_config, run_cli
from aligner.data.nq_rag import RerankConfig, rerank_queries


def parse_args(argv=None) -> RerankConfig:
    return parse_config(RerankConfig, argv, description=__doc__)


def main(argv=None):
    return rerank_queries(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
