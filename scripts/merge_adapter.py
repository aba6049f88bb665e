#!/usr/bin/env python
"""Merge a LoRA adapter into its base model and save a plain model (+ tokenizer), verified on a probe input.

The merge runs in --compute_dtype (fp32 by default), its logits are compared with base+adapter on a probe
input (the max absolute difference is printed; above --tolerance the script exits with status 1 and writes
nothing), then the model is cast to --dtype and saved with the tokenizer and run_config.json. The saved folder
is reloaded and checked once more.

Example (the study's layout):
    python scripts/merge_adapter.py --base_model_path models/llama3-2-3b-instruct --adapter_path dpop_out \\
        --output_path models/llama3-2-3b-dpop-instruct --dtype bf16
"""

from aligner.core.cli import parse_config, run_cli
from aligner.train.merge import MergeConfig, run_merge


def parse_args(argv=None) -> MergeConfig:
    return parse_config(MergeConfig, argv, description=__doc__)


def main(argv=None):
    cfg = parse_args(argv)
    return run_merge(cfg)


if __name__ == "__main__":
    run_cli(main)
