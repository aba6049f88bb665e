#!/usr/bin/env python
"""Stage 2 (NQ validation set): create_nq_training.py run on the dev shards with the validation defaults
(--split dev, --output_file val_nq_rag.jsonl, --limit 1000); the flags and the record format are the same.

Example:
    python first_improvement/data_prep/scripts/create_nq_validation.py --nq_dir datasets/nq \\
        --index_file retrieval/nq_wiki_index.faiss --chunks_file retrieval/nq_wiki_chunks.jsonl
"""

import argparse

from aligner.core.cli import run_cli
from aligner.core.runinfo import setup_logging
from aligner.data.retrieval import add_nq_rag_args, nq_rag_stage


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_nq_rag_args(p, split="dev", output_file="val_nq_rag.jsonl", limit=1000)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    return nq_rag_stage(args)


if __name__ == "__main__":
    run_cli(main)
