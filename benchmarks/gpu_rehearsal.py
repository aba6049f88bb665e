#!/usr/bin/env python
"""GPU rehearsal: one command that exercises training and evaluation at the real shapes and prints one table.

No downloads: the models are random-init models of the study's shapes built here around the real tokenizers in
``../shared/tokenizers`` (a Llama-3.2-3B-shaped policy with the Llama-3.2 tokenizer, a Llama-2-7B-shaped judge with
the SentencePiece tokenizer), the data is the shared HaluEval and TruthfulQA files.  Every check uses the
library's own functions (``aligner.train.trainer``, ``aligner.eval.tasks.truthfulqa``,
``aligner.eval.tasks.halueval_twostep``); TRL's ``DPOTrainer`` is the comparison for speed and memory.

Checks (rows of the table, keys of the JSON):

(a) step 1 in bf16: loss = ln 2, rewards 0 (policy = reference), the boolean ``logits_to_keep`` probe passes
    (kept logits are 2-D ``[N, V]``);
(b) bf16 vs fp32 log-probs per sequence (bf16 weights + autocast against fp32 weights);
(c) the per-pair reference cache vs the live reference: within the stated bf16 tolerance (0.01 nats per response
    token) at every step, step 1's margin within it;
(d) gradient accumulation: pre-clip grad_norm of batch 4 x 1 = 2 x 2 = 1 x 4 (fp32);
(e) fp16 + GradScaler (what pre-Ampere cards get): 20 steps, finite (CUDA only);
(f) save / kill -9 / --resume: the resumed run's adapter against an uninterrupted run's;
(g) pairs/s and peak memory at each batch size x pair set (HaluEval-shaped pairs, long pairs of 512 and 1024
    tokens), with and without gradient checkpointing, for this trainer in the padded and the packed layout and for
    TRL's DPOTrainer (sigmoid loss, same model, pairs, LoRA and batch);
(h) TruthfulQA MC + generation + judge and HaluEval generation on ``n_items`` items with the HF backend (and vLLM
    when installed): items/s, peak memory, and ``torch.cuda.mem_get_info()`` after the policy is released and
    before the judge loads;
(i) with >= 2 GPUs: DDP grad_norm equality, FSDP and DeepSpeed ZeRO-2 prepare and 20 steps.

Peak memory: ``torch.cuda.max_memory_allocated()`` (weights included) on CUDA; the sampled resident set on CPU.
Speeds leave out the first (warm-up) step.  The random-init policy never emits EOS, so every generation runs to
``max_new_tokens`` (the slowest case).

    python benchmarks/gpu_rehearsal.py                                  # one H100/H200: about 8 minutes
    python benchmarks/gpu_rehearsal.py --device cpu --num_layers 2      # the CPU dress rehearsal (narrow models)
"""

import contextlib
import gc
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aligner.core.cli import parse_config, run_cli
from aligner.core.paths import REPO_ROOT

CHECKS = tuple("abcdefghi")
SHARED_TOKENIZERS = REPO_ROOT.parent / "shared" / "tokenizers"
LN2 = math.log(2.0)


@dataclass(kw_only=True)
class RehearsalConfig:
    device: str = field(default="auto", metadata={"help": "auto (CUDA when available), cuda or cpu",
                                                   "choices": ["auto", "cuda", "cpu"]})
    num_layers: int | None = field(default=None, metadata={
        "help": "policy decoder layers (default: the preset's 28)"})
    hidden_size: int | None = field(default=None, metadata={
        "help": "policy width (default: the preset's 3072 on CUDA, 64 on CPU)"})
    judge_preset: str = field(default="llama-2-7b", metadata={
        "help": "judge shape (aligner.testing.tiny.CONFIG_PRESETS)"})
    judge_layers: int | None = field(default=None, metadata={
        "help": "judge decoder layers (default: the preset's on CUDA, --num_layers on CPU)"})
    policy_tokenizer: str = field(default=str(SHARED_TOKENIZERS / "llama-3.2-instruct"), metadata={
        "help": "the policy's tokenizer folder"})
    judge_tokenizer: str = field(default=str(SHARED_TOKENIZERS / "sentencepiece-llama"), metadata={
        "help": "the judge's tokenizer folder"})
    work_dir: str = field(default="outputs/gpu_rehearsal", metadata={"help": "models, runs and the report"})
    output_json: str | None = field(default=None, metadata={
        "help": "the JSON report (default: WORK_DIR/rehearsal.json)"})
    batches: str | None = field(default=None, metadata={
        "help": "(g) batch sizes, comma-separated (default: 1,4,8,16 on CUDA, 2 on CPU)"})
    lengths: str | None = field(default=None, metadata={
        "help": "(g) pair sets: halueval (HaluEval-shaped pairs) or a length in tokens (long pairs cut to it) "
                "(default: halueval,512,1024 on CUDA, halueval,128 on CPU)"})
    timed_steps: int | None = field(default=None, metadata={
        "help": "(g) timed optimizer steps after the warm-up step (default: 3 on CUDA, 1 on CPU)"})
    n_items: int | None = field(default=None, metadata={
        "help": "(h) TruthfulQA questions and HaluEval rows (default: 100 on CUDA, 6 on CPU)"})
    max_new_tokens: int | None = field(default=None, metadata={
        "help": "(h) generation length (default: 128 on CUDA, 8 on CPU)"})
    skip: str = field(default="", metadata={"help": "checks to leave out, e.g. 'g,h' (default: none)"})
    trl: bool = field(default=True, metadata={"flag": "--no_trl", "help": "(g) without the TRL comparison"})

    def __post_init__(self):
        self.skip_set = {c.strip() for c in self.skip.split(",") if c.strip()}
        unknown = self.skip_set - set(CHECKS)
        if unknown:
            raise ValueError(f"--skip: unknown checks {sorted(unknown)}; the checks are {', '.join(CHECKS)}")


