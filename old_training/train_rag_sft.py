#!/usr/bin/env python
"""Supervised fine-tuning of the instruct model on RAG records (the study's older approach), LoRA, TRL SFTTrainer.

Input: JSON lines such as train_nq_rag.jsonl / squad_15k.jsonl, one {question, context (or contexts), answers}
record per line (answers: a list, a string, or SQuAD's {"text": [...]}; the first non-empty answer is the
target; records without one are skipped and counted). Each record becomes a conversational prompt-completion
example: system "You are a helpful AI assistant. Use the provided context to answer the question.", user
"Context: {context}\\n\\nQuestion: {question}", assistant = the answer. TRL renders it with the model's chat
template and, for prompt-completion data, puts the loss on the completion (answer + end-of-turn) only.
Contexts are cut, by tokens, so that the whole example fits --max_length; the answer is never cut.
The logic lives in aligner/train/sft.py.

Example:
    python old_training/train_rag_sft.py --model_path models/llama3-2-3b-instruct \\
        --data_files outputs/data/train_nq_rag.jsonl,outputs/data/squad_15k.jsonl --output_dir outputs/rag_sft
"""

from aligner.core.cli import parse_config, run_cli
from aligner.train.sft import RagSFTConfig, train_rag_sft


def parse_args(argv=None) -> RagSFTConfig:
    return parse_config(RagSFTConfig, argv, description=__doc__)


def main(argv=None):
    cfg = parse_args(argv)
    return train_rag_sft(cfg)


if __name__ == "__main__":
    run_cli(main)
