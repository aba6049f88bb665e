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
from pathlib import Path

from aligner.core.cli import run_cli
from aligner.core.io import write_jsonl_atomic
from aligner.core.runinfo import finish_stage, start_stage
from aligner.data.ner import DEFAULT_SPACY_MODEL, NERSwapper, load_ner_pipeline, make_medium_fakes
from aligner.data.sft import add_sft_view_args, sft_view_from_args


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_file", default="medium_fakes.jsonl", help="medium fakes (default: %(default)s)")
    p.add_argument("--spacy_model", default=DEFAULT_SPACY_MODEL,
                   help="spaCy model, 'rule' (offline fallback) or 'auto' (default: %(default)s)")
    p.add_argument("--batch_size", type=int, default=64, help="texts per spaCy batch (default: %(default)s)")
    p.add_argument("--prefer_gpu", action="store_true", help="let spaCy use the GPU (default: %(default)s)")
    p.add_argument("--seed", type=int, default=42, help="seed of the replacement draws (default: %(default)s)")
    p.add_argument("--no_progress", action="store_true", help="no progress bars (default: %(default)s)")
    add_sft_view_args(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out_dir = start_stage(Path(args.output_file).resolve().parent, args)
    view, vstats = sft_view_from_args(args)
    nlp, used = load_ner_pipeline(args.spacy_model, prefer_gpu=args.prefer_gpu)
    print(f"NER pipeline: {used}" + (" (rule-based offline fallback)" if used == "rule" else ""))
    fakes, counts = make_medium_fakes(view, NERSwapper(nlp, seed=args.seed), batch_size=args.batch_size,
                                      progress=not args.no_progress)
    write_jsonl_atomic(args.output_file, fakes)
    counts = {"spacy_model_used": used, **vstats, **dict(counts)}
    return finish_stage(out_dir, args, counts)


if __name__ == "__main__":
    run_cli(main)
