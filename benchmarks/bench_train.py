#!/usr/bin/env python
"""Training-step speed and peak memory: this trainer's DPO step against a straightforward implementation and,
with ``--vs trl``, against TRL's ``DPOTrainer``.

Every variant trains the same LoRA adapter (r 16, alpha 32, q_proj/v_proj, no dropout, same init seed, AdamW)
on the same HaluEval pairs (plain "context\\n\\nquestion\\n" prompt, EOS-terminated answers, pairs that fit
--max_length whole, so every variant sees the same token ids), with the same batch size, the same loss (sigmoid
DPO with --beta; the DPOP term with --lam, 0 by default: TRL has none) and the same number of steps:

* trainer:  one policy forward over chosen+rejected concatenated, only response positions projected onto the
            vocabulary (aligner.train.dpop_trainer.policy_and_reference_logps), one no-grad reference forward;
* straightforward (the study's loop): four forwards per batch (policy chosen, policy rejected, reference
            chosen, reference rejected), each materialising the full (rows x length x vocab) logits and their
            full log-softmax before gathering the response tokens;
* trl (``--vs trl``): TRL's ``DPOTrainer`` (``loss_type=["sigmoid"]``, PEFT reference = adapter disabled,
            sequential sampling, no gradient checkpointing, fp32, no clipping, constant LR), timed from the end of
            its first step to the end of its last.

Each variant runs in its own fresh process.  Peak memory: on CUDA, torch.cuda.max_memory_allocated() above the
allocation before the steps; on CPU, the process's peak resident set (VmHWM) above the resident set before the
steps, the peak being reset through /proc/self/clear_refs and glibc's mmap threshold lowered to 64 KiB so that
freed tensors are returned to the OS (the number then tracks live tensor memory).  The first step is a warm-up
and is left out of the timing (not of the memory peak).  The default model is a random-init Llama-3.2-3B-shaped
model around the real Llama-3.2 tokenizer (128,256-row vocabulary, where the logits dominate memory), narrowed to
2 layers of width 64 for a CPU (``--model_preset tiny``: the tiny Llama with --model_vocab_size rows).  The
variants must agree: the token ids and the first step's chosen log-probs (all three), and the loss after one
update (trainer and straightforward).

Examples:
    python benchmarks/bench_train.py --n_pairs 16 --batch_size 4 --steps 4
    python benchmarks/bench_train.py --vs trl --steps 3
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
PEERS = ("trl",)
LORA = dict(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
LR = 1e-4


@dataclass(kw_only=True)
class BenchTrainConfig:
    model_path: str | None = field(default=None, metadata={
        "help": "causal LM to benchmark (default: none = the model of --model_preset, built in a temporary folder)"})
    model_preset: str = field(default="llama32", metadata={
        "choices": ["llama32", "tiny"], "help": "the model built when --model_path is not given: llama32 = random-init "
                                                "Llama-3.2-3B shape, real 128k tokenizer, 2 layers of width 64; tiny "
                                                "= the tiny Llama with --model_vocab_size rows"})
    model_vocab_size: int = field(default=32768, metadata={
        "help": "vocabulary rows of the tiny model (--model_preset tiny)"})
    vs: str | None = field(default=None, metadata={
        "choices": list(PEERS), "help": "also time this peer on the same model, pairs, LoRA, batch and max length: "
                                        "trl = TRL's DPOTrainer (default: none)"})
    data: str | None = field(default=None, metadata={
        "help": "HaluEval qa_data.json (default: ../shared/data/halueval/qa_data.json)"})
    n_pairs: int = field(default=16, metadata={"help": "pairs used, cycled over the steps"})
    batch_size: int = field(default=4, metadata={"help": "pairs per step"})
    steps: int = field(default=4, metadata={"help": "timed steps after one warm-up step; at least 1"})
    max_length: int = field(default=256, metadata={"help": "prompt+response tokens; only pairs that fit are used"})
    beta: float = field(default=0.1, metadata={"help": "DPO beta"})
    lam: float = field(default=0.0, metadata={"help": "DPOP lambda (0 = sigmoid DPO, what TRL computes)"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads; 0 = torch's default"})
    output_json: str | None = field(default=None, metadata={"help": "also write the results here (default: none)"})
    variant: str | None = field(default=None, metadata={
        "help": "internal: time this one variant in this process (the driver starts one process per variant) "
                "(default: none, run them all)", "choices": [*VARIANTS, *PEERS]})

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
# the data and the variants
# ---------------------------------------------------------------------------------------------

def bench_pairs(args, tok):
    """The first --n_pairs HaluEval pairs whose plain prompt + EOS-terminated answers fit --max_length whole:
    (PreferencePair list, their TokenizedPair list, the PairTokenizer)."""
    from aligner.core.paths import halueval_path
    from aligner.train.preference import PairTokenizer, load_pairs

    ptok = PairTokenizer(tok, args.max_length, "plain", append_eos=True)
    pairs, encoded = [], []
    for pair in load_pairs(args.data or halueval_path(), limit=20 * args.n_pairs):
        enc = ptok.encode(pair)
        if enc is not None and not enc.truncated:
            pairs.append(pair)
            encoded.append(enc)
        if len(pairs) == args.n_pairs:
            break
    return pairs, encoded, ptok


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


def _sync(torch, device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_variant(args) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model

    from aligner.core.models import load_causal_lm, resolve_device
    from aligner.train.dpop_trainer import collate_pairs, policy_and_reference_logps
    from aligner.train.losses import dpop_loss

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model, tok = load_causal_lm(args.model_path, dtype="fp32", device=device)
    _, encoded, _ = bench_pairs(args, tok)
    torch.manual_seed(0)
    model = get_peft_model(model, LoraConfig(**LORA))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR)
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
        loss, _ = dpop_loss(pc, pr, rc, rr, beta=args.beta, lam=args.lam)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item(), pc.detach().tolist()

    mem = PeakMemory(device)
    mem.reset()
    first_loss, first_logps = step(batches[0])
    losses = [first_loss]
    _sync(torch, device)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(args.steps):
        losses.append(step(batches[(i + 1) % len(batches)])[0])
    _sync(torch, device)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"variant": args.variant, "pairs_per_s": args.steps * args.batch_size / seconds,
            "seconds": seconds, "cpu_seconds": cpu, "peak_bytes": mem.peak(), "memory_method": mem.method,
            "losses": losses,
            "first_chosen_logps": first_logps, "n_pairs": len(encoded),
            "device": str(device), "vocab_rows": model.get_input_embeddings().weight.shape[0],
            "threads": torch.get_num_threads()}


def run_trl(args) -> dict:
    """TRL 1.16's DPOTrainer on the same model, pairs, LoRA and batch (see the module docstring)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from aligner.core.models import load_causal_lm, resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model, tok = load_causal_lm(args.model_path, dtype="fp32", device=device)
    pairs, encoded, ptok = bench_pairs(args, tok)
    rows = [{"prompt": ptok.build_prompt(p.context, p.prompt), "chosen": p.chosen, "rejected": p.rejected}
            for p in pairs]  # TRL appends the EOS to both answers, as the PairTokenizer above
    n_batches = max(1, len(rows) // args.batch_size)
    rows = rows[: n_batches * args.batch_size]
    mem = PeakMemory(device)
    marks: list[tuple[float, float]] = []
    records: list[dict] = []

    class Timer(TrainerCallback):
        def on_train_begin(self, *a, **kw):
            mem.reset()

        def on_step_end(self, *a, **kw):
            _sync(torch, device)
            marks.append((time.perf_counter(), time.process_time()))

        def on_log(self, _args, state, control, logs=None, **kw):
            if logs and "loss" in logs:  # one record per step (logging_steps 1), not the final summary
                records.append(dict(logs))

    config = DPOConfig(
        output_dir=tempfile.mkdtemp(prefix="bench_trl_"), loss_type=["sigmoid"], beta=args.beta,
        per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=1, max_length=args.max_length,
        max_steps=args.steps + 1, learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.01,
        max_grad_norm=0.0, bf16=False, fp16=False, use_cpu=device.type == "cpu", gradient_checkpointing=False,
        precompute_ref_log_probs=False, report_to="none", logging_steps=1, save_strategy="no",
        dataloader_num_workers=0, dataloader_pin_memory=False, train_sampling_strategy="sequential", seed=0,
        data_seed=0, disable_dropout=True)
    torch.manual_seed(0)  # the LoRA init, drawn as the other variants draw it (if TRL draws nothing before)
    trainer = DPOTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tok,
                         peft_config=LoraConfig(**LORA), callbacks=[Timer()])
    same_ids = [trainer.train_dataset[i]["prompt_ids"] + trainer.train_dataset[i]["chosen_ids"] ==
                encoded[i].chosen.input_ids for i in range(len(rows))]
    trainer.train()
    seconds, cpu = marks[-1][0] - marks[0][0], marks[-1][1] - marks[0][1]
    return {"variant": "trl", "pairs_per_s": args.steps * args.batch_size / seconds, "seconds": seconds,
            "cpu_seconds": cpu,
            "peak_bytes": mem.peak(), "memory_method": mem.method, "losses": [r["loss"] for r in records],
            "first_chosen_logps_mean": records[0]["logps/chosen"], "same_token_ids": all(same_ids),
            "device": str(device), "threads": torch.get_num_threads(), "trl_version": __import__("trl").__version__}


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------

