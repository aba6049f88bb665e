#!/usr/bin/env python
"""Training-step speed, tokens and peak memory: the packed layout against the padded one and TRL's DPOTrainer, in
one run, on two pair sets.

Pair sets (real text, the improved recipe's chat format: its system prompt, the Llama-3.2 chat template, EOS on
both answers, the real Llama-3.2 tokenizer):

* ``halueval``: HaluEval QA rows as pairs (question, knowledge as context, right vs hallucinated answer), the shape
  of the study's SQuAD / NQ pairs: a prompt of about 160 tokens, answers of a few;
* ``long``: the same questions and answers with several HaluEval passages as the context, cut to fit 1024 tokens
  (as the study's NQ RAG pairs, five retrieved chunks): prompts near 1000 tokens.

Variants (each in its own fresh process, the same model, pairs, LoRA r16 on q,v, AdamW, batch and steps; the loss
sigmoid DPO with --beta, or DPOP with --lam > 0, which TRL lacks):

* ``packed``: ``--layout packed``, the library's step (``aligner.train.steps.packed_forwards``,
  ``aligner.train.packing``): each pair's prompt once with both answers attending to it, the step's pairs packed
  into rows without padding (``--max_tokens_per_batch`` default of the trainer: 2 x batch x 1024);
* ``padded``: ``--layout padded`` (``aligner.train.layouts``): 2B right-padded rows, each prompt twice;
* ``trl``: TRL 1.16's ``DPOTrainer`` (``loss_type=["sigmoid"]``, PEFT reference = adapter disabled, sequential
  sampling, fp32, no clipping, constant LR), timed from the end of its first step to the end of its last;
* ``straightforward`` (only when named in --variants): four forwards per batch with the full log-softmax.

Every variant runs the reference forward live.  Measured: policy tokens per pair (the tokens of the forwards run
with grad, counted by a hook on the model, divided by the pairs), pairs/s over the steps after the first (warm-up)
one, and peak memory: on CUDA, torch.cuda.max_memory_allocated() above the allocation before the steps; on CPU, the
process's peak resident set (VmHWM) above the resident set before the steps, reset through /proc/self/clear_refs,
glibc's mmap threshold lowered to 64 KiB so that freed tensors go back to the OS.  The variants must agree: the
first step's chosen log-probs (packed and padded per pair, TRL on the mean) and the loss after one update.

The model: a random-init Llama-3.2-3B-shaped model (rope, GQA, tied 128k embeddings) around the real tokenizer,
cut to --num_layers layers of width --hidden_size: wide enough that the transformer layers, not the 128k-row
vocabulary head, dominate the per-token work, as in the real 3B model (at width 64 the head alone would hide what
the layout saves).  --mode quick (a smoke run: 2 layers of width 256, 4 + 2 pairs, one timed step; a few minutes
on 2 cores, its ratios say little) and --mode full (the measurement: 4 layers of width 1024, 16 HaluEval-shaped
pairs in batches of 4 and 3 timed steps, 6 long pairs in batches of 2 and 2 timed steps; about 7 minutes on an
idle 2-core CPU, most of it TRL's) set the sizes; any size flag overrides.

Examples:
    python benchmarks/bench_train.py --mode full                       # the README's table
    python benchmarks/bench_train.py --mode quick --sets halueval      # a check that it runs
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

VARIANTS = ("packed", "padded", "trl", "straightforward")
SETS = ("halueval", "long")
LORA = dict(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
LR = 1e-4
MAX_LENGTH = 1024
#: per mode: model width and layers, and per pair set (pairs, batch, timed steps)
MODES = {"quick": dict(hidden_size=256, num_layers=2, halueval=(4, 4, 1), long=(2, 2, 1)),
         "full": dict(hidden_size=1024, num_layers=4, halueval=(16, 4, 3), long=(6, 2, 2))}
#: issue's target on HaluEval-shaped pairs, packed against padded: at least this speed ratio, at most these token and
#: memory ratios
TARGET_SPEED, TARGET_TOKENS, TARGET_MEMORY = 1.8, 0.45, 1.0
TARGET = (f"packed >= {TARGET_SPEED}x padded pairs/s, <= {TARGET_TOKENS}x padded tokens, <= padded peak memory "
          "(HaluEval-shaped pairs)")


@dataclass(kw_only=True)
class BenchTrainConfig:
    mode: str = field(default="quick", metadata={
        "choices": list(MODES), "help": "quick: a smoke run (2 layers of width 256, a few pairs, one timed step); "
                                        "full: the measurement (4 layers of width 1024, more pairs and steps)"})
    sets: str = field(default="halueval,long", metadata={"help": "pair sets, comma-separated: halueval, long"})
    variants: str = field(default="packed,padded,trl", metadata={
        "help": "comma-separated, the first is the one compared with the others: packed, padded, trl, "
                "straightforward"})
    model_path: str | None = field(default=None, metadata={
        "help": "a causal LM to benchmark instead of the random-init Llama-3.2-shaped one (default: none)"})
    hidden_size: int | None = field(default=None, metadata={"help": "model width (default: the mode's)"})
    num_layers: int | None = field(default=None, metadata={"help": "decoder layers (default: the mode's)"})
    n_pairs: int | None = field(default=None, metadata={"help": "pairs per set (default: the mode's)"})
    batch_size: int | None = field(default=None, metadata={"help": "pairs per optimizer step (default: the mode's)"})
    steps: int | None = field(default=None, metadata={"help": "timed steps after one warm-up step (default: the mode's)"})
    beta: float = field(default=0.1, metadata={"help": "DPO beta"})
    lam: float = field(default=0.0, metadata={"help": "DPOP lambda (0 = sigmoid DPO, what TRL computes)"})
    data: str | None = field(default=None, metadata={
        "help": "HaluEval qa_data.json (default: ../shared/data/halueval/qa_data.json)"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads; 0 = torch's default"})
    output_json: str | None = field(default=None, metadata={"help": "also write the results here (default: none)"})
    variant: str | None = field(default=None, metadata={
        "help": "internal: time this one variant on --sets (one set) in this process (default: none, run them all)",
        "choices": list(VARIANTS)})

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"--mode must be one of {', '.join(MODES)}")
        self.set_list = [s.strip() for s in self.sets.split(",") if s.strip()]
        self.variant_list = [v.strip() for v in self.variants.split(",") if v.strip()]
        bad = [s for s in self.set_list if s not in SETS] + [v for v in self.variant_list if v not in VARIANTS]
        if bad or not self.set_list or not self.variant_list:
            raise ValueError(f"--sets takes {', '.join(SETS)} and --variants {', '.join(VARIANTS)}; got {bad or 'none'}")
        mode = MODES[self.mode]
        self.hidden_size = self.hidden_size or mode["hidden_size"]
        self.num_layers = self.num_layers or mode["num_layers"]

    def sizes(self, pair_set: str) -> tuple[int, int, int]:
        """(pairs, batch, timed steps) of a pair set."""
        n, b, s = MODES[self.mode][pair_set]
        return self.n_pairs or n, self.batch_size or b, self.steps or s


def parse_args(argv=None) -> BenchTrainConfig:
    return parse_config(BenchTrainConfig, argv, description=__doc__)


# ---------------------------------------------------------------------------------------------
# memory and tokens
# ---------------------------------------------------------------------------------------------

def _proc_kb(name: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{name} not in /proc/self/status")


class PeakMemory:
    """Peak bytes allocated above the level at ``reset()`` (see the module docstring for the method)."""

    def __init__(self, device):
        import torch

        self.torch, self.device = torch, device
        self.method = ("torch.cuda.max_memory_allocated" if device.type == "cuda"
                       else "VmHWM after /proc/self/clear_refs, glibc mmap threshold 64 KiB")
        if device.type != "cuda":
            import ctypes

            ctypes.CDLL("libc.so.6").mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD: big buffers go back to the OS

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


class TokenCounter:
    """Tokens of every forward of ``model`` run with grad (the policy's), from a pre-hook on its input ids."""

    def __init__(self, model):
        import torch

        self.tokens, self.active = 0, False

        def hook(_module, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            if self.active and torch.is_grad_enabled() and ids is not None:
                self.tokens += ids.numel()

        model.register_forward_pre_hook(hook, with_kwargs=True)


# ---------------------------------------------------------------------------------------------
# the pairs
# ---------------------------------------------------------------------------------------------

def bench_pairs(args, tok, pair_set: str):
    """The set's first --n_pairs pairs that fit 1024 tokens with their answers whole: (PreferencePair list, their
    TokenizedPair list, the PairTokenizer)."""
    from aligner.core.paths import halueval_path
    from aligner.prompts import DPO_IMPROVED_SYSTEM
    from aligner.train.preference import PairTokenizer, PreferencePair, load_pairs

    n = args.sizes(pair_set)[0]
    rows = load_pairs(args.data or halueval_path(), limit=40 * n + 60)
    ptok = PairTokenizer(tok, MAX_LENGTH, "chat", system_prompt=DPO_IMPROVED_SYSTEM)
    pairs, encoded = [], []
    for i, pair in enumerate(rows[: len(rows) - 12]):
        if pair_set == "long":  # this row's passage and the next ones, cut to the longest token prefix that fits
            pair = _fit_context(ptok, PreferencePair(pair.prompt, "\n\n".join(x.context for x in rows[i: i + 12]),
                                                     pair.chosen, pair.rejected))
        enc = ptok.encode(pair) if pair is not None else None
        if enc is not None and not enc.truncated:
            pairs.append(pair)
            encoded.append(enc)
        if len(pairs) == n:
            break
    return pairs, encoded, ptok


def _fit_context(ptok, pair):
    """``pair`` with its context cut (in tokens, from the end) to the longest prefix with which the pair fits
    --max_length whole; None when even an empty context does not fit."""
    tok = ptok.tokenizer
    bare = ptok.encode(dataclasses.replace(pair, context=""))
    if bare is None or bare.truncated:
        return None
    ids = tok(pair.context, add_special_tokens=False)["input_ids"]
    keep = min(len(ids), MAX_LENGTH - bare.length)
    while keep > 0:
        cut = dataclasses.replace(pair, context=tok.decode(ids[:keep]))
        enc = ptok.encode(cut)
        if enc is not None and not enc.truncated:
            return cut
        keep -= 4
    return None


def straightforward_logps(model, pairs, which: str, pad_id: int, device):
    """Summed response log-probs the plain way: full logits, full log-softmax, gather, mask, sum."""
    import torch

    from aligner.core.logprobs import pad_sequences, response_mask

    encs = [getattr(p, which) for p in pairs]
    ids, attn = pad_sequences([e.input_ids for e in encs], pad_id, "right", device)
    rmask = response_mask([e.response_start for e in encs], [len(e.input_ids) for e in encs], ids.shape[1], device)
    logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits
    logp = torch.log_softmax(logits.float(), dim=-1)
    token_logp = logp[:, :-1].gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (token_logp * rmask[:, 1:]).sum(-1)


def _sync(torch, device):
    if device.type == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------------
# the variants
# ---------------------------------------------------------------------------------------------

def _step_fn(args, variant, model, pad, device):
    """One optimizer step's log-probs and loss for ``variant``: returns (loss tensor, first chosen log-probs)."""
    import torch

    from aligner.train.layouts import collate_pairs, policy_and_reference_logps
    from aligner.train.losses import LossSettings, preference_loss, weighted_preference_loss
    from aligner.train.packing import build_packed_batch, default_max_tokens, packed_response_logprobs
    from aligner.train.steps import packed_forwards

    name = "dpop" if args.lam else "sigmoid"
    settings = LossSettings(beta=args.beta, lam=args.lam)

    def padded(batch):
        ids, attn, rmask = collate_pairs(batch, pad, device)
        policy, ref = policy_and_reference_logps(model, ids, attn, rmask)
        n = len(batch)
        lengths = rmask.sum(1)
        loss, _ = preference_loss(name, policy[:n], policy[n:], ref[:n], ref[n:], lengths[:n], lengths[n:], settings)
        loss.backward()
        return loss, policy[:n]

    def packed(batch):
        tokenized = [list(batch)]
        forwards, _ = packed_forwards([[[(0, i) for i in range(len(batch))]]], 0, tokenized,
                                      default_max_tokens(len(batch), MAX_LENGTH), MAX_LENGTH)
        total, chosen = 0.0, {}
        for fwd in forwards:
            pairs = [batch[i] for _, i in fwd.refs]
            pb = build_packed_batch(pairs, fwd.rows, pad, device)
            with torch.no_grad(), model.disable_adapter():
                ref = packed_response_logprobs(model, pb)
            policy = packed_response_logprobs(model, pb)
            k = len(pairs)
            nc, nr = pb.response_lengths.chunk(2)
            loss, _, _ = weighted_preference_loss(
                name, policy[:k], policy[k:], ref[:k], ref[k:], nc, nr, settings,
                torch.tensor(fwd.group_sizes, device=device), torch.tensor(fwd.group_chosen_tokens, device=device))
            loss.backward()
            total = total + loss.detach()
            chosen.update({i: v for (_, i), v in zip(fwd.refs, policy[:k].detach())})
        return total, torch.stack([chosen[i] for i in range(len(batch))])

    def straightforward(batch):
        pc = straightforward_logps(model, batch, "chosen", pad, device)
        pr = straightforward_logps(model, batch, "rejected", pad, device)
        with torch.no_grad(), model.disable_adapter():
            rc = straightforward_logps(model, batch, "chosen", pad, device)
            rr = straightforward_logps(model, batch, "rejected", pad, device)
        loss, _ = preference_loss(name, pc, pr, rc, rr, None, None, settings)
        loss.backward()
        return loss, pc

    return {"padded": padded, "packed": packed, "straightforward": straightforward}[variant]


def run_variant(args, pair_set: str) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model

    from aligner.core.models import load_causal_lm, resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model, tok = load_causal_lm(args.model_path, dtype="fp32", device=device)
    _, encoded, _ = bench_pairs(args, tok, pair_set)
    _, batch_size, steps = args.sizes(pair_set)
    counter = TokenCounter(model)
    torch.manual_seed(0)
    model = get_peft_model(model, LoraConfig(**LORA))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR)
    batches = [encoded[i: i + batch_size] for i in range(0, len(encoded), batch_size)]
    batches = [b for b in batches if len(b) == batch_size] or batches
    step_fn = _step_fn(args, args.variant, model, tok.pad_token_id, device)

    def step(batch):
        loss, chosen = step_fn(batch)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss), chosen.detach().tolist()

    mem = PeakMemory(device)
    mem.reset()
    first_loss, first_logps = step(batches[0])
    losses = [first_loss]
    _sync(torch, device)
    counter.active = True
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(steps):
        losses.append(step(batches[(i + 1) % len(batches)])[0])
    _sync(torch, device)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"variant": args.variant, "pairs_per_s": steps * batch_size / seconds, "seconds": seconds,
            "cpu_seconds": cpu, "peak_bytes": mem.peak(), "memory_method": mem.method, "losses": losses,
            "tokens_per_pair": counter.tokens / (steps * batch_size), "first_chosen_logps": first_logps,
            "n_pairs": len(encoded), "device": str(device), "threads": torch.get_num_threads()}


