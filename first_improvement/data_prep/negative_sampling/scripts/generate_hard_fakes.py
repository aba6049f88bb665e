#!/usr/bin/env python
"""Stage 6a: hard fakes. Every item of the SFT view gets a poison prompt (logical flaw / causal error /
unverifiable claim, cycling by position) and the instruct model writes a fluent but wrong answer.
Batched, through the HF or vLLM backend; appended per batch, so --resume continues an interrupted run.

Output, one JSON object per line: {data_index, question, ideal_answer, fake_answer, type: hard_<poison type>,
raw_output}. Clean it next with hardfakeclearner.py.

Example:
    python first_improvement/data_prep/negative_sampling/scripts/generate_hard_fakes.py \\
        --squad_jsonl data_prep/squad_15k.jsonl --nq_jsonl data_prep/train_nq_rag.jsonl \\
        --model_path models/llama3-2-3b-instruct --output_file hard_fakes.jsonl --resume
"""

import argparse
from pathlib import Path

from aligner.core.cli import run_cli
from aligner.core.io import ResumableJsonlWriter
from aligner.core.runinfo import finish_stage, start_stage
from aligner.data.sft import add_sft_view_args, sft_view_from_args
from aligner.prompts import POISON_TYPES


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_path", "--base_model_dir", dest="model_path", default="models/llama3-2-3b-instruct",
                   help="the instruct model that writes the fakes (default: %(default)s)")
    p.add_argument("--backend", choices=["auto", "hf", "vllm"], default="auto",
                   help="vllm when installed with a GPU (auto), else Hugging Face (default: %(default)s)")
    p.add_argument("--output_file", default="hard_fakes.jsonl", help="raw hard fakes (default: %(default)s)")
    p.add_argument("--poison_types", nargs="+", default=list(POISON_TYPES), choices=list(POISON_TYPES),
                   help="poison types cycled over the items (default: %(default)s)")
    p.add_argument("--prompt_format", choices=["plain", "chat"], default="plain",
                   help="plain completion prompt (the study) or the model's chat template (default: %(default)s)")
    p.add_argument("--max_context_chars", type=int, default=4000,
                   help="context characters kept in the prompt, -1 = all (default: %(default)s)")
    p.add_argument("--batch_size", type=int, default=16, help="prompts per generate call (default: %(default)s)")
    p.add_argument("--max_new_tokens", type=int, default=128, help="tokens generated per fake (default: %(default)s)")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature, 0 = greedy (default: %(default)s)")
    p.add_argument("--top_p", type=float, default=0.9, help="nucleus sampling (default: %(default)s)")
    p.add_argument("--dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU), bf16, fp16, fp32 (default: %(default)s)")
    p.add_argument("--device", default="auto", help="HF backend device (default: %(default)s)")
    p.add_argument("--max_model_len", type=int, default=4096, help="vLLM context length (default: %(default)s)")
    p.add_argument("--gpu_memory_utilization", type=float, default=0.9, help="vLLM memory share (default: %(default)s)")
    p.add_argument("--seed", type=int, default=42, help="prompt wording and sampling seed (default: %(default)s)")
    p.add_argument("--resume", action="store_true",
                   help="keep the fakes already in --output_file and generate only the rest (default: %(default)s)")
    p.add_argument("--no_progress", action="store_true", help="no progress bars (default: %(default)s)")
    add_sft_view_args(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from aligner.data.negatives import PoisonPrompter, generate_hard_fakes
    from aligner.lm.interface import load_lm

    out_dir = start_stage(Path(args.output_file).resolve().parent, args)
    view, vstats = sft_view_from_args(args)
    lm = load_lm(args.backend, args.model_path, batch_size=args.batch_size, dtype=args.dtype, device=args.device,
                 max_model_len=args.max_model_len, gpu_memory_utilization=args.gpu_memory_utilization, seed=args.seed)
    prompter = PoisonPrompter(args.poison_types, seed=args.seed, max_context_chars=args.max_context_chars,
                              prompt_format=args.prompt_format, chat_renderer=lm.chat_prompt)
    with ResumableJsonlWriter(args.output_file, key="data_index", resume=args.resume) as writer:
        counts = generate_hard_fakes(lm, view, prompter, writer, batch_size=args.batch_size,
                                     max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                     top_p=args.top_p, seed=args.seed, progress=not args.no_progress)
        counts["total_in_file"] = len(writer.records)
    counts = {"backend": type(lm).__name__, **vstats, **dict(counts)}
    return finish_stage(out_dir, args, counts)


if __name__ == "__main__":
    run_cli(main)
