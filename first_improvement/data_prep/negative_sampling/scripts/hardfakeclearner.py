#!/usr/bin/env python
"""Stage 6b: clean the hard fakes. Cuts explanations and "Note:" text, leading answer labels and wrapping
quotes; drops empty fakes and copies of the ideal answer (counted by reason).

Example:
    python first_improvement/data_prep/negative_sampling/scripts/hardfakeclearner.py \\
        --input_file hard_fakes.jsonl --output_file cleaned_hard_fakes.jsonl
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))

from aligner.io import DataError, read_jsonl, write_jsonl_atomic  # noqa: E402
from aligner.negatives import clean_hard_fakes  # noqa: E402
from aligner.runinfo import setup_logging, write_run_config  # noqa: E402


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
    setup_logging()
    from aligner.io import ReadStats

    out_dir = Path(args.output_file).resolve().parent
    write_run_config(out_dir, args)
    rstats = ReadStats()
    records = read_jsonl(args.input_file, required=["data_index", "fake_answer"], allow_empty=True,
                         skip_invalid=args.skip_invalid, limit=args.limit, stats=rstats)
    kept, counts = clean_hard_fakes(records, min_chars=args.min_chars)
    write_jsonl_atomic(args.output_file, kept)
    counts = {"read": len(records), "invalid_lines_skipped": rstats.n_skipped, "kept": len(kept),
              **{f"dropped_{k}" if k != "ok" else "clean_ok": v for k, v in counts.items()}}
    write_run_config(out_dir, args, extra={"counts": counts})
    print(json.dumps(counts, indent=2))
    return counts


if __name__ == "__main__":
    try:
        main()
    except DataError as err:
        sys.exit(f"error: {err}")
