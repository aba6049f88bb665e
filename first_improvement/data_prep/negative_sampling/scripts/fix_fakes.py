#!/usr/bin/env python
"""Stage 7: context restore. Reattaches the question, context and ideal answer of the SFT view to every fake
by data_index, writing <kind>_fakes_with_context.jsonl for easy, medium and hard.

The view must be built from the same NQ/SQuAD files and --limit as the fakes; a fake whose question differs
from the view's question at its index stops the stage with the file and line (or is counted with
--skip_mismatched).

Output, one JSON object per line: {data_index, question, context, ideal_answer, fake_answer, type}.

Example:
    python first_improvement/data_prep/negative_sampling/scripts/fix_fakes.py --squad_jsonl squad_15k.jsonl \\
        --nq_jsonl train_nq_rag.jsonl --easy_file easy_fakes.jsonl --medium_file medium_fakes.jsonl \\
        --hard_file cleaned_hard_fakes.jsonl --output_dir .
"""

import argparse

from aligner.core.cli import run_cli
from aligner.core.io import read_jsonl, write_jsonl_atomic
from aligner.core.runinfo import finish_stage, start_stage
from aligner.data.negatives import restore_context
from aligner.data.sft import add_sft_view_args, sft_view_from_args


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--easy_file", default="easy_fakes.jsonl", help="easy fakes ('' = skip) (default: %(default)s)")
    p.add_argument("--medium_file", default="medium_fakes.jsonl", help="medium fakes ('' = skip) (default: %(default)s)")
    p.add_argument("--hard_file", default="cleaned_hard_fakes.jsonl", help="cleaned hard fakes ('' = skip) (default: %(default)s)")
    p.add_argument("--output_dir", default=".", help="where <kind>_fakes_with_context.jsonl go (default: %(default)s)")
    p.add_argument("--seed", type=int, default=42, help="recorded only; the restore is deterministic (default: %(default)s)")
    p.add_argument("--skip_mismatched", action="store_true",
                   help="count and skip fakes that do not match the view instead of stopping (default: %(default)s)")
    add_sft_view_args(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out_dir = start_stage(args.output_dir, args)
    view, vstats = sft_view_from_args(args)
    counts: dict = dict(vstats)
    for kind, path in (("easy", args.easy_file), ("medium", args.medium_file), ("hard", args.hard_file)):
        if not path:
            continue
        fakes = read_jsonl(path, required=["data_index", "fake_answer"], allow_empty=True)
        restored, c = restore_context(fakes, view, source=path, strict=not args.skip_mismatched)
        write_jsonl_atomic(out_dir / f"{kind}_fakes_with_context.jsonl", restored)
        counts.update({f"{kind}_{k}": v for k, v in c.items()})
        counts[f"{kind}_read"] = len(fakes)
    return finish_stage(out_dir, args, counts)


if __name__ == "__main__":
    run_cli(main)
