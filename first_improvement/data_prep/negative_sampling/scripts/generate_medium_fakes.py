#!/usr/bin/env python
"""Stage 5: medium fakes (NER entity swaps). spaCy NER over all ideal answers of the SFT view builds a
knowledge base per entity label; every entity of an answer is replaced by a different one of the same label.

--spacy_model: a spaCy model name (the study: en_core_web_trf), `rule` (built-in offline rule-based tagger:
dates, numbers/quantities, capitalised names) or `auto` (en_core_web_trf when installed, else rule).

Output, one JSON object per line: {data_index, question, ideal_answer, fake_answer, type: medium_ner_swap, swaps}.

Example:
    python first_improvement/data_prep/negative_sampling/scripts/generate_medium_fakes.py \\
        --squad_jsonl data_prep/squad_15k.jsonl --nq_jsonl '' --spacy_model auto --output_file medium_fakes.jsonl
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))

from aligner.io import DataError, write_jsonl_atomic  # noqa: E402
from aligner.ner import DEFAULT_SPACY_MODEL, NERSwapper, load_ner_pipeline, make_medium_fakes  # noqa: E402
from aligner.runinfo import setup_logging, write_run_config  # noqa: E402
from aligner.sft_data import load_sft_view  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nq_jsonl", default="data_prep/train_nq_rag.jsonl",
                   help="NQ RAG records; '' or none = no NQ (default: %(default)s)")
    p.add_argument("--squad_jsonl", default="data_prep/squad_15k.jsonl",
                   help="SQuAD records; '' or none = no SQuAD (default: %(default)s)")
    p.add_argument("--output_file", default="medium_fakes.jsonl", help="medium fakes (default: %(default)s)")
    p.add_argument("--spacy_model", default=DEFAULT_SPACY_MODEL,
                   help="spaCy model, 'rule' (offline fallback) or 'auto' (default: %(default)s)")
    p.add_argument("--batch_size", type=int, default=64, help="texts per spaCy batch (default: %(default)s)")
    p.add_argument("--prefer_gpu", action="store_true", help="let spaCy use the GPU (default: %(default)s)")
    p.add_argument("--limit", type=int, default=-1,
                   help="use the first N items of the SFT view, -1 = all (same value as the other stages) "
                        "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=42, help="seed of the replacement draws (default: %(default)s)")
    p.add_argument("--no_progress", action="store_true", help="no progress bars (default: %(default)s)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    out_dir = Path(args.output_file).resolve().parent
    write_run_config(out_dir, args)
    vstats: dict = {}
    view = load_sft_view(args.nq_jsonl, args.squad_jsonl, args.limit, vstats)
    nlp, used = load_ner_pipeline(args.spacy_model, prefer_gpu=args.prefer_gpu)
    print(f"NER pipeline: {used}" + (" (rule-based offline fallback)" if used == "rule" else ""))
    fakes, counts = make_medium_fakes(view, NERSwapper(nlp, seed=args.seed), batch_size=args.batch_size,
                                      progress=not args.no_progress)
    write_jsonl_atomic(args.output_file, fakes)
    counts = {"spacy_model_used": used, **vstats, **dict(counts)}
    write_run_config(out_dir, args, extra={"counts": counts})
    print(json.dumps(counts, indent=2))
    return counts


if __name__ == "__main__":
    try:
        main()
    except DataError as err:
        sys.exit(f"error: {err}")