def parse_args(argv=None) -> RehearsalConfig:
    return parse_config(RehearsalConfig, argv, description=__doc__)


# ---------------------------------------------------------------------------------------------
# measurement
# ---------------------------------------------------------------------------------------------

class Peak:
    """Peak memory in GiB over a block: ``torch.cuda.max_memory_allocated()`` on CUDA, the resident set sampled
    every 10 ms on CPU."""

    def __init__(self, cuda: bool):
        self.cuda, self.gib = cuda, float("nan")

    def __enter__(self):
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            self._stop, self._peak = threading.Event(), 0
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        page = os.sysconf("SC_PAGE_SIZE")
        while not self._stop.is_set():
            with open("/proc/self/statm") as fh:
                self._peak = max(self._peak, int(fh.read().split()[1]) * page)
            self._stop.wait(0.01)

    def __exit__(self, *exc):
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            self.gib = torch.cuda.max_memory_allocated() / 2**30
        else:
            self._stop.set()
            self._thread.join()
            self.gib = self._peak / 2**30
        return False


def _free():
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class Ctx:
    cfg: RehearsalConfig
    cuda: bool
    work: Path
    policy: Path | None = None
    judge: Path | None = None
    rows: list = field(default_factory=list)          # table rows
    results: dict = field(default_factory=dict)       # JSON

    def row(self, check: str, setting: str, measured: str, target: str, status: str, **values):
        self.rows.append((check, setting, measured, target, status))
        self.results.setdefault(check, []).append({"setting": setting, "measured": measured, "target": target,
                                                   "status": status, **values})
        print(f"[{check}] {setting}: {measured} ({status})", flush=True)

    @property
    def device_flag(self) -> str:
        return "cuda" if self.cuda else "cpu"


# ---------------------------------------------------------------------------------------------
# models and data
# ---------------------------------------------------------------------------------------------

