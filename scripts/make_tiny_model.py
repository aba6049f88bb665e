#!/usr/bin/env python
"""Build a tiny Llama-architecture model (causal LM or 2-label classifier) for offline tests and the demo.

Example:
    python scripts/make_tiny_model.py --output_dir models/tiny-llama
    python scripts/make_tiny_model.py --output_dir models/tiny-judge --kind seq_cls
"""

import argparse
import time

from aligner.core.cli import run_cli
from aligner.testing.tiny import TinyModelConfig, build_tiny_model


def parse_args(argv=None):
    d = TinyModelConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", required=True, help="where to save the model and tokenizer (HF format)")
    p.add_argument("--kind", choices=["causal", "seq_cls"], default=d.kind,
                   help="causal LM (policy / truth judge) or 2-label sequence classifier (faithfulness judge) "
                        f"(default: {d.kind})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"weight-init seed; same seed, same bytes (default: {d.seed})")
    p.add_argument("--vocab_size", type=int, default=d.vocab_size, help=f"BPE vocabulary size (default: {d.vocab_size})")
    p.add_argument("--model_vocab_size", type=int, default=None,
                   help="embedding rows, if larger than the tokenizer (benchmarks at a 32k+ vocabulary) (default: tokenizer size)")
    p.add_argument("--hidden_size", type=int, default=d.hidden_size, help=f"model width (default: {d.hidden_size})")
    p.add_argument("--intermediate_size", type=int, default=d.intermediate_size, help=f"MLP width (default: {d.intermediate_size})")
    p.add_argument("--num_layers", type=int, default=d.num_layers, help=f"decoder layers (default: {d.num_layers})")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = TinyModelConfig(kind=args.kind, seed=args.seed, vocab_size=args.vocab_size,
                          model_vocab_size=args.model_vocab_size, hidden_size=args.hidden_size,
                          intermediate_size=args.intermediate_size, num_layers=args.num_layers)
    t0 = time.perf_counter()
    out = build_tiny_model(args.output_dir, cfg)
    print(f"tiny {args.kind} model written to {out} in {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    run_cli(main)
