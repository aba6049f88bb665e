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
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))

from aligner.io import DataError, write_jsonl_atomic  # noqa: E402
from aligner.negatives import make_easy_fakes  # noqa: E402
from aligner.runinfo import setup_logging, write_run_config  # noqa: E402
from aligner.sft_data import load_sft_view  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nq_jsonl", default="data_prep/train_nq_rag.jsonl",
                   help="NQ RAG records; '' or none = no NQ (default: %(default)s)")
    p.add_argument("--squad_jsonl", default="data_prep/squad_15k.jsonl",
                   help="SQuAD records; '' or none = no SQuAD (default: %(default)s)")
    p.add_argument("--output_file", default="easy_fakes.jsonl", help="easy fakes (default: %(default)s)")
    p.add_argument("--view_file", default="",
                   help="also write the unified SFT view here ('' = do not) (default: %(default)r)")
    p.add_argument("--limit", type=int, default=-1,
                   help="use the first N items of the SFT view, -1 = all; later stages need the same value "
                        "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=42, help="seed of the mismatch draws (default: %(default)s)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    out_dir = Path(args.output_file).resolve().parent
    write_run_config(out_dir, args)
    vstats: dict = {}
    view = load_sft_view(args.nq_jsonl, args.squad_jsonl, args.limit, vstats)
    fakes, counts = make_easy_fakes(view, seed=args.seed)
    write_jsonl_atomic(args.output_file, fakes)
    if args.view_file:
        write_jsonl_atomic(args.view_file, view)
    counts = {**vstats, **dict(counts)}
    write_run_config(out_dir, args, extra={"counts": counts})
    print(json.dumps(counts, indent=2))
    return counts


if __name__ == "__main__":
    try:
        main()
    except DataError as err:
        sys.exit(f"error: {err}")