def build_model(ctx: Ctx, name: str, preset: str, tokenizer_dir: str, num_layers, hidden, seed: int) -> Path:
    """A random-init LlamaForCausalLM of ``preset``'s shape (``aligner.testing.tiny.shape_from_preset``) around a
    real tokenizer, initialised on the device in bf16 (fp32 on CPU) and saved; reused when already built."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from aligner.testing.tiny import TinyModelConfig, shape_from_preset

    if not (Path(tokenizer_dir) / "tokenizer.json").is_file():
        raise FileNotFoundError(f"tokenizer folder {tokenizer_dir} not found (../shared/tokenizers, see its README)")
    narrow = {} if hidden is None else dict(hidden_size=hidden, num_heads=4, num_kv_heads=2 if "3" in preset else 4,
                                            intermediate_size=2 * hidden)
    tcfg = TinyModelConfig(kind="causal", seed=seed, tokenizer=str(tokenizer_dir), config_preset=preset,
                           num_layers=num_layers, **narrow)
    dtype = torch.bfloat16 if ctx.cuda else torch.float32
    out = ctx.work / "models" / name
    stamp = {"config": asdict(tcfg), "dtype": str(dtype)}
    if (out / "rehearsal_stamp.json").is_file() and json.loads((out / "rehearsal_stamp.json").read_text()) == stamp:
        return out
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    pad = tok.pad_token_id
    if pad is None and "<|finetune_right_pad_id|>" in tok.get_vocab():
        pad = tok.convert_tokens_to_ids("<|finetune_right_pad_id|>")
    config = LlamaConfig(vocab_size=len(tok), **shape_from_preset(tcfg), bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=pad)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("cuda" if ctx.cuda else "cpu"):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "rehearsal_stamp.json").write_text(json.dumps(stamp))
    n = sum(p.numel() for p in model.parameters())
    del model
    _free()
    print(f"built {name}: {n / 1e9:.2f}B parameters in {time.perf_counter() - t0:.1f}s", flush=True)
    return out


def halueval_pairs(n: int, offset: int = 0):
    from aligner.core.paths import halueval_path
    from aligner.train.preference import PreferencePair

    rows = [json.loads(line) for line, _ in zip(open(halueval_path(), encoding="utf-8"), range(offset + n))][offset:]
    return [PreferencePair(r["question"], r["knowledge"], r["right_answer"], r["hallucinated_answer"]) for r in rows]


def long_pairs(n: int, tokens: int):
    """Pairs whose context (several HaluEval passages) is longer than ``tokens``: the trainer cuts it to fit, so
    every pair is ``tokens`` long."""
    base = halueval_pairs(n + 40)
    pairs = []
    for i in range(n):
        context = " ".join(p.context for p in base[i: i + 40])
        while len(context) < 6 * tokens:
            context += " " + context
        pairs.append(type(base[i])(base[i].prompt, context, base[i].chosen, base[i].rejected))
    return pairs


def level(ctx: Ctx, name: str, pairs):
    from aligner.train.preference import PairLevel

    path = ctx.work / "data" / f"{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"prompt": p.prompt, "context": p.context, "chosen": p.chosen,
                                        "rejected": p.rejected}) + "\n" for p in pairs), encoding="utf-8")
    return [PairLevel(name, list(pairs), path)]


def load_base(ctx: Ctx, dtype: str):
    from aligner.core.models import load_causal_lm

    return load_causal_lm(ctx.policy, dtype=dtype, device=ctx.device_flag)


# ---------------------------------------------------------------------------------------------
# training runs through the library
# ---------------------------------------------------------------------------------------------

def train(ctx: Ctx, name: str, levels, preloaded=None, **settings):
    """One ``PreferenceTrainer`` run (the base model reused when ``preloaded``); returns (log records, trainer seconds,
    peak GiB, output dir).  The adapter is taken off the reused base afterwards."""
    from aligner.train.config import PreferenceTrainingConfig
    from aligner.train.trainer import PreferenceTrainer

    out = ctx.work / "runs" / name
    flags = dict(model_path=str(ctx.policy), output_dir=str(out), epochs=1, lr=1e-4, warmup_steps=0, max_length=1024,
                 logging_steps=1, max_grad_norm=1e9, lora_dropout=0.0, save_every_steps=0, progress=False,
                 device=ctx.device_flag, per_device_batch_size=4, grad_accum_steps=1, overwrite_output_dir=True,
                 mixed_precision="bf16")
    flags.update(settings)
    if flags.get("resume"):
        flags["overwrite_output_dir"] = False
    trainer = PreferenceTrainer(PreferenceTrainingConfig(**flags), levels)
    trainer.preloaded = preloaded
    t0 = time.perf_counter()
    try:
        with Peak(ctx.cuda) as peak:
            trainer.train()
    finally:
        _detach(trainer, preloaded)
    seconds = time.perf_counter() - t0
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    return log, seconds, peak.gib, out


def _detach(trainer, preloaded) -> None:
    """Give the reused base back as it was: LoRA layers removed, checkpointing off, accelerate's references
    dropped."""
    model = getattr(trainer, "model", None)
    if preloaded is not None and model is not None:
        inner = trainer.acc.unwrap_model(model)
        base = inner.unload() if hasattr(inner, "unload") else inner
        if getattr(base, "is_gradient_checkpointing", False):
            base.gradient_checkpointing_disable()
            base.disable_input_require_grads()
    if hasattr(trainer, "acc"):
        trainer.acc.free_memory()
    trainer.model = trainer.optimizer = None
    _free()


def steady_pairs_per_s(log: list[dict], pairs_per_step: int) -> float:
    """pairs/s between the first and the last logged step (the trainer logs pairs/s since its start: k * P / t_k),
    so the first, warm-up step is left out."""
    t = [r["step"] * pairs_per_step / r["pairs_per_s"] for r in log]
    if len(t) < 2 or t[-1] <= t[0]:
        return float("nan")
    return (log[-1]["step"] - log[0]["step"]) * pairs_per_step / (t[-1] - t[0])


def _adapter_diff(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    x, y = load_file(str(a / "adapter_model.safetensors")), load_file(str(b / "adapter_model.safetensors"))
    if x.keys() != y.keys():
        return float("inf")
    return max((x[k].float() - y[k].float()).abs().max().item() for k in x)


def _default(name: str):
    """A training setting's default (what the rehearsal's runs train with unless they set it)."""
    from dataclasses import fields

    from aligner.train.config import PreferenceTrainingConfig

    return next(f.default for f in fields(PreferenceTrainingConfig) if f.name == name)


def _status(ok: bool) -> str:
    return "pass" if ok else "FAIL"


# ---------------------------------------------------------------------------------------------
# (a) (c) (f): bf16 runs on one base
# ---------------------------------------------------------------------------------------------

def check_bf16_runs(ctx: Ctx):
    from aligner.core.logprobs import probe_logits_mask

    base = load_base(ctx, "bf16")
    probe = probe_logits_mask(base[0])
    levels = level(ctx, "checks", halueval_pairs(48 if ctx.cuda else 16))
    common = dict(save_every_steps=2, lam=50.0)
    live, _, _, live_out = train(ctx, "bf16_live", levels, base, **common)
    if "a" not in ctx.cfg.skip_set:
        s1 = live[0]
        ok = abs(s1["loss"] - LN2) <= 1e-6 * LN2 and s1["rewards/chosen"] == 0.0 and s1["rewards/rejected"] == 0.0 \
            and s1["rewards/margins"] == 0.0 and probe
        ctx.row("a", "step 1, bf16, batch 4", f"loss {s1['loss']:.9f}, rewards {s1['rewards/chosen']:g} / "
                f"{s1['rewards/rejected']:g}, logits mask probe {'2-D [N, V]' if probe else 'failed: full logits'}",
                "loss = ln 2, rewards 0, [N, V]", _status(ok), step1=s1, probe=probe)
    if "c" not in ctx.cfg.skip_set:
        pre, _, _, _ = train(ctx, "bf16_precompute", levels, base, precompute_ref=True, **common)
        # logged values are means over the step's pairs: the bound is 0.01 nats x the longest answer's tokens
        tok = base[1]
        bound = 0.01 * max(len(tok(a, add_special_tokens=False)["input_ids"]) + 1
                           for p in levels[0].pairs for a in (p.chosen, p.rejected))
        diff = max(max(abs(a[k] - b[k]) for k in ("logps/ref_chosen", "logps/ref_rejected")) for a, b in zip(live, pre))
        margin = abs(pre[0]["rewards/margins"])
        ok = diff <= bound and margin <= _default("beta") * 2 * bound
        ctx.row("c", f"per-pair cache vs live, bf16, {len(pre)} steps", f"max |ref diff| {diff:g}; step 1 margin "
                f"{margin:g}", f"<= 0.01 nats/token ({bound:.3g}); margin <= beta x 2 x that", _status(ok),
                max_ref_diff=diff)
    if "f" not in ctx.cfg.skip_set:
        check_kill_resume(ctx, levels, base, live_out, common)
    _release(base)


def _release(base) -> None:
    del base
    _free()


def check_kill_resume(ctx: Ctx, levels, base, full_out: Path, common: dict):
    """The training script in a subprocess, killed with SIGKILL once its first checkpoint is complete; then
    ``--resume`` in this process; the final adapter against the uninterrupted run's."""
    out = ctx.work / "runs" / "killed"
    shutil.rmtree(out, ignore_errors=True)  # so only this run's checkpoints are seen below
    args = [sys.executable, str(REPO_ROOT / "first_improvement/training/train_dpop.py"), "--model_path", str(ctx.policy),
            "--data_files", str(levels[0].data_path), "--output_dir", str(out), "--epochs", "1", "--lr", "1e-4",
            "--warmup_steps", "0", "--max_length", "1024", "--logging_steps", "1", "--max_grad_norm", "1e9",
            "--lora_dropout", "0", "--save_every_steps", str(common["save_every_steps"]), "--lam", str(common["lam"]),
            "--device", ctx.device_flag, "--per_device_batch_size", "4", "--grad_accum_steps", "1",
            "--mixed_precision", "bf16", "--dtype", "bf16", "--overwrite_output_dir", "--no_progress"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    killed_at = None
    while proc.poll() is None:
        done = sorted(p for p in (out / "checkpoints").glob("step_*") if (p / "trainer_state.json").is_file()) \
            if (out / "checkpoints").is_dir() else []
        if done:
            proc.send_signal(signal.SIGKILL)
            killed_at = done[-1].name
            break
        time.sleep(0.02)
    proc.wait()
    if killed_at is None:
        ctx.row("f", "kill -9 after the first checkpoint", f"not killed: exit {proc.returncode} "
                f"{(proc.stderr.read() or '')[-300:]!r}", "killed, resumed, same adapter", "FAIL")
        return
    train(ctx, "killed", levels, base, resume=True, **common)
    diff = _adapter_diff(full_out, out)
    ctx.row("f", f"kill -9 at {killed_at}, --resume", f"max |adapter diff| vs uninterrupted {diff:g}",
            "0 (<= 1e-6)", _status(diff <= 1e-6), killed_at=killed_at, adapter_diff=diff)


# ---------------------------------------------------------------------------------------------
# (b) (d): fp32 against bf16; accumulation
# ---------------------------------------------------------------------------------------------

def check_precision_and_accumulation(ctx: Ctx):
    import torch

    from aligner.core.logprobs import response_logprobs
    from aligner.train.preference import PairTokenizer

    fp32 = load_base(ctx, "fp32")
    if "b" not in ctx.cfg.skip_set:
        model, tok = fp32
        ptok = PairTokenizer(tok, 1024, "plain")
        pairs = halueval_pairs(32 if ctx.cuda else 8, offset=200)
        prompts = [ptok.build_prompt(p.context, p.prompt) for p in pairs]
        answers = [p.chosen for p in pairs]
        ref, n_tok = response_logprobs(model, tok, prompts, answers, batch_size=8, return_lengths=True)
        bf16 = load_base(ctx, "bf16")
        with torch.autocast(ctx.device_flag, dtype=torch.bfloat16):
            low = response_logprobs(bf16[0], tok, prompts, answers, batch_size=8)
        _release(bf16)
        err = [abs(a - b) for a, b in zip(ref, low)]
        per_tok = max(e / n for e, n in zip(err, n_tok))
        ctx.row("b", f"{len(err)} sequences, bf16 weights + autocast vs fp32", f"max {max(err):.4f} nats/seq, mean "
                f"{sum(err) / len(err):.4f}, max {per_tok:.5f}/token", "<= 0.01 nats/token",
                _status(per_tok <= 0.01), max_abs=max(err), mean_abs=sum(err) / len(err), max_per_token=per_tok)
    if "d" not in ctx.cfg.skip_set:
        levels = level(ctx, "accum", halueval_pairs(8, offset=100))
        norms = {}
        for bs, acc in ((4, 1), (2, 2), (1, 4)):
            log, _, _, _ = train(ctx, f"accum_{bs}x{acc}", levels, fp32, per_device_batch_size=bs,
                                 grad_accum_steps=acc, mixed_precision="no")
            norms[f"{bs}x{acc}"] = [r["grad_norm"] for r in log]
        ref = norms["4x1"]
        rel = max(abs(a - b) / abs(b) for v in norms.values() for a, b in zip(v, ref))
        ctx.row("d", "pre-clip grad_norm, fp32, 4x1 / 2x2 / 1x4", f"max rel diff {rel:.2e} "
                f"(step 1 norm {ref[0]:.5g})", "<= 1e-5", _status(rel <= 1e-5), grad_norms=norms)
    _release(fp32)


# ---------------------------------------------------------------------------------------------
# (e) fp16 + GradScaler
# ---------------------------------------------------------------------------------------------

def check_fp16(ctx: Ctx):
    if not ctx.cuda:
        ctx.row("e", "fp16 + GradScaler, 20 steps", "skipped: fp16 autocast with a scaler needs CUDA", "finite",
                "skipped")
        return
    fp16 = load_base(ctx, "fp16")
    levels = level(ctx, "fp16", halueval_pairs(80, offset=300))
    log, _, _, out = train(ctx, "fp16", levels, fp16, mixed_precision="fp16", lr=2e-4)
    _release(fp16)
    from safetensors.torch import load_file

    adapter = load_file(str(out / "adapter_model.safetensors"))
    finite_loss = all(math.isfinite(r["loss"]) for r in log)
    finite_norms = sum(math.isfinite(r["grad_norm"]) for r in log)
    finite_adapter = all(bool(v.float().isfinite().all()) for v in adapter.values())
    ok = len(log) == 20 and finite_loss and finite_adapter and finite_norms >= 15
    ctx.row("e", "fp16 weights + autocast + GradScaler, 20 steps", f"{len(log)} steps, losses finite {finite_loss}, "
            f"{finite_norms}/20 finite grad norms (scaler skips the rest), adapter finite {finite_adapter}",
            "all finite", _status(ok))


# ---------------------------------------------------------------------------------------------
# (g) speed and memory against TRL
# ---------------------------------------------------------------------------------------------

def trl_run(ctx: Ctx, base, tok, pairs, batch: int, length: int, gc_on: bool, steps: int):
    """TRL's DPOTrainer on the same base, pairs (as text), LoRA and batch: (pairs/s without the first step, peak
    GiB)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from aligner.train.preference import PairTokenizer

    ptok = PairTokenizer(tok, length, "plain")
    rows = []
    for p in pairs:
        enc = ptok.encode(p)
        prompt = tok.decode(enc.chosen.input_ids[:enc.chosen.response_start], skip_special_tokens=True)
        rows.append({"prompt": prompt, "chosen": p.chosen, "rejected": p.rejected})
    times = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if ctx.cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter())

    args = DPOConfig(output_dir=str(ctx.work / "runs" / "trl"), loss_type=["sigmoid"], beta=_default("beta"),
                     per_device_train_batch_size=batch, gradient_accumulation_steps=1, max_length=length,
                     max_steps=steps, learning_rate=1e-4, lr_scheduler_type="constant", warmup_steps=0,
                     bf16=ctx.cuda, fp16=False, use_cpu=not ctx.cuda, gradient_checkpointing=gc_on,
                     report_to="none", logging_steps=1, save_strategy="no", dataloader_num_workers=0,
                     dataloader_pin_memory=False, seed=0, max_grad_norm=1e9)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = DPOTrainer(model=base, ref_model=None, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=tok, peft_config=lora, callbacks=[Clock()])
    try:
        with Peak(ctx.cuda) as peak:
            trainer.train()
    finally:
        inner = trainer.accelerator.unwrap_model(trainer.model)
        restored = inner.unload() if hasattr(inner, "unload") else inner
        if getattr(restored, "is_gradient_checkpointing", False):
            restored.gradient_checkpointing_disable()
            restored.disable_input_require_grads()
        restored.__dict__.pop("forward", None)  # TRL's fused-LM-head forward patch (an instance attribute)
        trainer.accelerator.free_memory()
        del trainer
        _free()
    rate = (len(times) - 1) * batch / (times[-1] - times[0]) if len(times) >= 2 else float("nan")
    return rate, peak.gib


def _speed_pairs(which: str, n: int):
    """(pairs, max_length) of a (g) pair set: "halueval" (HaluEval QA rows: a prompt of about 160 tokens, short
    answers) or a number of tokens (long pairs cut to it)."""
    if which == "halueval":
        return halueval_pairs(n, offset=400), 1024
    return long_pairs(n, int(which)), int(which)


def _ours(ctx: Ctx, base, pairs, batch: int, length: int, gc_on: bool, steps: int, layout: str):
    import torch

    try:
        log, _, mem, _ = train(ctx, "speed", level(ctx, "speed", pairs), base, lam=0.0, per_device_batch_size=batch,
                               max_length=length, mixed_precision="bf16" if ctx.cuda else "no", layout=layout,
                               gradient_checkpointing=gc_on, stop_after_steps=steps)
        return steady_pairs_per_s(log, batch), mem
    except torch.cuda.OutOfMemoryError:
        _free()
        return float("nan"), float("inf")


def check_speed(ctx: Ctx):
    import torch

    cfg = ctx.cfg
    batches = [int(b) for b in (cfg.batches or ("1,4,8,16" if ctx.cuda else "2")).split(",")]
    sets = (cfg.lengths or ("halueval,512,1024" if ctx.cuda else "halueval,128")).split(",")
    steps = 1 + (cfg.timed_steps or (3 if ctx.cuda else 1))
    base = load_base(ctx, "bf16" if ctx.cuda else "fp32")
    for which in sets:
        pairs_all, length = _speed_pairs(which, steps * max(batches))
        for gc_on in (False, True):
            for batch in batches:
                pairs = pairs_all[: steps * batch]
                name = "HaluEval-shaped" if which == "halueval" else f"{length} tokens"
                setting = f"batch {batch}, {name}, GC {'on' if gc_on else 'off'}"
                padded, padded_mem = _ours(ctx, base, pairs, batch, length, gc_on, steps, "padded")
                packed, packed_mem = _ours(ctx, base, pairs, batch, length, gc_on, steps, "packed")
                values: dict = {"batch": batch, "set": which, "gradient_checkpointing": gc_on,
                                "padded_pairs_per_s": padded, "padded_peak_gib": padded_mem,
                                "packed_pairs_per_s": packed, "packed_peak_gib": packed_mem}
                gain = packed / padded if padded == padded and padded else float("nan")
                measured = (f"padded {padded:.2f} pairs/s, {padded_mem:.2f} GiB | packed {packed:.2f} pairs/s, "
                            f"{packed_mem:.2f} GiB (x{gain:.2f})")
                ok = gain >= 1.0 and packed_mem <= padded_mem
                if cfg.trl:
                    try:
                        theirs, theirs_mem = trl_run(ctx, base[0], base[1], pairs, batch, length, gc_on, steps)
                    except torch.cuda.OutOfMemoryError:
                        theirs, theirs_mem = float("nan"), float("inf")
                        _free()
                    values.update(trl_pairs_per_s=theirs, trl_peak_gib=theirs_mem)
                    ratio = padded / theirs if theirs and theirs == theirs else float("nan")
                    measured += f" | TRL {theirs:.2f} pairs/s, {theirs_mem:.2f} GiB | padded/TRL x{ratio:.2f}"
                    ok = ok and ratio >= 2.0 and padded_mem <= theirs_mem
                ctx.row("g", setting, measured, "packed >= padded pairs/s, <= its memory" +
                        ("; padded >= 2x TRL pairs/s, <= TRL memory" if cfg.trl else "") +
                        ("; >= 20 pairs/s" if length == 1024 and which != "halueval" else ""),
                        _status(ok) if ctx.cuda else "info (CPU)", **values)
    _release(base)


# ---------------------------------------------------------------------------------------------
# (h) evaluation
# ---------------------------------------------------------------------------------------------

@contextlib.contextmanager
def timed(ctx: Ctx):
    import torch

    box = {}
    with Peak(ctx.cuda) as peak:
        t0 = time.perf_counter()
        yield box
        if ctx.cuda:
            torch.cuda.synchronize()
        box["seconds"] = time.perf_counter() - t0
    box["peak_gib"] = peak.gib


def check_eval(ctx: Ctx):
    import torch

    from aligner.core.paths import halueval_path, truthfulqa_csv_path
    from aligner.data.sources.halueval import load_halueval
    from aligner.data.sources.truthfulqa import load_truthfulqa
    from aligner.eval.tasks.halueval_twostep import run_step1_generation
    from aligner.eval.tasks.truthfulqa import run_generation, run_judge, run_mc
    from aligner.lm.interface import load_lm, release_lm, vllm_available

    n = ctx.cfg.n_items or (100 if ctx.cuda else 6)
    new_tokens = ctx.cfg.max_new_tokens or (128 if ctx.cuda else 8)
    data = load_truthfulqa(truthfulqa_csv_path(), limit=n)
    rows = load_halueval(halueval_path(), limit=n)
    out = ctx.work / "eval"
    for f in out.glob("*.jsonl*"):
        f.unlink()
    out.mkdir(parents=True, exist_ok=True)
    dtype = "bf16" if ctx.cuda else "fp32"
    backends = ["hf"] + (["vllm"] if vllm_available() else [])
    for backend in backends:
        lm = load_lm(backend, str(ctx.policy), dtype=dtype, device=ctx.device_flag, batch_size=64, gen_batch_size=32)
        if backend == "hf":
            with timed(ctx) as t:
                run_mc(lm, data.mc, out / "mc.jsonl", progress=False)
            ctx.row("h", f"TruthfulQA MC, {len(data.mc)} questions, hf", f"{len(data.mc) / t['seconds']:.1f} "
                    f"questions/s, {t['peak_gib']:.2f} GiB", "817 MC + gen + judge < 5 min", "info", **t)
        with timed(ctx) as t:
            gens = run_generation(lm, data.gen, out / f"gen_{backend}.jsonl", max_new_tokens=new_tokens,
                                  progress=False)
        ctx.row("h", f"TruthfulQA generation, {len(gens)} x {new_tokens} tokens, {backend}",
                f"{len(gens) / t['seconds']:.2f} questions/s, {t['peak_gib']:.2f} GiB", "", "info", **t)
        with timed(ctx) as t:
            preds = run_step1_generation(lm, rows, out / f"halueval_{backend}.jsonl", max_new_tokens=new_tokens,
                                         progress=False)
        ctx.row("h", f"HaluEval generation, {len(preds)} x {new_tokens} tokens, {backend}",
                f"{len(preds) / t['seconds']:.2f} rows/s, {t['peak_gib']:.2f} GiB", "10k rows (vLLM) < 10 min",
                "info", **t)
        release_lm(lm)
        del lm
        _free()
    if ctx.cuda:
        free, total = torch.cuda.mem_get_info()
        ctx.row("h", "after releasing the policy, before the judge", f"mem_get_info: {free / 2**30:.1f} of "
                f"{total / 2**30:.1f} GiB free", "the policy's memory returned", "info", free=free, total=total)
    judge = load_lm("hf", str(ctx.judge), dtype=dtype, device=ctx.device_flag, batch_size=32)
    with timed(ctx) as t:
        run_judge(judge, gens, out / "judge.jsonl", progress=False)
    ctx.row("h", f"TruthfulQA judge ({ctx.cfg.judge_preset}-shaped), {len(gens)} answers",
            f"{len(gens) / t['seconds']:.1f} answers/s, {t['peak_gib']:.2f} GiB", "", "info", **t)
    release_lm(judge)
    del judge
    _free()


# ---------------------------------------------------------------------------------------------
# (i) several GPUs
# ---------------------------------------------------------------------------------------------

def _launch(ctx: Ctx, config: str, name: str, data: Path, extra: list[str], n_proc: int = 2):
    out = ctx.work / "runs" / name
    cmd = [str(Path(sys.executable).with_name("accelerate")), "launch", "--config_file",
           str(REPO_ROOT / "configs/accelerate" / config), "--num_processes", str(n_proc),
           str(REPO_ROOT / "first_improvement/training/train_dpop.py"), "--model_path", str(ctx.policy),
           "--data_files", str(data), "--output_dir", str(out), "--epochs", "1", "--lr", "1e-4", "--warmup_steps", "0",
           "--logging_steps", "1", "--max_grad_norm", "1e9", "--lora_dropout", "0", "--grad_accum_steps", "1",
           "--overwrite_output_dir", "--no_progress", *extra]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()] \
        if (out / "train_log.jsonl").is_file() else []
    return proc, log, out


def check_multi_gpu(ctx: Ctx):
    import torch

    if not ctx.cuda or torch.cuda.device_count() < 2:
        ctx.row("i", "DDP / FSDP / ZeRO-2", f"skipped: {torch.cuda.device_count() if ctx.cuda else 0} GPU(s)",
                ">= 2 GPUs", "skipped")
        return
    levels = level(ctx, "multi", halueval_pairs(80, offset=500))
    data = levels[0].data_path
    proc, ddp, _ = _launch(ctx, "ddp.yaml", "ddp", data, ["--per_device_batch_size", "2", "--dtype", "fp32",
                                                         "--mixed_precision", "no"])
    fp32 = load_base(ctx, "fp32")
    one, _, _, _ = train(ctx, "ddp_ref", levels, fp32, per_device_batch_size=4, mixed_precision="no")
    _release(fp32)
    rel = max((abs(a["grad_norm"] - b["grad_norm"]) / b["grad_norm"] for a, b in zip(ddp, one)), default=float("inf"))
    ctx.row("i", "DDP 2 x batch 2 vs 1 x batch 4, fp32", f"max rel grad_norm diff {rel:.2e} (exit {proc.returncode})",
            "<= 1e-5", _status(proc.returncode == 0 and len(ddp) == len(one) and rel <= 1e-5))
    for config, name in (("fsdp.yaml", "FSDP1 + LoRA"), ("deepspeed_zero2.yaml", "DeepSpeed ZeRO-2")):
        if "deepspeed" in config:
            try:
                import deepspeed  # noqa: F401
            except ImportError:
                ctx.row("i", name, "skipped: deepspeed not installed", "prepare + 20 steps", "skipped")
                continue
        proc, log, out = _launch(ctx, config, config.split(".")[0], data, ["--per_device_batch_size", "2"])
        ok = proc.returncode == 0 and len(log) == 20 and all(math.isfinite(r["loss"]) for r in log) and \
            (out / "adapter_model.safetensors").is_file()
        tail = "" if ok else f" {proc.stderr[-300:]!r}"
        ctx.row("i", f"{name}, 2 processes x batch 2, 20 steps", f"exit {proc.returncode}, {len(log)} steps, last "
                f"loss {log[-1]['loss'] if log else float('nan'):.4f}{tail}", "prepare + 20 finite steps + adapter",
                _status(ok))


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------

def _environment(ctx: Ctx) -> dict:
    import importlib.metadata as md

    import torch

    env = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "device": ctx.device_flag,
           "gpu": torch.cuda.get_device_name(0) if ctx.cuda else None,
           "gpus": torch.cuda.device_count() if ctx.cuda else 0}
    for pkg in ("torch", "transformers", "peft", "accelerate", "trl", "vllm", "deepspeed"):
        try:
            env[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            env[pkg] = None
    return env


def render(ctx: Ctx) -> str:
    lines = ["| check | setting | measured | target | status |", "| --- | --- | --- | --- | --- |"]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in ctx.rows]
    return "\n".join(lines)


def run_rehearsal(cfg: RehearsalConfig) -> dict:
    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if cuda and not torch.cuda.is_available():
        raise RuntimeError("--device cuda requested but CUDA is not available")
    ctx = Ctx(cfg, cuda, Path(cfg.work_dir))
    ctx.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    hidden = cfg.hidden_size if cfg.hidden_size is not None else (None if cuda else 64)
    ctx.policy = build_model(ctx, "policy", "llama-3.2-3b", cfg.policy_tokenizer, cfg.num_layers, hidden, seed=0)
    if "h" not in cfg.skip_set:
        ctx.judge = build_model(ctx, "judge", cfg.judge_preset, cfg.judge_tokenizer,
                                cfg.judge_layers or (None if cuda else cfg.num_layers), hidden, seed=1)
    steps = [("acf", check_bf16_runs), ("bd", check_precision_and_accumulation), ("e", check_fp16),
             ("g", check_speed), ("h", check_eval), ("i", check_multi_gpu)]
    for keys, fn in steps:
        if set(keys) <= cfg.skip_set:
            continue
        t = time.perf_counter()
        try:
            fn(ctx)
        except Exception as err:  # noqa: BLE001 - a failed check is a table row, the others still run
            ctx.row(keys[0], fn.__name__, f"error: {type(err).__name__}: {str(err).splitlines()[0][:300]}", "",
                    "FAIL")
        print(f"-- {fn.__name__}: {time.perf_counter() - t:.1f}s", flush=True)
    report = {"environment": _environment(ctx), "settings": asdict(cfg) | {"skip_set": sorted(cfg.skip_set)},
              "seconds": time.perf_counter() - t0, "checks": ctx.results, "table": render(ctx)}
    path = Path(cfg.output_json or ctx.work / "rehearsal.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    env = report["environment"]
    print(f"\nGPU rehearsal on {env['gpu'] or 'CPU'} ({env['date']}), {report['seconds']:.0f}s\n")
    print(report["table"])
    print(f"\nJSON: {path}")
    return report


def main(argv=None):
    return run_rehearsal(parse_args(argv))


if __name__ == "__main__":
    run_cli(main)
