#!/usr/bin/env python
"""Stage 4: easy fakes (topic mismatch). Builds the unified SFT view of the NQ RAG and SQuAD records
{question, context, ideal_answer, data_index} and gives every item the ideal answer of a different,
randomly drawn item (seeded; never equal to its own answer).

Output, one JSON object per line: {data_index, question, ideal_answer, fake_answer, type: easy_mismatch}.

Example:
    python first_improvement/data_prep/negative_sampling/scripts/generate_easy_fakes.py \\
        --nq_jsonl data_prep/train_nq_rag.jsonl --squad_jsonl data_prep/squad_15k.jsonl --output_file easy_fakes.jsonl
"""

import argparse
from pathlib import Path

from aligner.core.cli import run_cli
from aligner.core.io import write_jsonl_atomic
from aligner.core.runinfo import finish_stage, start_stage
from aligner.data.negatives import make_easy_fakes
from aligner.data.sft import add_sft_view_args, sft_view_from_args


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_file", default="easy_fakes.jsonl", help="easy fakes (default: %(default)s)")
    p.add_argument("--view_file", default="",
                   help="also write the unified SFT view here ('' = do not) (default: %(default)r)")
    p.add_argument("--seed", type=int, default=42, help="seed of the mismatch draws (default: %(default)s)")
    add_sft_view_args(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out_dir = start_stage(Path(args.output_file).resolve().parent, args)
    view, vstats = sft_view_from_args(args)
    fakes, counts = make_easy_fakes(view, seed=args.seed)
    write_jsonl_atomic(args.output_file, fakes)
    if args.view_file:
        write_jsonl_atomic(args.view_file, view)
    counts = {**vstats, **dict(counts)}
    return finish_stage(out_dir, args, counts)


if __name__ == "__main__":
    run_cli(main)
