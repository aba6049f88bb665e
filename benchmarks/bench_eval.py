#!/usr/bin/env python
"""Evaluation speed: batched TruthfulQA MC scoring and batched generation against the one-question-at-a-time
way, on the same model in the same run, with the outputs checked to agree.

* MC, one at a time: every (question, choice) its own forward pass (mc1 then mc2 choices, as a plain loop).
  Batched: ``aligner.truthfulqa.score_mc`` (distinct choices once, packed behind a shared question prefix,
  ``--mc_batch`` choices per forward); also shown without prefix sharing.
* Generation, one at a time: one prompt per ``generate`` call.  Batched: ``--gen_batch_size`` prompts per
  call, left padded.  Greedy, so the answers must be identical.

Example:
    python benchmarks/bench_eval.py                       # tiny model built on the fly, CPU
    python benchmarks/bench_eval.py --model_path models/llama3-2-3b-instruct --n_questions 100
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from aligner.core.paths import truthfulqa_csv_path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_path", default=None, help="policy model (default: a tiny model built in a temp folder)")
    p.add_argument("--data_path", default=str(truthfulqa_csv_path()),
                   help=f"TruthfulQA CSV or HF-schema file (default: {truthfulqa_csv_path()})")
    p.add_argument("--n_questions", type=int, default=40, help="questions timed per phase (default: 40)")
    p.add_argument("--mc_batch", type=int, default=64, help="MC choices per forward, batched way (default: 64)")
    p.add_argument("--gen_batch_size", type=int, default=16, help="prompts per generate call, batched way (default: 16)")
    p.add_argument("--max_new_tokens", type=int, default=32, help="greedy tokens per answer (default: 32)")
    p.add_argument("--dtype", default="auto", help="auto = bf16 on CUDA, fp32 on CPU (default: auto)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")
    p.add_argument("--repeats", type=int, default=2,
                   help="timed runs of each way, interleaved; the fastest counts (shared machines are noisy) "
                        "(default: 2)")
    p.add_argument("--skip_generation", action="store_true", help="time MC only (default: off)")
    p.add_argument("--output_json", default=None, help="also write the numbers here (default: None)")
    return p.parse_args(argv)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def fastest(fns, repeats):
    """Run each function ``repeats`` times, interleaved; return each one's output and fastest time."""
    outs, best = [None] * len(fns), [float("inf")] * len(fns)
    for _ in range(max(1, repeats)):
        for i, fn in enumerate(fns):
            outs[i], t = timed(fn)
            best[i] = min(best[i], t)
    return list(zip(outs, best))


def mc_one_at_a_time(lm, items):
    """The straightforward loop: each choice of each question in its own forward pass."""
    from aligner.eval.metrics.mc import mc1_hit, mc2_mass
    from aligner.prompts import truthfulqa_choice, truthfulqa_prompt

    hits, masses = [], []
    for it in items:
        ctx = truthfulqa_prompt(it.question)
        s1 = [lm.loglikelihood([(ctx, truthfulqa_choice(c))], progress=False)[0] for c in it.mc1_choices]
        s2 = [lm.loglikelihood([(ctx, truthfulqa_choice(c))], progress=False)[0] for c in it.mc2_choices]
        hits.append(mc1_hit(s1, it.mc1_labels))
        masses.append(mc2_mass(s2, it.mc2_labels))
    return sum(hits) / len(hits), sum(masses) / len(masses), masses


def mc_batched(lm, items):
    from aligner.eval.tasks.truthfulqa import score_mc

    res = score_mc(lm, items)
    masses = [r.mc2_mass for r in res]
    return sum(r.mc1_hit for r in res) / len(res), sum(masses) / len(masses), masses


def generate(lm, prompts, max_new_tokens, one_call_per_prompt):
    if one_call_per_prompt:
        return [lm.generate_until([p], max_new_tokens=max_new_tokens, progress=False)[0] for p in prompts]
    return lm.generate_until(prompts, max_new_tokens=max_new_tokens, progress=False)


