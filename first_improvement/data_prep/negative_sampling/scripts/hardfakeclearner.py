#!/usr/bin/env python
"""Stage 6b: clean the hard fakes. Cuts explanations and "Note:" text, leading answer labels and wrapping
quotes; drops empty fakes and copies of the ideal answer (counted by reason).

Example:
    python first_improvement/data_prep/negative_sampling/scripts/hardfakeclearner.py \\
        --input_file hard_fakes.jsonl --output_file cleaned_hard_fakes.jsonl
"""

import argparse
from pathlib import Path

from aligner.core.cli import run_cli
from aligner.core.io import ReadStats, read_jsonl, write_jsonl_atomic
from aligner.core.runinfo import finish_stage, start_stage
from aligner.data.negatives import clean_hard_fakes


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input_file", default="hard_fakes.jsonl", help="raw hard fakes (default: %(default)s)")
    p.add_argument("--output_file", default="cleaned_hard_fakes.jsonl", help="cleaned hard fakes (default: %(default)s)")
    p.add_argument("--min_chars", type=int, default=1, help="drop fakes shorter than this after cleaning (default: %(default)s)")
    p.add_argument("--limit", type=int, default=-1, help="clean only the first N records, -1 = all (default: %(default)s)")
    p.add_argument("--seed", type=int, default=42, help="recorded only; cleaning is deterministic (default: %(default)s)")
    p.add_argument("--skip_invalid", action="store_true", help="skip (and count) malformed lines (default: %(default)s)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out_dir = start_stage(Path(args.output_file).resolve().parent, args)
    rstats = ReadStats()
    records = read_jsonl(args.input_file, required=["data_index", "fake_answer"], allow_empty=True,
                         skip_invalid=args.skip_invalid, limit=args.limit, stats=rstats)
    kept, counts = clean_hard_fakes(records, min_chars=args.min_chars)
    write_jsonl_atomic(args.output_file, kept)
    counts = {"read": len(records), "invalid_lines_skipped": rstats.n_skipped, "kept": len(kept),
              **{f"dropped_{k}" if k != "ok" else "clean_ok": v for k, v in counts.items()}}
    return finish_stage(out_dir, args, counts)


if __name__ == "__main__":
    run_cli(main)
