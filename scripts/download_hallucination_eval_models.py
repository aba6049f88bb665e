#!/usr/bin/env python
"""Download the models the HaluEval evaluations use into models/ (and the spaCy NER model for data prep).

| name      | repository                                   | used by |
| hhem      | vectara/hallucination_evaluation_model        | eval_haleval_llm_step2.py --judge_model_path (trust_remote_code) |
| hhem_tok  | google/flan-t5-base (config + tokenizer files, no weights; to the HF cache) | HHEM's __init__ loads both by this hub id (config.foundation) |
| nli       | MoritzLaurer/DeBERTa-v3-base-mnli-fever-anli  | step-2 alternative NLI judge |
| embed     | sentence-transformers/all-mpnet-base-v2       | eval_halueval.py --embed_model |
| bertscore | microsoft/deberta-v3-large                    | eval_halueval.py --bertscore_model |
| spacy     | en_core_web_trf (pip package)                 | medium fakes (NER swaps) |

Each part is skipped when already present; `--only hhem,embed` picks parts.
"""

from aligner.core.cli import parse_config, run_cli
from aligner.core.downloads import DownloadEvalModelsConfig, download_hallucination_eval_models


def parse_args(argv=None) -> DownloadEvalModelsConfig:
    return parse_config(DownloadEvalModelsConfig, argv, description=__doc__)


def main(argv=None):
    return download_hallucination_eval_models(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
