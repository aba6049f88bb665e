#!/usr/bin/env python
"""Download the models the HaluEval evaluations use into models/ (and the spaCy NER model for data prep).

| name      | repository                                   | used by |
| hhem      | vectara/hallucination_evaluation_model        | eval_haleval_llm_step2.py --judge_model_path (trust_remote_code) |
| hhem_tok  | google/flan-t5-base (tokenizer, to HF cache)  | HHEM loads its tokenizer by this hub id |
| nli       | MoritzLaurer/DeBERTa-v3-base-mnli-fever-anli  | step-2 alternative NLI judge |
| embed     | sentence-transformers/all-mpnet-base-v2       | eval_halueval.py --embed_model |
| bertscore | microsoft/deberta-v3-large                    | eval_halueval.py --bertscore_model |
| spacy     | en_core_web_trf (pip package)                 | medium fakes (NER swaps) |

Each part is skipped when already present; `--only hhem,embed` picks parts.
"""

import argparse
import sys
from pathlib import Path

from aligner.core.cli import run_cli
from aligner.core.hub import install_spacy_model, snapshot

# name -> (repo id, folder under --models_dir or None for the HF cache, allow patterns)
HUB_MODELS = {
    "hhem": ("vectara/hallucination_evaluation_model", "hallucination_evaluation_model", None),
    "hhem_tok": ("google/flan-t5-base", None, ["*.json", "spiece.model"]),
    "nli": ("MoritzLaurer/DeBERTa-v3-base-mnli-fever-anli", "DeBERTa-v3-base-mnli-fever-anli",
            ["*.json", "*.safetensors", "*.model", "*.txt"]),
    "embed": ("sentence-transformers/all-mpnet-base-v2", "all-mpnet-base-v2",
              ["*.json", "*.safetensors", "*.txt", "1_Pooling/*", "modules.json"]),
    "bertscore": ("microsoft/deberta-v3-large", "deberta-v3-large", ["*.json", "*.bin", "*.safetensors", "*.model"]),
}
SPACY_MODEL = "en_core_web_trf"
ALL = [*HUB_MODELS, "spacy"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models_dir", default="models", help="parent folder of the model folders (default: models)")
    p.add_argument("--only", default=",".join(ALL), help=f"comma-separated parts to fetch (default: {','.join(ALL)})")
    p.add_argument("--spacy_model", default=SPACY_MODEL, help=f"spaCy pipeline package (default: {SPACY_MODEL})")
    p.add_argument("--force", action="store_true", help="download again even if present (default: off)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    parts = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in parts if s not in ALL]
    if unknown:
        print(f"error: unknown part(s) {unknown}; choose from {ALL}", file=sys.stderr)
        raise SystemExit(2)
    results = []
    for part in parts:  # stops at the first failure: offline, every later part would fail the same way
        if part == "spacy":
            print(f"spaCy {args.spacy_model} -> installed into {sys.prefix}")
            result = run_cli(install_spacy_model, args.spacy_model)
        else:
            repo, folder, allow = HUB_MODELS[part]
            out = Path(args.models_dir) / folder if folder else None
            print(f"{repo} -> {out.resolve() if out else 'the Hugging Face cache'}")
            result = run_cli(snapshot, repo, out, allow_patterns=allow, force=args.force)
        print(f"done: {result.describe()}")
        results.append(result)
    return results

if __name__ == "__main__":
    main()
