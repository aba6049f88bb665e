#!/usr/bin/env python
"""Stage 2 (NQ training set): per NQ question of the study's shards (--nq_shards, default nq-train-00..04), the
gold short answer (else the long answer), the top-k chunks from the FAISS index, reranked by a cross-encoder, the
best few kept.

Output, one JSON object per line: {example_id, question, contexts[k], context (joined by a blank line),
answers, chunk_ids, rerank_scores}. Questions without any gold answer are written with answers [] (as the study;
the SFT view leaves them out; --skip_unanswered drops them here). Records are appended per batch and not held in
memory; --resume continues an interrupted run (of the same models and corpus).

Example:
    python first_improvement/data_prep/scripts/create_nq_training.py --nq_dir datasets/nq \\
        --index_file retrieval/nq_wiki_index.faiss --chunks_file retrieval/nq_wiki_chunks.jsonl --output_file train_nq_rag.jsonl
"""

from aligner.core.cli import parse_config, run_cli
from aligner.data.nq_rag import NQRagConfig, make_nq_rag_set


def parse_args(argv=None) -> NQRagConfig:
    return parse_config(NQRagConfig, argv, description=__doc__)


def main(argv=None):
    return make_nq_rag_set(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
