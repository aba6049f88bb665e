#!/usr/bin/env python
"""Stage 2 (NQ validation set): create_nq_training.py run on the study's dev shard with the validation defaults
(--nq_shards nq-dev-00, --output_file val_nq_rag.jsonl, --limit 1000: the first 1,000 records, every one written,
those without a gold answer with answers [], as the study); the flags and the record format are the same.

Example:
    python first_improvement/data_prep/scripts/create_nq_validation.py --nq_dir datasets/nq \\
        --index_file retrieval/nq_wiki_index.faiss --chunks_file retrieval/nq_wiki_chunks.jsonl
"""

from aligner.core.cli import parse_config, run_cli
from aligner.data.nq_rag import NQRagConfig, make_nq_rag_set
from aligner.data.sources.nq import STUDY_DEV_SHARDS

#: the validation set's settings where they differ from NQRagConfig's
DEFAULTS = dict(nq_shards=list(STUDY_DEV_SHARDS), output_file="val_nq_rag.jsonl", limit=1000)


def parse_args(argv=None) -> NQRagConfig:
    return parse_config(NQRagConfig, argv, description=__doc__, defaults=DEFAULTS)


def main(argv=None):
    return make_nq_rag_set(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
