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

from aligner.core.cli import run_cli
from aligner.core.runinfo import setup_logging
from aligner.data.retrieval import add_nq_rag_args, nq_rag_stage


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_nq_rag_args(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    return nq_rag_stage(args)


if __name__ == "__main__":
    run_cli(main)
