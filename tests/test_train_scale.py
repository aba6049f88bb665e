"""Training at scale, on CPU: the gradient scale (pre-clip grad_norm against a plain computation, and equal over
accumulation layouts and data-parallel processes), the precomputed reference in the training layout (exactly the
live values, sharded over processes), FSDP1 wrap units for a bf16 base with fp32 LoRA (torch FSDP on gloo),
DeepSpeed clipping from one source, logits kept in bf16 with the chunked fp32 logsumexp, the logits_to_keep
probe, bf16 detection, gradient checkpointing, the output-folder rule, and a DPOP step with the real Llama-3.2
tokenizer in both prompt formats."""

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import REPO, halueval_rows, load_script, write_level_files
from safetensors.torch import load_file

from aligner.core.cli import run_cli
from aligner.core.logprobs import (
    _ChunkedTokenLogprobs,
    accepts_logits_to_keep,
    batch_response_logprobs,
    probe_logits_mask,
    reference_response_logprob,
    response_logprobs,
)
from aligner.core.models import load_causal_lm, resolve_dtype
from aligner.train.accel import choose_mixed_precision, reconcile_deepspeed_config
from aligner.train.checkpoints import CheckpointManager, OutputDirError
from aligner.train.config import DPOPTrainingConfig
from aligner.train.preference import PairTokenizer, load_levels
from aligner.train.reference import pair_key
from aligner.train.steps import LogWindow
from aligner.train.trainer import PreferenceTrainer as DPOPTrainer
from aligner.train.trainer import train_preference as train_dpop

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MAX_LENGTH = 128
BASE = dict(epochs=1, lr=5e-3, warmup_steps=0, max_length=MAX_LENGTH, lora_dropout=0.0, max_grad_norm=1e9,
            logging_steps=1, device="cpu", progress=False)


@pytest.fixture(scope="module")
def pairs_file(halueval_file, tmp_path_factory):
    rows = [json.loads(line) for line, _ in zip(open(halueval_file, encoding="utf-8"), range(8))]
    path = tmp_path_factory.mktemp("scale_pairs") / "dpo_pairs_easy.jsonl"
    path.write_text("".join(json.dumps({"prompt": r["question"], "context": r["knowledge"], "chosen": r["right_answer"],
                                        "rejected": r["hallucinated_answer"]}) + "\n" for r in rows), encoding="utf-8")
    return path


def _cfg(model_dir, out, **kw):
    return DPOPTrainingConfig(model_path=str(model_dir), output_dir=str(out), **{**BASE, **kw})


def _log(out):
    return [json.loads(x) for x in (Path(out) / "train_log.jsonl").read_text().splitlines()]


def _adapter(path):
    return load_file(str(Path(path) / "adapter_model.safetensors"))


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# the gradient scale
# ---------------------------------------------------------------------------------------------

def _seq_logp(model, enc):
    """The plain yardstick on token ids: one unpadded sequence, full log-softmax, summed over the response."""
    ids = torch.tensor([enc.input_ids])
    lp = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)[0]
    return sum(lp[t - 1, enc.input_ids[t]] for t in range(enc.response_start, len(enc.input_ids)))


def _plain_dpo_grad_norm(model, pairs, beta):
    """The DPO loss (lambda = 0) of one batch computed the plain way (``_seq_logp``); its gradient norm over the
    trainable parameters."""
    def logp(enc):
        return _seq_logp(model, enc)

    with torch.no_grad(), model.disable_adapter():
        ref = [(logp(p.chosen), logp(p.rejected)) for p in pairs]
    losses = [-F.logsigmoid(beta * ((logp(p.chosen) - rc) - (logp(p.rejected) - rr))) for p, (rc, rr) in zip(pairs, ref)]
    torch.stack(losses).mean().backward()
    norm = torch.sqrt(sum((q.grad.double() ** 2).sum() for q in model.parameters() if q.requires_grad)).item()
    model.zero_grad(set_to_none=True)
    return norm


