#!/usr/bin/env python
"""Merge a LoRA adapter into its base model and save a plain model (+ tokenizer), verified on a probe input.

The merge runs in --compute_dtype (fp32 by default), its logits are compared with base+adapter on a probe
input (the max absolute difference is printed; above --tolerance the script exits with status 1 and writes
nothing), then the model is cast to --dtype and saved with the tokenizer and run_config.json. The saved folder
is reloaded and checked once more.

Example (the study's layout):
    python scripts/merge_adapter.py --base_model_path models/llama3-2-3b-instruct --adapter_path dpop_out \
        --output_path models/llama3-2-3b-dpop-instruct --dtype bf16
"""

import argparse
import sys
from pathlib import Path

from aligner.core.models import ModelLoadError
from aligner.core.runinfo import setup_logging, write_run_config
from aligner.train.merge import MergeCheckError, merge_lora


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base_model_path", default="models/llama3-2-3b-instruct",
                   help="base model folder or hub id (default: models/llama3-2-3b-instruct)")
    p.add_argument("--adapter_path", default="dpop_out", help="LoRA adapter folder (default: dpop_out)")
    p.add_argument("--output_path", default="models/llama3-2-3b-dpop-instruct",
                   help="where the merged model goes (default: models/llama3-2-3b-dpop-instruct)")
    p.add_argument("--dtype", default="auto",
                   help="dtype of the saved model: auto (the base checkpoint's), fp32, bf16, fp16 (default: auto)")
    p.add_argument("--compute_dtype", default="fp32",
                   help="dtype the merge and the check run in; fp32 rounds the merged weights once (default: fp32)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default: auto)")
    p.add_argument("--tolerance", type=float, default=None,
                   help="largest accepted max |logit difference| merged vs base+adapter "
                        "(default: 1e-3 for fp32, 5e-2 fp16, 0.25 bf16 compute dtype)")
    p.add_argument("--probe_text", default=None,
                   help="text to check on (default: a chat-rendered HaluEval-style question and answer)")
    p.add_argument("--no_verify_saved", action="store_true",
                   help="skip reloading the saved model for a second check (default: off)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_logging()
    print(f"merging {args.adapter_path} into {args.base_model_path} -> {Path(args.output_path).resolve()}")
    try:
        report = merge_lora(args.base_model_path, args.adapter_path, args.output_path, save_dtype=args.dtype,
                            compute_dtype=args.compute_dtype, device=args.device, tolerance=args.tolerance,
                            probe_text=args.probe_text, verify_saved=not args.no_verify_saved)
    except (MergeCheckError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"adapter effect on the probe: max |adapter - base| = {report.adapter_effect:.4g}")
    print(f"merged vs base+adapter ({report.compute_dtype}, {report.probe_tokens} tokens): "
          f"max abs diff = {report.max_abs_diff:.3g} (mean {report.mean_abs_diff:.3g}, tolerance {report.tolerance:.3g})")
    if report.saved_max_abs_diff is not None:
        print(f"saved {report.save_dtype} model vs base+adapter: max abs diff = {report.saved_max_abs_diff:.3g}")
    write_run_config(args.output_path, args, extra={"merge_check": report.to_dict()})
    print(f"saved merged model and tokenizer to {report.output_path}")
    return report


if __name__ == "__main__":
    main()
