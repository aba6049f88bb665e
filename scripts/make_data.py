#!/usr/bin/env python
"""`make data`: the data-preparation stages 3 -> 8 in order (1 -> 2 first when --nq_dir is given), each run as
its real stage script with this interpreter, leaving dpo_pairs_{easy,medium,hard}.jsonl in --output_dir.

Layout of --output_dir: retrieval/ and nq/ (only with --nq_dir), squad/, easy/, medium/, hard/, hard_clean/,
with_context/ (one folder per stage, each with its run_config.json), the three pair files and
make_data_run.json (the pipeline manifest: per stage the command, status, wall time, input/output sha256
and the stage's run_config.json with its counts; plus a summary). Each stage's output is also in logs/.

Example:
    python scripts/make_data.py --squad_csv datasets/squad2/train.csv --model_path models/llama3-2-3b-instruct \\
        --output_dir outputs/data --limit 200 --spacy_model auto
"""

from aligner.core.cli import parse_config, run_cli
from aligner.pipeline.data_stages import MakeDataConfig, run_make_data


def parse_args(argv=None) -> MakeDataConfig:
    return parse_config(MakeDataConfig, argv, description=__doc__)


def main(argv=None):
    return run_make_data(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
