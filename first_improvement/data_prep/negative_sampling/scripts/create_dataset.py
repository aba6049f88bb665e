#!/usr/bin/env python
"""Stage 8: curriculum preference pairs {prompt, context, chosen, rejected} per phase.

  easy   : ideal > easy fake
  medium : ideal > medium fake, hard fake > easy fake
  hard   : ideal > hard fake, hard fake > medium fake, medium fake > easy fake
(fake-vs-fake pairs use the first fake of each kind per item; chosen == rejected is never written).

Output: dpo_pairs_easy.jsonl, dpo_pairs_medium.jsonl, dpo_pairs_hard.jsonl, each line
{prompt, context, chosen, rejected, data_index, phase, pair_type}.

Example:
    python first_improvement/data_prep/negative_sampling/scripts/create_dataset.py --input_dir . --output_dir final_data
"""

import argparse
from pathlib import Path

from aligner.core.cli import run_cli
from aligner.core.io import read_jsonl, write_jsonl_atomic
from aligner.core.paths import LEVELS
from aligner.core.runinfo import finish_stage, start_stage
from aligner.data.pairs import build_curriculum_pairs

REQUIRED = ["data_index", "question", "context", "ideal_answer", "fake_answer"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input_dir", default=".", help="folder of the *_fakes_with_context.jsonl files (default: %(default)s)")
    p.add_argument("--easy_file", default=None, help="easy fakes with context (default: <input_dir>/easy_fakes_with_context.jsonl)")
    p.add_argument("--medium_file", default=None, help="medium fakes with context (default: <input_dir>/medium_fakes_with_context.jsonl)")
    p.add_argument("--hard_file", default=None, help="hard fakes with context (default: <input_dir>/hard_fakes_with_context.jsonl)")
    p.add_argument("--output_dir", default=".", help="where dpo_pairs_{easy,medium,hard}.jsonl go (default: %(default)s)")
    p.add_argument("--limit", type=int, default=-1, help="write at most N pairs per phase, -1 = all (default: %(default)s)")
    p.add_argument("--seed", type=int, default=42, help="recorded only; pairs come in data_index order (default: %(default)s)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out_dir = start_stage(args.output_dir, args)
    inputs = {}
    for kind in ("easy", "medium", "hard"):
        path = getattr(args, f"{kind}_file") or str(Path(args.input_dir) / f"{kind}_fakes_with_context.jsonl")
        inputs[kind] = read_jsonl(path, required=REQUIRED, allow_empty=True)
    pairs, counts = build_curriculum_pairs(inputs["easy"], inputs["medium"], inputs["hard"])
    for phase in LEVELS:
        rows = pairs[phase][:args.limit] if args.limit >= 0 else pairs[phase]
        write_jsonl_atomic(out_dir / f"dpo_pairs_{phase}.jsonl", rows)
        counts[f"written_{phase}"] = len(rows)
    counts = {**{f"fakes_{k}": len(v) for k, v in inputs.items()}, **dict(sorted(counts.items()))}
    finish_stage(out_dir, args, counts)
    print("phase summary: " + ", ".join(f"{p}={counts[f'written_{p}']}" for p in LEVELS))
    return counts


if __name__ == "__main__":
    run_cli(main)
