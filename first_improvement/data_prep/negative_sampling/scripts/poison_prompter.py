#!/usr/bin/env python
"""Poison prompter as a command: show the poison prompts of the three types for one question, or write the
prompts generate_hard_fakes.py would send for an SFT view (without generating).

Example:
    python first_improvement/data_prep/negative_sampling/scripts/poison_prompter.py \\
        --question "Why did the Roman Empire fall?" --ideal_answer "Economic crises and invasions."
    python first_improvement/data_prep/negative_sampling/scripts/poison_prompter.py \\
        --squad_jsonl squad_15k.jsonl --nq_jsonl '' --output_file poison_prompts.jsonl --limit 100
"""

import argparse
from pathlib import Path

from aligner.core.cli import run_cli
from aligner.core.io import write_jsonl_atomic
from aligner.core.runinfo import finish_stage, setup_logging
from aligner.data.negatives import PoisonPrompter
from aligner.data.sft import add_sft_view_args, sft_view_from_args
from aligner.prompts import POISON_TYPES


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--question", default=None, help="one question to show prompts for (default: %(default)s)")
    p.add_argument("--ideal_answer", default="", help="its correct answer (default: %(default)r)")
    p.add_argument("--context", default="", help="its context (default: %(default)r)")
    p.add_argument("--output_file", default=None,
                   help="write {data_index, type, prompt} lines for the view here (default: %(default)s)")
    p.add_argument("--poison_types", nargs="+", default=list(POISON_TYPES), choices=list(POISON_TYPES),
                   help="poison types (default: %(default)s)")
    p.add_argument("--max_context_chars", type=int, default=4000, help="context characters kept, -1 = all (default: %(default)s)")
    p.add_argument("--seed", type=int, default=42, help="seed of the wording choice (default: %(default)s)")
    add_sft_view_args(p, nq_default="", squad_default="")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    prompter = PoisonPrompter(args.poison_types, seed=args.seed, max_context_chars=args.max_context_chars)
    if args.question:
        for ptype in args.poison_types:
            print(f"--- {ptype} ---")
            print(prompter.create_poison_prompt(args.question, args.ideal_answer, ptype, args.context))
        return {"shown": len(args.poison_types)}
    if not args.output_file:
        raise SystemExit("error: give --question, or --output_file with --squad_jsonl/--nq_jsonl")
    view, vstats = sft_view_from_args(args)
    rows = []
    for pos, item in enumerate(view):
        ptype, prompt = prompter.prompt_for(item, pos)
        rows.append({"data_index": item["data_index"], "type": f"hard_{ptype}", "prompt": prompt})
    write_jsonl_atomic(args.output_file, rows)
    counts = {**vstats, "prompts": len(rows)}
    return finish_stage(Path(args.output_file).resolve().parent, args, counts)


if __name__ == "__main__":
    run_cli(main)