def main(argv=None):
    import torch

    from aligner.data.sources.truthfulqa import load_truthfulqa
    from aligner.lm.hf import HFLM
    from aligner.prompts import truthfulqa_prompt

    args = parse_args(argv)
    tmp = None
    model_path = args.model_path
    if model_path is None:
        from aligner.testing.tiny import TinyModelConfig, build_tiny_model

        tmp = tempfile.TemporaryDirectory(prefix="bench-eval-")
        model_path = str(build_tiny_model(tmp.name, TinyModelConfig(kind="causal", seed=0)))
    lm = HFLM(model_path, dtype=args.dtype, device=args.device, batch_size=args.mc_batch,
              gen_batch_size=args.gen_batch_size)

    def same_model(**settings):  # the loaded model with other batching settings
        return HFLM(model_path, model=lm.model, tokenizer=lm.tokenizer, **settings)

    single = same_model(batch_size=1)
    flat = same_model(batch_size=args.mc_batch, share_prefix=False)
    data = load_truthfulqa(args.data_path, limit=args.n_questions)
    n = len(data.mc)
    print(f"model {model_path} on {lm.device} ({torch.get_num_threads()} CPU threads), {n} questions, "
          f"{sum(len(i.mc1_choices) + len(i.mc2_choices) for i in data.mc)} MC choices")

    # Warm-up (allocator, kernels), then the timed runs.
    mc_batched(lm, data.mc[:2])
    mc_one_at_a_time(single, data.mc[:1])
    ((n1, n2, naive_mass), t_naive), ((b1, b2, packed_mass), t_packed), ((f1, f2, flat_mass), t_flat) = fastest(
        [lambda: mc_one_at_a_time(single, data.mc), lambda: mc_batched(lm, data.mc),
         lambda: mc_batched(flat, data.mc)], args.repeats)
    diff = max(max(abs(a - b) for a, b in zip(naive_mass, packed_mass)),
               max(abs(a - b) for a, b in zip(naive_mass, flat_mass)))
    rows = [("MC one choice per forward", n / t_naive, None),
            ("MC batched, shared prefix", n / t_packed, t_naive / t_packed),
            ("MC batched, no prefix sharing", n / t_flat, t_naive / t_flat)]
    result = {"device": str(lm.device), "n_questions": n, "mc_batch": args.mc_batch, "repeats": args.repeats,
              "torch_threads": torch.get_num_threads(),
              "mc_seconds": {"one_at_a_time": t_naive, "batched_shared_prefix": t_packed, "batched_flat": t_flat},
              "mc_speedup": t_naive / t_packed, "mc_speedup_flat": t_naive / t_flat,
              "mc_max_abs_diff_mc2_mass": diff, "mc_same_mc1": n1 == b1 == f1,
              "mc1": b1, "mc2": b2}

    if not args.skip_generation:
        prompts = [truthfulqa_prompt(g.question) for g in data.gen]
        generate(lm, prompts[:2], 4, False)
        (naive, t_gn), (batched, t_gb) = fastest(
            [lambda: generate(single, prompts, args.max_new_tokens, True),
             lambda: generate(lm, prompts, args.max_new_tokens, False)], args.repeats)
        same = sum(a == b for a, b in zip(naive, batched))
        rows += [("generation one prompt per call", n / t_gn, None),
                 (f"generation batched ({args.gen_batch_size} per call)", n / t_gb, t_gn / t_gb)]
        result.update({"gen_batch_size": args.gen_batch_size, "max_new_tokens": args.max_new_tokens,
                       "gen_seconds": {"one_at_a_time": t_gn, "batched": t_gb}, "gen_speedup": t_gn / t_gb,
                       "gen_identical_answers": same, "gen_answers": n})

    print(f"{'':40s} {'questions/s':>12s} {'speed-up':>9s}")
    for name, qps, ratio in rows:
        print(f"{name:40s} {qps:12.2f} {f'{ratio:.2f}x' if ratio else '':>9s}")
    print(f"MC: MC1 {b1:.4f} / MC2 {b2:.4f} (one-at-a-time: {n1:.4f} / {n2:.4f}); max |MC2 mass diff| {diff:.2e}")
    if not args.skip_generation:
        print(f"generation: {result['gen_identical_answers']}/{n} greedy answers identical to one-at-a-time")
        print(f"ratios: MC {result['mc_speedup']:.2f}x (target >= 1.5x), generation {result['gen_speedup']:.2f}x "
              f"(target >= 3x)")
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(result, indent=2) + "\n")
    if tmp is not None:
        tmp.cleanup()
    return result


if __name__ == "__main__":
    main()