def build_model(args, tmp: str) -> str:
    from aligner.core.paths import REPO_ROOT
    from aligner.testing.tiny import TinyModelConfig, build_tiny_model

    tokenizer = REPO_ROOT.parent / "shared" / "tokenizers" / "llama-3.2-instruct"
    if args.model_preset == "llama32" and (tokenizer / "tokenizer.json").is_file():
        cfg = TinyModelConfig(kind="causal", seed=0, tokenizer=str(tokenizer), config_preset="llama-3.2-3b",
                              num_layers=2, hidden_size=64, num_heads=4, num_kv_heads=2, intermediate_size=128)
    else:
        if args.model_preset == "llama32":
            print(f"the Llama-3.2 tokenizer is not at {tokenizer}; using the tiny model instead")
        cfg = TinyModelConfig(model_vocab_size=args.model_vocab_size)
    return str(build_tiny_model(Path(tmp) / "model", cfg))


def run_all(args, model_path: str) -> dict:
    results = {}
    for variant in (*VARIANTS, *([args.vs] if args.vs else [])):
        cmd = [sys.executable, __file__, *to_argv(
            BenchTrainConfig, variant=variant, model_path=model_path, n_pairs=args.n_pairs,
            batch_size=args.batch_size, steps=args.steps, max_length=args.max_length, beta=args.beta, lam=args.lam,
            device=args.device, threads=args.threads, data=args.data)]
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"{variant} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        results[variant] = json.loads(lines[-1][len("RESULT "):])
    return results


