#!/usr/bin/env python
"""NER swapper as a command: build the entity knowledge base from a file of texts and swap the entities of
each text (or of the --text strings) for different ones of the same label.

Input: JSON lines (--field picks the text; a list value uses its first element) or plain text, one per line.
Output: JSON lines {text, swapped, swaps} (--output_file), else printed.

Example:
    python first_improvement/data_prep/negative_sampling/scripts/ner_swapper.py --input_file squad_15k.jsonl \\
        --field answers --spacy_model rule --text "George Washington was born in 1732."
"""

import argparse
import json
from pathlib import Path

from aligner.core.cli import run_cli
from aligner.core.io import read_jsonl, write_jsonl_atomic
from aligner.core.runinfo import setup_logging, write_run_config
from aligner.data.ner import DEFAULT_SPACY_MODEL, NERSwapper, load_ner_pipeline


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input_file", default=None, help="texts for the knowledge base: .jsonl or .txt (default: %(default)s)")
    p.add_argument("--field", default="ideal_answer", help="JSON field holding the text (default: %(default)s)")
    p.add_argument("--text", action="append", default=[],
                   help="text to swap (repeatable); without it every input text is swapped (default: none)")
    p.add_argument("--spacy_model", default=DEFAULT_SPACY_MODEL,
                   help="spaCy model, 'rule' (offline fallback) or 'auto' (default: %(default)s)")
    p.add_argument("--output_file", default=None, help="JSON lines output; else printed (default: %(default)s)")
    p.add_argument("--show_kb", action="store_true", help="print the entity counts per label (default: %(default)s)")
    p.add_argument("--limit", type=int, default=-1, help="read at most N input texts, -1 = all (default: %(default)s)")
    p.add_argument("--seed", type=int, default=42, help="seed of the replacement draws (default: %(default)s)")
    return p.parse_args(argv)


def read_texts(path: str, field: str, limit: int) -> list[str]:
    if path.endswith(".txt"):
        texts = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        texts = []
        for rec in read_jsonl(path, required=[field]):
            val = rec[field]
            val = val[0] if isinstance(val, list) and val else val
            if isinstance(val, str) and val.strip():
                texts.append(val.strip())
    return texts[:limit] if limit >= 0 else texts


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    if not args.input_file and not args.text:
        raise SystemExit("error: give --input_file and/or --text")
    kb_texts = read_texts(args.input_file, args.field, args.limit) if args.input_file else []
    nlp, used = load_ner_pipeline(args.spacy_model)
    print(f"NER pipeline: {used}")
    swapper = NERSwapper(nlp, seed=args.seed)
    kb = swapper.build_knowledge_base(kb_texts + list(args.text))
    if args.show_kb:
        print(json.dumps({label: len(v) for label, v in kb.items()}, indent=2))
    targets = list(args.text) or kb_texts
    results = []
    for text in targets:
        swapped, swaps = swapper.swap_entities(text)
        results.append({"text": text, "swapped": swapped, "swaps": swaps})
    if args.output_file:
        write_jsonl_atomic(args.output_file, results)
    else:
        for r in results:
            print(json.dumps({"text": r["text"], "swapped": r["swapped"]}, ensure_ascii=False))
    counts = {"spacy_model_used": used, "kb_texts": len(kb_texts), "swapped": sum(bool(r["swaps"]) for r in results),
              "unchanged": sum(not r["swaps"] for r in results)}
    if args.output_file:
        write_run_config(Path(args.output_file).resolve().parent, args, extra={"counts": counts})
    print(json.dumps(counts, indent=2))
    return counts


if __name__ == "__main__":
    run_cli(main)
