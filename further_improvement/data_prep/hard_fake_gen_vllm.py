#!/usr/bin/env python
"""Stage 9 (latest model): teacher-guided hard pairs. A larger instruct model (the study: Llama-3.1-8B-Instruct
under vLLM) rewrites each raw fact into a polished true sentence and the same sentence with one fabricated
detail, answering in JSON {"chosen_sentence", "rejected_sentence"}; the error kind cycles logical flaw /
causal error / unverifiable. Runs on vLLM when available, else (slowly) on the Hugging Face backend. --limit 15000
(the study's run) by default. Parsing takes a JSON value only up to a closing quote followed by "," and the next
key or "}", and drops generations that ran up to --max_new_tokens (--study_compat: the study's parser).
--prompts_file replaces the teacher prompt texts (names teacher.system, teacher.user, teacher.error.<type>).

Files: --raw_file (every generation, appended per batch, --resume continues a run of the same model and
settings), --output_file hard_fakes_vllm.jsonl {data_index, question, origin_raw_fact, knowledge, chosen,
rejected, type, parse_method}, --pairs_file dpo_pairs_hard_improved.jsonl {prompt, context, chosen, rejected,
data_index, phase, pair_type, type}.

Example:
    python further_improvement/data_prep/hard_fake_gen_vllm.py --model_path models/Llama-3.1-8B-Instruct \\
        --nq_path data_prep/train_nq_rag.jsonl --squad_path data_prep/squad_15k.jsonl --output_dir final_data
"""

from aligner.core.cli import parse_config, run_cli
from aligner.data.teacher import TeacherConfig, TeacherSFTView, make_teacher_pairs


def parse_args(argv=None) -> tuple[TeacherConfig, TeacherSFTView]:
    return parse_config((TeacherConfig, TeacherSFTView), argv, description=__doc__)


def main(argv=None):
    return make_teacher_pairs(*parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