def run_trl(args, pair_set: str) -> dict:
    """TRL 1.16's DPOTrainer on the same model, pairs (as text), LoRA and batch (see the module docstring)."""
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
    pairs, encoded, ptok = bench_pairs(args, tok, pair_set)
    _, batch_size, steps = args.sizes(pair_set)
    # TRL tokenizes the prompt with special tokens and appends the EOS to both answers, as the PairTokenizer does
    rows = [{"prompt": ptok.build_prompt(p.context, p.prompt).removeprefix(tok.bos_token), "chosen": p.chosen,
             "rejected": p.rejected} for p in pairs]
    rows = rows[: max(1, len(rows) // batch_size) * batch_size]
    counter = TokenCounter(model)
    mem = PeakMemory(device)
    marks: list[tuple[float, float]] = []
    records: list[dict] = []

    class Timer(TrainerCallback):
        def on_train_begin(self, *a, **kw):
            mem.reset()

        def on_step_end(self, *a, **kw):
            _sync(torch, device)
            marks.append((time.perf_counter(), time.process_time()))
            counter.active = True

        def on_log(self, _args, state, control, logs=None, **kw):
            if logs and "loss" in logs:  # one record per step (logging_steps 1), not the final summary
                records.append(dict(logs))

    scratch = tempfile.TemporaryDirectory(prefix="bench_trl_")  # TRL wants an output_dir; nothing is saved there
    config = DPOConfig(
        output_dir=scratch.name, loss_type=["sigmoid"], beta=args.beta,
        per_device_train_batch_size=batch_size, gradient_accumulation_steps=1, max_length=4 * MAX_LENGTH,
        max_steps=steps + 1, learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.01,
        max_grad_norm=0.0, bf16=False, fp16=False, use_cpu=device.type == "cpu", gradient_checkpointing=False,
        precompute_ref_log_probs=False, report_to="none", logging_steps=1, save_strategy="no",
        dataloader_num_workers=0, dataloader_pin_memory=False, train_sampling_strategy="sequential", seed=0,
        data_seed=0, disable_dropout=True)
    torch.manual_seed(0)  # the LoRA init, drawn as the other variants draw it (if TRL draws nothing before)
    trainer = DPOTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tok,
                         peft_config=LoraConfig(**LORA), callbacks=[Timer()])
    same_ids = [trainer.train_dataset[i]["prompt_ids"] + trainer.train_dataset[i]["chosen_ids"] ==
                encoded[i].chosen.input_ids for i in range(len(rows))]
    with scratch:
        trainer.train()
    seconds, cpu = marks[-1][0] - marks[0][0], marks[-1][1] - marks[0][1]
    return {"variant": "trl", "pairs_per_s": steps * batch_size / seconds, "seconds": seconds, "cpu_seconds": cpu,
            "peak_bytes": mem.peak(), "memory_method": mem.method, "losses": [r["loss"] for r in records],
            "tokens_per_pair": counter.tokens / (steps * batch_size),
            "first_chosen_logps_mean": records[0]["logps/chosen"], "same_token_ids": all(same_ids),
            "device": str(device), "threads": torch.get_num_threads(), "trl_version": __import__("trl").__version__}


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------

def build_model(args, tmp: str) -> str:
    from aligner.core.paths import REPO_ROOT
    from aligner.testing.tiny import TinyModelConfig, build_tiny_model

    tokenizer = REPO_ROOT.parent / "shared" / "tokenizers" / "llama-3.2-instruct"
    if not (tokenizer / "tokenizer.json").is_file():
        raise FileNotFoundError(f"the Llama-3.2 tokenizer is not at {tokenizer} (../shared/tokenizers)")
    h = args.hidden_size
    heads = max(1, h // 128)
    cfg = TinyModelConfig(kind="causal", seed=0, tokenizer=str(tokenizer), config_preset="llama-3.2-3b",
                          num_layers=args.num_layers, hidden_size=h, num_heads=heads,
                          num_kv_heads=max(1, heads // 4) if heads % 4 == 0 else heads,
                          intermediate_size=(h * 8 // 3 + 127) // 128 * 128)
    return str(build_tiny_model(Path(tmp) / "model", cfg))


def run_all(args, model_path: str) -> dict:
    results: dict = {}
    for pair_set in args.set_list:
        for variant in args.variant_list:
            flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(BenchTrainConfig)
                     if f.name not in ("variant", "model_path", "sets", "output_json")}
            cmd = [sys.executable, __file__, *to_argv(BenchTrainConfig, **flags, variant=variant, sets=pair_set,
                                                      model_path=model_path)]
            print(f"running {variant} on {pair_set} ...", flush=True)
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                raise SystemExit(f"{variant} on {pair_set} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            results.setdefault(pair_set, {})[variant] = json.loads(lines[-1][len("RESULT "):])
    return results


def _close(a: float, b: float, rel: float) -> bool:
    return abs(a - b) <= rel * max(1.0, abs(b))


def _agree(first: dict, other: dict) -> bool:
    """The same first-step log-probs (the mean for TRL) and, for our variants, the same loss after one update (Adam's
    first update is close to lr * sign(grad), so fp32 noise in near-zero gradients shows at the 1e-4 level there)."""
    if other["variant"] == "trl":
        mean = sum(first["first_chosen_logps"]) / len(first["first_chosen_logps"])
        return other["same_token_ids"] and _close(other["first_chosen_logps_mean"], mean, 1e-4)
    return (all(_close(a, b, 1e-5) for a, b in zip(first["first_chosen_logps"], other["first_chosen_logps"]))
            and _close(first["losses"][1], other["losses"][1], 1e-3))


def report_set(args, pair_set: str, results: dict) -> dict:
    n, batch, steps = args.sizes(pair_set)
    first_name = args.variant_list[0]
    first = results[first_name]
    print(f"\n{pair_set}: {first['n_pairs']} pairs, batch {batch}, {steps} timed steps after a warm-up step")
    print(f"{'variant':>16} {'tokens/pair':>12} {'pairs/s':>9} {'per CPU-s':>9} {'peak MiB':>9}  loss after one update")
    for name, r in results.items():
        print(f"{name:>16} {r['tokens_per_pair']:12.1f} {r['pairs_per_s']:9.3f} "
              f"{steps * batch / r['cpu_seconds']:9.3f} {r['peak_bytes'] / 2**20:9.1f}  {r['losses'][1]:.6f}")
    out: dict = {"results": results, "ratios": {}, "agree": {}}
    for name, r in results.items():
        if name == first_name:
            continue
        ratio = {"speed": first["pairs_per_s"] / r["pairs_per_s"], "cpu": r["cpu_seconds"] / first["cpu_seconds"],
                 "tokens": first["tokens_per_pair"] / r["tokens_per_pair"],
                 "memory": first["peak_bytes"] / max(1, r["peak_bytes"])}
        out["ratios"][name], out["agree"][name] = ratio, _agree(first, r)
        print(f"{first_name} / {name}: speed {ratio['speed']:.2f}x (CPU time {ratio['cpu']:.2f}x), tokens "
              f"{ratio['tokens']:.3f}x, peak memory {ratio['memory']:.3f}x; same token ids and first-step log-probs: "
              f"{out['agree'][name]}")
    return out


def main(argv=None):
    args = parse_args(argv)
    if args.variant:
        pair_set = args.set_list[0]
        print("RESULT " + json.dumps(run_trl(args, pair_set) if args.variant == "trl" else run_variant(args, pair_set)))
        return None
    with tempfile.TemporaryDirectory() as tmp:
        results = run_all(args, args.model_path or build_model(args, tmp))
    any_result = next(iter(next(iter(results.values())).values()))
    print(f"\nmodel: {args.model_path or f'random-init Llama-3.2-3B shape, {args.num_layers} layers of width {args.hidden_size}, real 128k tokenizer'}; "
          f"device {any_result['device']}, {any_result['threads']} threads; peak memory: {any_result['memory_method']}")
    summary = {"args": {k: v for k, v in dataclasses.asdict(args).items() if k != "variant"},
               "sets": {s: report_set(args, s, r) for s, r in results.items()}}
    hal = summary["sets"].get("halueval", {}).get("ratios", {}).get("padded")
    if args.variant_list[0] == "packed" and hal:
        ok = hal["speed"] >= TARGET_SPEED and hal["tokens"] <= TARGET_TOKENS and hal["memory"] <= TARGET_MEMORY
        summary["target"] = {"text": TARGET, "met": ok}
        note = "" if args.mode == "full" else " (quick mode: a smoke run; the target is for --mode full)"
        print(f"\ntarget: {TARGET}: {'met' if ok else 'NOT met'}{note}")
    if args.output_json:
        from aligner.core.io import write_json_atomic

        write_json_atomic(args.output_json, summary)
    disagree = {f"{s}/{v}": a for s, r in summary["sets"].items() for v, a in r["agree"].items() if not a}
    if disagree:
        raise SystemExit(f"the variants disagree on the token ids, log-probs or loss: {sorted(disagree)}")
    return summary


if __name__ == "__main__":
    run_cli(main)