def _close(a: float, b: float, rel: float) -> bool:
    return abs(a - b) <= rel * max(1.0, abs(b))


def report(args, results: dict) -> dict:
    fast, slow = results["trainer"], results["straightforward"]
    # Same init, same data: the log-probs of the first step and the loss after one update must agree, or the
    # comparison is between different computations.
    # (Adam's first update is close to lr * sign(grad), so fp32 noise in near-zero gradients shows up in the
    # loss after it at the 1e-4 level: a looser bound there.)
    agree = {"straightforward": all(_close(a, b, 1e-4) for a, b in zip(fast["first_chosen_logps"],
                                                                          slow["first_chosen_logps"]))
             and _close(fast["losses"][1], slow["losses"][1], 1e-3)}
    print(f"model vocab rows: {fast['vocab_rows']}, device: {fast['device']}, threads: {fast['threads']}, "
          f"batch {args.batch_size} pairs, {args.steps} timed steps, max_length {args.max_length}, "
          f"{fast['n_pairs']} pairs")
    print(f"peak memory method: {fast['memory_method']}")
    for name, r in results.items():
        print(f"{name:>16}: {r['pairs_per_s']:8.2f} pairs/s ({args.steps * args.batch_size / r['cpu_seconds']:7.2f} "
              f"per CPU-second)   peak {r['peak_bytes'] / 2**20:9.1f} MiB   loss after one update {r['losses'][1]:.6f}")
    summary = {"results": results, "args": {k: v for k, v in dataclasses.asdict(args).items() if k != "variant"}}
    for name, r in results.items():
        if name == "trainer":
            continue
        speed, mem = fast["pairs_per_s"] / r["pairs_per_s"], fast["peak_bytes"] / max(1, r["peak_bytes"])
        summary[f"{name}_cpu_ratio"] = r["cpu_seconds"] / fast["cpu_seconds"]
        if name == "trl":
            mean = sum(fast["first_chosen_logps"]) / len(fast["first_chosen_logps"])
            agree["trl"] = r["same_token_ids"] and _close(r["first_chosen_logps_mean"], mean, 1e-4)
        summary[f"{name}_speed_ratio"], summary[f"{name}_memory_ratio"] = speed, mem
        print(f"speed ratio (trainer / {name}): {speed:.2f}x wall, {summary[f'{name}_cpu_ratio']:.2f}x CPU time   "
              f"peak-memory ratio: {mem:.3f}x   same token ids and first-step log-probs: {agree[name]}")
    summary["agree"] = agree
    # the names of the earlier single comparison
    summary.update(speed_ratio=summary["straightforward_speed_ratio"],
                   memory_ratio=summary["straightforward_memory_ratio"], losses_agree=agree["straightforward"])
    return summary


def main(argv=None):
    args = parse_args(argv)
    if args.variant:
        print("RESULT " + json.dumps(run_trl(args) if args.variant == "trl" else run_variant(args)))
        return None
    with tempfile.TemporaryDirectory() as tmp:
        results = run_all(args, args.model_path or build_model(args, tmp))
    summary = report(args, results)
    if args.output_json:
        from aligner.core.io import write_json_atomic

        write_json_atomic(args.output_json, summary)
    if not all(summary["agree"].values()):
        raise SystemExit(f"the implementations disagree on the token ids, log-probs or loss: {summary['agree']}")
    return summary


if __name__ == "__main__":
    run_cli(main)
