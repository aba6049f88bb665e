#!/usr/bin/env python
"""Training-step speed and peak memory: this trainer's DPOP step against a straightforward implementation.

Both variants train the same LoRA adapter (same init, same optimizer) on the same HaluEval pairs with the same
batch size and the same number of steps:

* trainer:  one policy forward over chosen+rejected concatenated, only response positions projected onto the
            vocabulary (aligner.trainer.policy_and_reference_logps), one no-grad reference forward;
* straightforward (the study's loop): four forwards per batch (policy chosen, policy rejected, reference
            chosen, reference rejected), each materialising the full (rows x length x vocab) logits and their
            full log-softmax before gathering the response tokens.

Each variant runs in its own fresh process.  Peak memory: on CUDA, torch.cuda.max_memory_allocated() above the
allocation before the steps; on CPU, the process's peak resident set (VmHWM) above the resident set before the
steps, the peak being reset through /proc/self/clear_refs and glibc's mmap threshold lowered to 64 KiB so that
freed tensors are returned to the OS (the number then tracks live tensor memory).  The first step is a warm-up
and is left out of the timing (not of the memory peak).  By default the model is the tiny Llama built with a
32,768-row vocabulary (vocab >= 32k, as in Llama-3's 128k), where the logits dominate memory.

Example:
    python benchmarks/bench_train.py --n_pairs 16 --batch_size 4 --steps 4
"""

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.cli import parse_config, run_cli, to_argv

VARIANTS = ("trainer", "straightforward")