def test_pre_clip_grad_norm_equals_the_plain_gradient(tiny_model_dir, pairs_file, tmp_path):
    """The logged grad_norm of step 1 is the norm of the mean-over-pairs DPO gradient computed independently;
    a loss scaled by 2 (a sum for a mean, accumulation without division) doubles it."""
    trainer = DPOPTrainer(_cfg(tiny_model_dir, tmp_path / "anchor", lam=0.0, per_device_batch_size=4,
                               grad_accum_steps=1), load_levels([pairs_file]))
    trainer._setup()
    trainer.window, trainer.steps_this_run = LogWindow(), 0
    refs = trainer.micro_batch(1, 0, 0)
    plain = _plain_dpo_grad_norm(trainer.model, [trainer.tokenized[lv][i] for lv, i in refs], beta=0.3)
    logged = float(trainer._optimizer_step(1))
    assert plain > 1e-3
    assert logged == pytest.approx(plain, rel=1e-5)


@pytest.mark.slow
def test_grad_norm_equal_over_accumulation_and_processes(tiny_model_dir, pairs_file, tmp_path):
    """batch 4 x accum 1 = 2 x 2 = 1 x 4 = 2 DDP processes x batch 2, on the pre-clip grad_norm of every step (nothing
    clipped), to 1e-5 relative.  The DDP run also precomputes its reference sharded over both processes."""
    levels = load_levels([pairs_file])
    norms = {}
    for bs, accum in ((4, 1), (2, 2), (1, 4)):
        out = tmp_path / f"b{bs}a{accum}"
        train_dpop(_cfg(tiny_model_dir, out, per_device_batch_size=bs, grad_accum_steps=accum), levels)
        norms[(bs, accum)] = [r["grad_norm"] for r in _log(out)]
    ref = norms[(4, 1)]
    assert len(ref) == 2 and min(ref) > 1e-3
    for key, got in norms.items():
        assert got == pytest.approx(ref, rel=1e-5), key

    cmd = [str(Path(sys.executable).with_name("accelerate")), "launch", "--config_file",
           str(REPO / "configs/accelerate/ddp.yaml"), "--num_processes", "2", "--mixed_precision", "no",
           "--main_process_port", str(_free_port()), str(REPO / "first_improvement/training/train_dpop.py"),
           "--model_path", str(tiny_model_dir), "--data_files", str(pairs_file), "--output_dir", str(tmp_path / "ddp"),
           "--per_device_batch_size", "2", "--grad_accum_steps", "1", "--precompute_ref",
           *[x for k, v in BASE.items() if k != "progress" for x in (f"--{k}", str(v))], "--no_progress"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ddp = _log(tmp_path / "ddp")
    assert json.loads((tmp_path / "ddp" / "run_config.json").read_text())["world_size"] == 2
    assert [r["grad_norm"] for r in ddp] == pytest.approx(ref, rel=1e-5)
    a, b = _adapter(tmp_path / "ddp"), _adapter(tmp_path / "b4a1")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    # the sharded, gathered per-pair reference is what the one-process live run computed (to the cache's stated
    # fp32 tolerance), and at step 1 policy = reference up to that rounding
    one = _log(tmp_path / "b4a1")
    for a, b in zip(ddp, one):
        assert a["logps/ref_chosen"] == pytest.approx(b["logps/ref_chosen"], rel=1e-6)
        assert a["logps/ref_rejected"] == pytest.approx(b["logps/ref_rejected"], rel=1e-6)
    assert ddp[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-5) and ddp[0]["loss/positive"] < 1e-3
    caches = list(pairs_file.parent.glob("dpo_pairs_easy.ref_logps.*.json"))
    assert len(caches) == 1
    cache = json.loads(caches[0].read_text())
    assert cache["identity"]["layout"] == "packed" and len(cache["pairs"]) == 8  # every pair once, 4 per process
    assert all(math.isfinite(v) and v < 0 for pair in cache["pairs"].values() for v in pair)
    run_cfg = json.loads((tmp_path / "ddp" / "run_config.json").read_text())
    assert run_cfg["reference"]["computed"] == 8 and run_cfg["reference"]["read"] == 0
    caches[0].unlink()


# ---------------------------------------------------------------------------------------------
# the precomputed reference
# ---------------------------------------------------------------------------------------------

def _two_levels(halueval_file, folder: Path):
    return load_levels(write_level_files(halueval_rows(halueval_file, 8), folder, ("easy", "medium"), 4))


@pytest.mark.parametrize("mixed_precision", ["no", "bf16"])
def test_per_pair_reference_cache_within_the_stated_tolerance(mixed_precision, tiny_model_dir, halueval_file, tmp_path):
    """--precompute_ref scores each distinct pair once (the easy pairs of stage 1 come back in stage 2), keyed per
    pair; its values are the live reference's to the stated tolerance (fp32: 1e-5 relative; bf16 autocast: 0.01
    nats per response token); a second run with another loss reads every pair; another layout gets a file of its
    own; entries are per pair, so a run on fewer pairs reads them too."""
    levels = _two_levels(halueval_file, tmp_path)
    common = dict(per_device_batch_size=2, grad_accum_steps=1, mixed_precision=mixed_precision, epochs=2)
    train_dpop(_cfg(tiny_model_dir, tmp_path / "live", **common), levels)
    trainer = DPOPTrainer(_cfg(tiny_model_dir, tmp_path / "pre", precompute_ref=True, **common), levels)
    trainer.train()
    live, pre = _log(tmp_path / "live"), _log(tmp_path / "pre")
    assert len(live) == len(pre) == 2 + 3  # stage 1: 4 easy pairs; stage 2: 4 easy + 2 medium
    n_tokens = max(max(p.chosen.n_response, p.rejected.n_response) for lv in trainer.tokenized for p in lv)
    bound = (lambda v: 1e-5 * max(1.0, abs(v))) if mixed_precision == "no" else (lambda v: 0.01 * n_tokens)
    for a, b in zip(live, pre):
        for k in ("logps/ref_chosen", "logps/ref_rejected"):
            assert abs(a[k] - b[k]) <= bound(a[k]), k
    assert abs(pre[0]["rewards/margins"]) <= 0.3 * 2 * bound(pre[0]["logps/chosen"])  # policy = reference at step 1
    assert live[0]["rewards/margins"] == 0.0  # the live reference: the very same forward
    record = json.loads((tmp_path / "pre" / "run_config.json").read_text())["reference"]
    assert (record["computed"], record["read"]) == (6, 0) and len(record["per_pair_cache"]) == 2
    caches = sorted(tmp_path.glob("dpo_pairs_*.ref_logps.*.json"))
    assert [json.loads(c.read_text())["identity"]["layout"] for c in caches] == ["packed", "packed"]
    assert [len(json.loads(c.read_text())["pairs"]) for c in caches] == [4, 2]
    mtimes = [c.stat().st_mtime_ns for c in caches]
    train_dpop(_cfg(tiny_model_dir, tmp_path / "sigmoid", precompute_ref=True, loss="sigmoid", **common), levels)
    record = json.loads((tmp_path / "sigmoid" / "run_config.json").read_text())["reference"]
    assert (record["computed"], record["read"]) == (0, 6) and [c.stat().st_mtime_ns for c in caches] == mtimes
    assert _log(tmp_path / "sigmoid")[0]["logps/ref_chosen"] == pre[0]["logps/ref_chosen"]
    train_dpop(_cfg(tiny_model_dir, tmp_path / "padded", precompute_ref=True, layout="padded",
                    stop_after_steps=1, **common), levels)
    assert len(list(tmp_path.glob("dpo_pairs_*.ref_logps.*.json"))) == 4
    if mixed_precision == "no":  # a cached value against the plain fp32 yardstick (one sequence, full log-softmax)
        base, _ = load_causal_lm(tiny_model_dir)
        pair = trainer.tokenized[0][0]
        with torch.no_grad():
            yard = _seq_logp(base, pair.chosen).item()
        assert trainer.ref_values[pair_key(pair)][0] == pytest.approx(yard, rel=1e-5)


# ---------------------------------------------------------------------------------------------
# precision: logits kept in bf16, chunked logsumexp, bf16 vs fp32, detection
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_logsumexp_gradient_equals_autograd(dtype, monkeypatch):
    import aligner.core.logprobs as lp

    monkeypatch.setattr(lp, "LOGSUMEXP_CHUNK", 3)
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(10, 50, generator=g) * 4).to(dtype)
    targets = torch.randint(0, 50, (10,), generator=g)
    weights = torch.randn(10, generator=g)
    a = logits.clone().requires_grad_()
    out = _ChunkedTokenLogprobs.apply(a, targets)
    (out * weights).sum().backward()
    b = logits.clone().requires_grad_()
    c = b.float()
    plain = c.gather(-1, targets[:, None]).squeeze(-1) - torch.logsumexp(c, dim=-1)
    (plain * weights).sum().backward()
    assert torch.equal(out, plain.detach())
    assert a.grad.dtype == dtype and torch.allclose(a.grad.float(), b.grad.float(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("layout", ["padded", "packed"])
def test_bf16_training_keeps_logits_in_bf16(layout, tiny_model_dir, pairs_file, tmp_path):
    """accelerate's prepare() would return fp32 logits ([N, V] x 4 bytes at once); the trainer removes that upcast,
    keeping the autocast, so the logits come out bf16 and the logsumexp upcasts them chunk by chunk."""
    from aligner.train.layouts import collate_pairs
    from aligner.train.packing import build_packed_batch, packed_response_logprobs

    trainer = DPOPTrainer(_cfg(tiny_model_dir, tmp_path / "bf16", per_device_batch_size=2, grad_accum_steps=1,
                               mixed_precision="bf16", layout=layout), load_levels([pairs_file]))
    trainer._setup()
    pairs = [trainer.tokenized[lv][i] for lv, i in trainer.micro_batch(1, 0, 0)]
    ids, attn, rmask = collate_pairs(pairs, trainer.tokenizer.pad_token_id)
    out = trainer.model(input_ids=ids, attention_mask=attn, use_cache=False)
    assert out.logits.dtype == torch.bfloat16
    if layout == "padded":
        assert torch.isfinite(batch_response_logprobs(trainer.model, ids, attn, rmask)).all()
    else:
        with trainer.acc.autocast():
            values = packed_response_logprobs(trainer.model, build_packed_batch(pairs, [[0, 1]], 0))
        assert torch.isfinite(values).all() and values.shape == (4,)


def test_bf16_autocast_logprobs_within_tolerance_of_fp32(tiny_model_dir, halueval_file):
    """Stated tolerance: per sequence |logp_bf16 - logp_fp32| <= 0.01 nats per response token (measured on the
    tiny model: at most 0.0013 per token); and bf16 really ran (the values differ)."""
    model, tok = load_causal_lm(tiny_model_dir)
    rows = [json.loads(line) for line, _ in zip(open(halueval_file, encoding="utf-8"), range(16))]
    prompts = [f"{r['knowledge']}\n\n{r['question']}\n" for r in rows]
    answers = [r["right_answer"] for r in rows]
    fp32, n_tokens = response_logprobs(model, tok, prompts, answers, return_lengths=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = response_logprobs(model, tok, prompts, answers)
    errors = [abs(a - b) for a, b in zip(fp32, bf16)]
    assert max(e / n for e, n in zip(errors, n_tokens)) <= 0.01
    assert max(errors) > 0


def test_bf16_detection_ignores_emulation(monkeypatch):
    calls = []

    def is_bf16_supported(including_emulation=True):
        calls.append(including_emulation)
        return including_emulation  # a pre-Ampere card: bf16 only by emulation

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    assert resolve_dtype("auto", "cuda") == torch.float16
    assert choose_mixed_precision("auto", torch.device("cuda")) == "fp16"
    assert calls and not any(calls)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # Ampere+
    assert resolve_dtype("auto", "cuda") == torch.bfloat16 and choose_mixed_precision("auto", torch.device("cuda")) == "bf16"


class _OldSlicing(torch.nn.Module):
    """A causal LM with transformers 4.50-5.20's logits_to_keep: ``hidden[:, logits_to_keep, :]`` (a 2-D boolean
    mask raises IndexError there), or one that ignores the argument."""

    def __init__(self, inner, ignore=False):
        super().__init__()
        self.inner, self.ignore = inner, ignore

    def get_output_embeddings(self):
        return self.inner.get_output_embeddings()

    def forward(self, input_ids=None, attention_mask=None, logits_to_keep=0, use_cache=None):
        logits = self.inner(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
        if not self.ignore:
            keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
            logits = logits[:, keep, :]
        return SimpleNamespace(logits=logits)


def test_logits_mask_probe_falls_back_to_full_logits(tiny_model_dir):
    model, tok = load_causal_lm(tiny_model_dir)
    assert probe_logits_mask(model) and accepts_logits_to_keep(model)
    enc = [tok("The capital of France is Paris, a city.")["input_ids"], tok("Rome")["input_ids"]]
    width = max(map(len, enc))
    ids = torch.tensor([e + [tok.pad_token_id] * (width - len(e)) for e in enc])
    attn = torch.tensor([[1] * len(e) + [0] * (width - len(e)) for e in enc])
    rmask = torch.zeros_like(ids, dtype=torch.bool)
    rmask[0, 3:len(enc[0])] = True
    rmask[1, 1:len(enc[1])] = True
    want = batch_response_logprobs(model, ids, attn, rmask)
    for ignore in (False, True):
        old = _OldSlicing(model, ignore)
        assert not probe_logits_mask(old) and not accepts_logits_to_keep(old)
        assert torch.allclose(batch_response_logprobs(old, ids, attn, rmask), want, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# multi-GPU settings, tested without GPUs
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_fsdp1_lora_wrap_units_and_step_on_two_cpu_processes(tiny_model_dir, tmp_path):
    """torch FSDP1 (gloo) with the trainer's policy and the accelerate config's use_orig_params: decoder layers
    only cannot flatten a bf16 base with fp32 LoRA; the LoRA policy gives uniform units, and one step's pre-clip
    gradient norm over 2 processes x 2 rows matches one process on 4 rows (bf16 compute: 1%)."""
    fsdp_cfg = yaml.safe_load((REPO / "configs/accelerate/fsdp.yaml").read_text())["fsdp_config"]
    out = tmp_path / "fsdp.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           str(REPO / "tests/fsdp_lora_worker.py"), str(tiny_model_dir), str(out), str(fsdp_cfg["fsdp_use_orig_params"])]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rep = json.loads(out.read_text())
    assert rep["lora_dtypes"] == ["torch.float32"] and rep["base_dtypes"] == ["torch.bfloat16"]
    assert "uniform dtype" in rep["layers_only_error"]
    trainable = [u for u in rep["units"] if u["requires_grad"]]
    assert len(trainable) == 4 * 2 * 2  # 4 layers x (q_proj, v_proj) x (lora_A, lora_B), one unit each
    assert all(u["dtype"] == "torch.float32" and "lora_" in u["unit"] for u in trainable)
    assert all(u["dtype"] == "torch.bfloat16" for u in rep["units"] if not u["requires_grad"])
    assert rep["fsdp_grad_norm"] == pytest.approx(rep["plain_grad_norm"], rel=1e-2)
    assert rep["step_changed_params"] and rep["step_finite"]


def test_deepspeed_clipping_has_one_source():
    ds = reconcile_deepspeed_config({"gradient_clipping": "auto", "zero_optimization": {"stage": 2}}, 0.7, 2, 8)
    assert ds["gradient_clipping"] == 0.7 and ds["train_micro_batch_size_per_gpu"] == 2
    assert ds["gradient_accumulation_steps"] == 8
    assert reconcile_deepspeed_config({}, 0.0, 1, 1)["gradient_clipping"] == 0.0  # explicit: DeepSpeed's default is 1.0
    assert reconcile_deepspeed_config({"gradient_clipping": 1.0}, 1.0, 1, 1)["gradient_clipping"] == 1.0
    with pytest.raises(ValueError, match="gradient_clipping 1.0 but --max_grad_norm is 0.5"):
        reconcile_deepspeed_config({"gradient_clipping": 1.0}, 0.5, 1, 1)
    ds_yaml = yaml.safe_load((REPO / "configs/accelerate/deepspeed_zero2.yaml").read_text())["deepspeed_config"]
    assert ds_yaml["gradient_clipping"] == "auto"


def test_zero2_adapter_save_does_not_gather_the_state_dict(tiny_model_dir, tmp_path):
    """Under ZeRO-1/2 (and DDP) the main process writes the adapter from the module; the full state-dict gather
    (a copy of every base tensor on every rank under ZeRO-2) is only for FSDP and ZeRO-3."""
    from peft import LoraConfig, get_peft_model

    base, _ = load_causal_lm(tiny_model_dir)
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))

    def refuse(_model):
        raise AssertionError("get_state_dict called")

    calls = []

    def gather(m):
        calls.append(1)
        return m.state_dict()

    for stage, gathers in ((2, False), (3, True)):
        calls.clear()
        acc = SimpleNamespace(distributed_type="DistributedType.DEEPSPEED", is_main_process=True,
                              state=SimpleNamespace(deepspeed_plugin=SimpleNamespace(
                                  deepspeed_config={"zero_optimization": {"stage": stage}})),
                              get_state_dict=gather if gathers else refuse,
                              unwrap_model=lambda m: m, wait_for_everyone=lambda: None)
        CheckpointManager(acc, tmp_path).save_adapter(model, tmp_path / f"zero{stage}")
        assert (tmp_path / f"zero{stage}" / "adapter_model.safetensors").is_file() and len(calls) == int(gathers)


# ---------------------------------------------------------------------------------------------
# gradient checkpointing, the output folder
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["packed", "padded"])
def test_gradient_checkpointing_gives_the_same_adapter(layout, tiny_model_dir, pairs_file, tmp_path):
    levels = load_levels([pairs_file])
    common = dict(per_device_batch_size=4, grad_accum_steps=1, lora_dropout=0.05,  # dropout: the RNG replay matters
                  layout=layout)
    train_dpop(_cfg(tiny_model_dir, tmp_path / "plain", **common), levels)
    train_dpop(_cfg(tiny_model_dir, tmp_path / "gc", gradient_checkpointing=True, **common), levels)
    a, b = _adapter(tmp_path / "plain"), _adapter(tmp_path / "gc")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert max(t.abs().max().item() for n, t in a.items() if "lora_B" in n) > 0


def test_an_earlier_run_is_never_overwritten_silently(tiny_model_dir, pairs_file, tmp_path):
    levels = load_levels([pairs_file])
    out = tmp_path / "run"
    common = dict(per_device_batch_size=4, grad_accum_steps=1, save_every_steps=1)
    train_dpop(_cfg(tiny_model_dir, out, stop_after_steps=1, **common), levels)
    assert (out / "checkpoints" / "step_1").is_dir()
    with pytest.raises(OutputDirError) as err:  # a second run without --resume keeps the checkpoints
        train_dpop(_cfg(tiny_model_dir, out, **common), levels)
    assert "\n" not in str(err.value) and "--resume" in str(err.value) and "--overwrite_output_dir" in str(err.value)
    assert (out / "checkpoints" / "step_1" / "trainer_state.json").is_file()
    assert train_dpop(_cfg(tiny_model_dir, out, resume=True, **common), levels).completed  # --resume continues
    assert (out / "adapter_model.safetensors").is_file()
    with pytest.raises(OutputDirError, match="holds an earlier run"):  # a finished run is protected too
        train_dpop(_cfg(tiny_model_dir, out, **common), levels)
    train_dpop(_cfg(tiny_model_dir, out, overwrite_output_dir=True, **{**common, "save_every_steps": 0}), levels)
    assert not (out / "checkpoints").exists() and (out / "adapter_model.safetensors").is_file()
    with pytest.raises(OutputDirError, match="no complete checkpoint"):  # nothing to resume, a finished adapter
        train_dpop(_cfg(tiny_model_dir, out, resume=True, **common), levels)
    # the script says it in one line (run_cli: "error: ...", exit status 1)
    script = load_script("first_improvement/training/train_dpop.py")
    with pytest.raises(SystemExit) as exit_:
        run_cli(script.main, ["--model_path", str(tiny_model_dir), "--data_files", str(pairs_file), "--output_dir",
                              str(out), "--device", "cpu", "--no_progress"])
    assert str(exit_.value).startswith("error: ") and "holds an earlier run" in str(exit_.value)
    assert "\n" not in str(exit_.value)


# ---------------------------------------------------------------------------------------------
# the real Llama-3.2 tokenizer
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("prompt_format", ["plain", "chat"])
def test_dpop_step_with_the_real_llama32_tokenizer(prompt_format, llama32_policy_dir, pairs_file, tmp_path):
    """Response spans, one BOS, EOS (<|eot_id|>) on chat responses only; the step-1 log-probs the trainer logs are
    the plain one-sequence-at-a-time values; loss ln 2 and margin 0 at step 1."""
    levels = load_levels([pairs_file])
    levels[0].pairs = levels[0].pairs[:2]
    cfg = _cfg(llama32_policy_dir, tmp_path / prompt_format, prompt_format=prompt_format, per_device_batch_size=2,
               grad_accum_steps=1, max_length=1024, stop_after_steps=1)
    trainer = DPOPTrainer(cfg, levels)
    trainer.train()
    tok = trainer.tokenizer
    ptok = PairTokenizer.from_config(tok, cfg)
    assert len(trainer.tokenized[0]) == 2
    model, _ = load_causal_lm(llama32_policy_dir)
    plain = {"chosen": [], "rejected": []}
    for pair, enc in zip(levels[0].pairs, trainer.tokenized[0]):
        prompt = ptok.build_prompt(pair.context, pair.prompt)
        for side in ("chosen", "rejected"):
            e = getattr(enc, side)
            assert e.input_ids[0] == tok.bos_token_id == 128000 and e.input_ids.count(tok.bos_token_id) == 1
            response = tok.decode(e.input_ids[e.response_start:])
            if prompt_format == "chat":
                assert response == getattr(pair, side) + "<|eot_id|>" and e.input_ids[-1] == tok.eos_token_id
                assert tok.decode(e.input_ids[:e.response_start]).endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
            else:
                assert response.strip() == getattr(pair, side).strip() and tok.eos_token_id not in e.input_ids
            plain[side].append(reference_response_logprob(model, tok, prompt, ptok.response_text(getattr(pair, side))))
    step1 = _log(tmp_path / prompt_format)[0]
    assert step1["logps/chosen"] == pytest.approx(sum(plain["chosen"]) / 2, abs=1e-4)
    assert step1["logps/rejected"] == pytest.approx(sum(plain["rejected"]) / 2, abs=1e-4)
    assert step1["rewards/margins"] == 0.0 and step1["loss"] == pytest.approx(math.log(2), rel=1e-6)