@dataclass(kw_only=True)
class BenchTrainConfig:
    model_path: str | None = field(default=None, metadata={
        "help": "causal LM to benchmark (default: a tiny Llama built with --model_vocab_size rows)"})
    model_vocab_size: int = field(default=32768, metadata={
        "help": "vocabulary rows of the tiny model built when --model_path is not given"})
    data: str | None = field(default=None, metadata={
        "help": "HaluEval qa_data.json (default: ../shared/data/halueval/qa_data.json)"})
    n_pairs: int = field(default=16, metadata={"help": "pairs used, cycled over the steps"})
    batch_size: int = field(default=4, metadata={"help": "pairs per step"})
    steps: int = field(default=4, metadata={"help": "timed steps after one warm-up step; at least 1"})
    max_length: int = field(default=256, metadata={"help": "prompt+response tokens"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads; 0 = torch's default"})
    output_json: str | None = field(default=None, metadata={"help": "also write the results here (default: none)"})
    variant: str | None = field(default=None, metadata={
        "help": "internal: time this one variant in this process (the driver starts one process per variant) "
                "(default: none, run both)", "choices": list(VARIANTS)})

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("--steps and --batch_size must be >= 1")


def parse_args(argv=None) -> BenchTrainConfig:
    return parse_config(BenchTrainConfig, argv, description=__doc__)


# ---------------------------------------------------------------------------------------------
# memory measurement
# ---------------------------------------------------------------------------------------------

def _proc_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


class PeakMemory:
    """Peak bytes allocated above the level at ``reset()`` (see the module docstring for the method)."""

    def __init__(self, device):
        import torch

        self.torch, self.device = torch, device
        self.method = ("torch.cuda.max_memory_allocated" if device.type == "cuda"
                       else "VmHWM after /proc/self/clear_refs, glibc mmap threshold 64 KiB")
        if device.type != "cuda":
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD: big buffers go back to the OS when freed

    def reset(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats()
            self.base = self.torch.cuda.memory_allocated()
        else:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # resets VmHWM to the current RSS
            self.base = _proc_kb("VmRSS") * 1024

    def peak(self) -> int:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()
            return self.torch.cuda.max_memory_allocated() - self.base
        return _proc_kb("VmHWM") * 1024 - self.base


# ---------------------------------------------------------------------------------------------
# the two steps
# ---------------------------------------------------------------------------------------------

def straightforward_logps(model, pairs, which: str, pad_id: int, device):
    """Summed response log-probs the plain way: full logits, full log-softmax, gather, mask, sum."""
    import torch

    from aligner.core.logprobs import pad_sequences, response_mask

    encs = [getattr(p, which) for p in pairs]
    ids, attn = pad_sequences([e.input_ids for e in encs], pad_id, "right", device)
    rmask = response_mask([e.response_start for e in encs], [len(e.input_ids) for e in encs], ids.shape[1], device)
    logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits
    logp = torch.log_softmax(logits.float(), dim=-1)             # (B, T, V): the memory the trainer avoids
    token_logp = logp[:, :-1].gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (token_logp * rmask[:, 1:]).sum(-1)


def run_variant(args) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model

    from aligner.core.models import load_causal_lm, resolve_device
    from aligner.core.paths import halueval_path
    from aligner.train.dpop_trainer import collate_pairs, policy_and_reference_logps
    from aligner.train.losses import dpop_loss
    from aligner.train.preference import PairTokenizer, load_pairs

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model, tok = load_causal_lm(args.model_path, dtype="fp32", device=device)
    torch.manual_seed(0)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                             target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    pairs = load_pairs(args.data or halueval_path(), limit=args.n_pairs)
    encoded, _ = PairTokenizer(tok, args.max_length).encode_all(pairs)
    batches = [encoded[i: i + args.batch_size] for i in range(0, len(encoded), args.batch_size)]
    batches = [b for b in batches if len(b) == args.batch_size] or batches
    pad = tok.pad_token_id

    def step(batch):
        if args.variant == "trainer":
            ids, attn, rmask = collate_pairs(batch, pad, device)
            policy, ref = policy_and_reference_logps(model, ids, attn, rmask)
            pc, pr = policy.chunk(2)
            rc, rr = ref.chunk(2)
        else:
            pc = straightforward_logps(model, batch, "chosen", pad, device)
            pr = straightforward_logps(model, batch, "rejected", pad, device)
            with torch.no_grad(), model.disable_adapter():
                rc = straightforward_logps(model, batch, "chosen", pad, device)
                rr = straightforward_logps(model, batch, "rejected", pad, device)
        loss, _ = dpop_loss(pc, pr, rc, rr)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item(), pc.detach().tolist()

    mem = PeakMemory(device)
    mem.reset()
    first_loss, first_logps = step(batches[0])
    losses = [first_loss]
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(args.steps):
        losses.append(step(batches[(i + 1) % len(batches)])[0])
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {"variant": args.variant, "pairs_per_s": args.steps * args.batch_size / seconds,
            "seconds": seconds, "peak_bytes": mem.peak(), "memory_method": mem.method, "losses": losses,
            "first_chosen_logps": first_logps,
            "device": str(device), "vocab_rows": model.get_input_embeddings().weight.shape[0],
            "threads": torch.get_num_threads()}


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------

def main(argv=None):
    args = parse_args(argv)
    if args.variant:
        print("RESULT " + json.dumps(run_variant(args)))
        return None
    with tempfile.TemporaryDirectory() as tmp:
        model_path = args.model_path
        if model_path is None:
            from aligner.testing.tiny import TinyModelConfig, build_tiny_model

            model_path = str(build_tiny_model(Path(tmp) / "tiny", TinyModelConfig(model_vocab_size=args.model_vocab_size)))
        results = {}
        for variant in VARIANTS:
            cmd = [sys.executable, __file__, *to_argv(
                BenchTrainConfig, variant=variant, model_path=model_path, n_pairs=args.n_pairs,
                batch_size=args.batch_size, steps=args.steps, max_length=args.max_length, device=args.device,
                threads=args.threads, data=args.data)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                raise SystemExit(f"{variant} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            results[variant] = json.loads(lines[-1][len("RESULT "):])
    fast, slow = results["trainer"], results["straightforward"]
    # Same init, same data: the log-probs of the first step and the loss after one update must agree, or the
    # comparison is between different computations.
    # (Adam's first update is close to lr * sign(grad), so fp32 noise in near-zero gradients shows up in the
    # loss after it at the 1e-4 level: a looser bound there.)
    same = all(abs(a - b) <= 1e-4 * max(1.0, abs(b))
               for a, b in zip(fast["first_chosen_logps"], slow["first_chosen_logps"]))
    same = same and abs(fast["losses"][1] - slow["losses"][1]) <= 1e-3 * max(1.0, abs(slow["losses"][1]))
    speed_ratio = fast["pairs_per_s"] / slow["pairs_per_s"]
    mem_ratio = fast["peak_bytes"] / max(1, slow["peak_bytes"])
    print(f"model vocab rows: {fast['vocab_rows']}, device: {fast['device']}, threads: {fast['threads']}, "
          f"batch {args.batch_size} pairs, {args.steps} timed steps, max_length {args.max_length}")
    print(f"peak memory method: {fast['memory_method']}")
    for name, r in results.items():
        print(f"{name:>16}: {r['pairs_per_s']:8.2f} pairs/s   peak {r['peak_bytes'] / 2**20:9.1f} MiB   "
              f"loss after one update {r['losses'][1]:.6f}")
    print(f"speed ratio (trainer / straightforward): {speed_ratio:.2f}x   "
          f"peak-memory ratio: {mem_ratio:.3f}x   log-probs and losses agree: {same}")
    summary = {"results": results, "speed_ratio": speed_ratio, "memory_ratio": mem_ratio, "losses_agree": same,
               "args": {k: v for k, v in dataclasses.asdict(args).items() if k != "variant"}}
    if args.output_json:
        from aligner.core.io import write_json_atomic

        write_json_atomic(args.output_json, summary)
    if not same:
        raise SystemExit("the two implementations disagree on the log-probs or the loss")
    return summary


if __name__ == "__main__":
    run_cli(main)
