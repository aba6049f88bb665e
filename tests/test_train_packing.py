"""The packed layout (issue 22): each pair's prompt computed once with both answers attending to it, several pairs to
a row, no padding inside a row.  Checked against the padded layout on the random-init Llama-3.2-shaped model with
the real tokenizer: the summed response log-probs per sequence (fp32, SDPA and eager), the gradient of the loss, bf16
against fp32, the study's tokenization (--study_compat), whole training runs (several forwards per optimizer step,
RPO on), and a 2-process DDP run whose processes pack into different numbers of forwards."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, halueval_rows, write_level_files
from safetensors.torch import load_file

from aligner.core.models import load_causal_lm
from aligner.prompts import DPO_IMPROVED_SYSTEM
from aligner.train.config import PreferenceTrainingConfig
from aligner.train.layouts import collate_pairs, score_pairs
from aligner.train.losses import LossSettings, preference_loss, weighted_preference_loss
from aligner.train.packing import (
    build_packed_batch,
    check_packable,
    equalize_counts,
    pack_rows,
    packed_length,
    packed_response_logprobs,
    padded_tokens,
    plan_micro_batches,
    shared_prefix_length,
)
from aligner.train.preference import PairTokenizer, PreferencePair, load_levels
from aligner.train.trainer import train_preference

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# fp32: the two layouts agree per sequence within REL x max(1, |log p|) (float rounding of different matrix shapes)
REL = 1e-5


@pytest.fixture(scope="module")
def halueval_pairs(halueval_file):
    return [PreferencePair(r["question"], r["knowledge"], r["right_answer"], r["hallucinated_answer"])
            for r in halueval_rows(halueval_file, 10)]


@pytest.fixture(scope="module")
def llama32(llama32_policy_dir):
    return load_causal_lm(llama32_policy_dir)


def _tokenize(tok, pairs, compat: bool, prompt_format="chat", max_length=1024):
    ptok = PairTokenizer(tok, max_length, prompt_format, system_prompt=DPO_IMPROVED_SYSTEM, double_bos=compat,
                         score_last_prompt_token=compat, truncation="right" if compat else "context",
                         plain_prompt="raw" if compat else "separated")
    return ptok.encode_all(pairs)[0]


def _padded(model, pairs, pad):
    from aligner.core.logprobs import batch_response_logprobs

    ids, attn, rmask = collate_pairs(pairs, pad)
    return batch_response_logprobs(model, ids, attn, rmask)


def _lora(model_dir, seed=0, attn=None):
    from peft import LoraConfig, get_peft_model

    base, tok = load_causal_lm(model_dir, attn_implementation=attn)
    torch.manual_seed(seed)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                                            task_type="CAUSAL_LM", init_lora_weights=False))  # random B: policy != ref
    return model, tok


# ---------------------------------------------------------------------------------------------
# rows, micro-batches, the mask
# ---------------------------------------------------------------------------------------------

def test_rows_and_micro_batches_respect_their_bounds():
    lengths = [300, 120, 700, 90, 410, 260, 55, 980, 30]
    rows = pack_rows(lengths, 1000)
    assert sorted(i for r in rows for i in r) == list(range(9))
    assert all(sum(lengths[i] for i in r) <= 1000 for r in rows)
    assert len(rows) == -(-sum(lengths) // 1000)  # first-fit decreasing fills these exactly: 3 rows
    plan = plan_micro_batches(lengths, 2000, 1000)
    assert sorted(i for b in plan for r in b for i in r) == list(range(9))
    assert all(len(b) * max(sum(lengths[i] for i in r) for r in b) <= 2000 for b in plan)
    assert plan_micro_batches([1500, 20], 1000, 1000) == [[[0]], [[1]]]  # a pair over the bound goes alone
    even = equalize_counts(plan, 6)
    assert len(even) == 6 and sorted(i for b in even for r in b for i in r) == list(range(9))
    with pytest.raises(ValueError, match="cannot cut 2 pairs into 3"):
        equalize_counts([[[0, 1]]], 3)


def test_the_mask_and_positions_of_a_row_of_two_pairs(llama32):
    """Row [P0 P0 C0 R0 R0 | P1 C1 C1 R1]: an answer sees its own prompt and itself, never the other answer or the
    other pair; positions restart per pair and both answers continue from the prompt."""
    from aligner.core.logprobs import EncodedPair
    from aligner.train.pair_tokens import TokenizedPair

    a = TokenizedPair(EncodedPair([1, 2, 3], 2), EncodedPair([1, 2, 4, 5], 2))
    b = TokenizedPair(EncodedPair([1, 6, 7], 1), EncodedPair([1, 8], 1))
    assert [shared_prefix_length(p) for p in (a, b)] == [2, 1] and [packed_length(p) for p in (a, b)] == [5, 4]
    batch = build_packed_batch([a, b], [[0, 1]], pad_id=0)
    assert batch.input_ids.tolist() == [[1, 2, 3, 4, 5, 1, 6, 7, 8]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 2, 3, 0, 1, 2, 1]]
    allowed = batch.attention_mask("sdpa", torch.float32)[0, 0].int().tolist()
    assert allowed == [[1, 0, 0, 0, 0, 0, 0, 0, 0],
                       [1, 1, 0, 0, 0, 0, 0, 0, 0],
                       [1, 1, 1, 0, 0, 0, 0, 0, 0],   # chosen of pair 0
                       [1, 1, 0, 1, 0, 0, 0, 0, 0],   # rejected of pair 0: its prompt, not the chosen answer
                       [1, 1, 0, 1, 1, 0, 0, 0, 0],
                       [0, 0, 0, 0, 0, 1, 0, 0, 0],   # pair 1's prompt: nothing of pair 0
                       [0, 0, 0, 0, 0, 1, 1, 0, 0],
                       [0, 0, 0, 0, 0, 1, 1, 1, 0],
                       [0, 0, 0, 0, 0, 1, 0, 0, 1]]
    additive = batch.attention_mask("eager", torch.float32)[0, 0]
    assert torch.equal(additive == 0, torch.tensor(allowed, dtype=torch.bool))
    assert additive.min().item() == torch.finfo(torch.float32).min
    # Scored tokens: the first answer token of both answers is predicted from the shared prompt's last position.
    kept = batch.keep.nonzero()[:, 1].tolist()
    predicting = [kept[r] for r in batch.rows.tolist()]
    assert list(zip(predicting, batch.targets.tolist(), batch.owner.tolist())) == [
        (1, 3, 0), (1, 4, 2), (3, 5, 2), (5, 6, 1), (6, 7, 1), (5, 8, 3)]
    assert batch.response_lengths.tolist() == [1, 2, 2, 1]
    with pytest.raises(ValueError, match="flash"):
        llama32[0].config._attn_implementation = "flash_attention_2"
        try:
            check_packable(llama32[0])
        finally:
            llama32[0].config._attn_implementation = "sdpa"


# ---------------------------------------------------------------------------------------------
# equal to the padded layout
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("compat", [False, True])
def test_packed_logprobs_equal_the_padded_ones(attn, compat, llama32_policy_dir, halueval_pairs):
    """Per sequence within 1e-5 relative in fp32, three rows of several pairs; with --study_compat's tokenization
    too (two BOS, the last prompt token scored, sequences cut from the right: one pair loses its answers)."""
    model, tok = load_causal_lm(llama32_policy_dir, attn_implementation=attn)
    pairs = _tokenize(tok, halueval_pairs, compat, max_length=1024 if not compat else 240)
    if compat:
        assert any(p.response_cut for p in pairs)
        assert all(p.chosen.input_ids[:2] == [tok.bos_token_id] * 2 for p in pairs)
    with torch.no_grad():
        want = _padded(model, pairs, tok.pad_token_id)
        got = packed_response_logprobs(model, build_packed_batch(pairs, [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]],
                                                                 tok.pad_token_id))
    err = ((got - want).abs() / want.abs().clamp(min=1.0)).max().item()
    print(f"{attn} compat={compat}: max relative difference {err:.2e}, max abs {(got - want).abs().max().item():.2e}")
    assert err <= REL
    assert (want != 0).sum() >= len(pairs)  # real values
    assert ((want == 0) == (got == 0)).all() and (want == 0).any() == compat  # an answer cut away scores 0 in both


def test_packed_gradient_equals_the_padded_one(llama32_policy_dir, halueval_pairs):
    """The gradient of the DPOP + RPO loss on the LoRA weights, one padded micro-batch against the same pairs packed
    in two forwards (pair by pair with their micro-batch shares): within 1e-5 relative of its largest entry."""
    model, tok = _lora(llama32_policy_dir)
    pairs = _tokenize(tok, halueval_pairs, False)[:6]
    settings = LossSettings(beta=0.3, lam=50.0, rpo_alpha=0.5)
    ids, attn, rmask = collate_pairs(pairs, tok.pad_token_id)
    from aligner.core.logprobs import batch_response_logprobs

    with torch.no_grad(), model.disable_adapter():
        ref = batch_response_logprobs(model, ids, attn, rmask)
    policy = batch_response_logprobs(model, ids, attn, rmask)
    n = len(pairs)
    lengths = rmask.sum(1)
    loss, _ = preference_loss("dpop", policy[:n], policy[n:], ref[:n], ref[n:], lengths[:n], lengths[n:], settings)
    loss.backward()
    params = [p for p in model.parameters() if p.requires_grad]
    padded = [p.grad.clone() for p in params]
    model.zero_grad(set_to_none=True)
    sizes, tokens = torch.full((n,), n), lengths[:n].sum().expand(n)
    for piece in ([0, 3, 5], [1, 2, 4]):
        batch = build_packed_batch([pairs[i] for i in piece], [list(range(len(piece)))], tok.pad_token_id)
        values = packed_response_logprobs(model, batch)
        k = len(piece)
        part, _, _ = weighted_preference_loss(
            "dpop", values[:k], values[k:], ref[piece], ref[[n + i for i in piece]], batch.response_lengths[:k],
            batch.response_lengths[k:], settings, sizes[piece], tokens[piece])
        part.backward()
    scale = max(g.abs().max().item() for g in padded)
    err = max((p.grad - g).abs().max().item() for p, g in zip(params, padded)) / scale
    print(f"gradient: max difference / max entry = {err:.2e}")
    assert scale > 1e-3 and err <= 1e-5


def test_bf16_packed_within_the_padded_layouts_own_bf16_tolerance(llama32_policy_dir, halueval_pairs):
    """Under bf16 autocast both layouts stay within 0.01 nats per response token of the fp32 values (the stated
    bf16 tolerance); the packed error is reported beside the padded one."""
    model, tok = load_causal_lm(llama32_policy_dir)
    pairs = _tokenize(tok, halueval_pairs, False)
    batch = build_packed_batch(pairs, [list(range(5)), list(range(5, 10))], tok.pad_token_id)
    with torch.no_grad():
        fp32 = _padded(model, pairs, tok.pad_token_id)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            padded = _padded(model, pairs, tok.pad_token_id)
            packed = packed_response_logprobs(model, batch)
    n_tokens = batch.response_lengths.float()
    per_token = {name: ((v - fp32).abs() / n_tokens).max().item() for name, v in (("padded", padded), ("packed", packed))}
    print(f"bf16 against fp32, max per response token: {per_token}")
    assert per_token["padded"] > 0 and per_token["packed"] > 0  # bf16 really ran
    assert max(per_token.values()) <= 0.01


def test_score_pairs_in_both_layouts(llama32, halueval_pairs):
    model, tok = llama32
    pairs = _tokenize(tok, halueval_pairs, False)
    with torch.no_grad():
        a = score_pairs(model, pairs, "padded", tok.pad_token_id, "cpu", batch_size=3, max_tokens=0, row_tokens=0)
        b = score_pairs(model, pairs, "packed", tok.pad_token_id, "cpu", batch_size=0, max_tokens=800, row_tokens=400)
    assert ((a - b).abs() / a.abs()).max().item() <= REL
    assert sum(map(packed_length, pairs)) <= 0.5 * padded_tokens(pairs)  # the point of it, on HaluEval chat pairs


# ---------------------------------------------------------------------------------------------
# whole runs
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def level_files(halueval_file, tmp_path_factory):
    return write_level_files(halueval_rows(halueval_file, 16, offset=40), tmp_path_factory.mktemp("packing_pairs"),
                             ("easy", "medium"), 8)


def _run(model_dir, out, files, **kw):
    cfg = PreferenceTrainingConfig(**{**dict(
        model_path=str(model_dir), output_dir=str(out), epochs=2, lr=1e-3, warmup_steps=0, max_length=1024,
        per_device_batch_size=2, grad_accum_steps=2, lora_dropout=0.0, logging_steps=1, max_grad_norm=1e9,
        prompt_format="chat", device="cpu", progress=False, save_every_steps=0), **kw})
    train_preference(cfg, load_levels(files))
    return [json.loads(x) for x in (Path(out) / "train_log.jsonl").read_text().splitlines()]


def _logs_agree(a, b, rel, abs_):
    assert [r["step"] for r in a] == [r["step"] for r in b]
    worst = {}
    for x, y in zip(a, b):
        assert set(x) == set(y)
        for k, v in x.items():
            if k not in ("pairs_per_s",):
                worst[k] = max(worst.get(k, 0.0), abs(y[k] - v))
                assert y[k] == pytest.approx(v, rel=rel, abs=abs_), (x["step"], k)
    print("largest differences:", {k: f"{v:.1e}" for k, v in worst.items() if v})


@pytest.mark.parametrize("compat", [False, True])
def test_packed_run_logs_what_the_padded_run_logs(compat, llama32_policy_dir, level_files, tmp_path):
    """Both layouts train the same pairs per step; the packed run cuts each step into several forwards
    (--max_tokens_per_batch 700: about three pairs each), RPO on: every logged value agrees to float rounding, at
    every step, and so do the adapters."""
    common = dict(rpo_alpha=0.5, study_compat=compat)
    padded = _run(llama32_policy_dir, tmp_path / "padded", level_files, layout="padded", **common)
    packed = _run(llama32_policy_dir, tmp_path / "packed", level_files, layout="packed", max_tokens_per_batch=700,
                  **common)
    _logs_agree(padded[:1], packed[:1], rel=1e-5, abs_=1e-6)
    # later steps: log-probs of about -300 round at 1e-6 absolute, and rewards are beta x their differences
    _logs_agree(padded, packed, rel=1e-5, abs_=2e-5)
    assert padded[0]["rewards/margins"] == packed[0]["rewards/margins"] == 0.0
    a, b = (load_file(str(tmp_path / n / "adapter_model.safetensors")) for n in ("padded", "packed"))
    scale = max(t.abs().max().item() for k, t in a.items() if "lora_B" in k)
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"adapters: max difference {diff:.1e}, largest lora_B entry {scale:.1e}")
    assert scale > 1e-4 and diff <= 1e-3 * scale  # AdamW rescales near-zero gradient entries to lr-sized steps
    run_cfg = json.loads((tmp_path / "packed" / "run_config.json").read_text())
    assert run_cfg["layout"]["max_tokens_per_batch"] == 700 and run_cfg["flags"]["study_compat"] is compat
    tokens = {n: json.loads((tmp_path / n / "run_config.json").read_text())["final"]["policy_tokens_per_pair"]
              for n in ("padded", "packed")}
    assert tokens["packed"] <= 0.6 * tokens["padded"]


@pytest.mark.slow
def test_two_process_packed_run_matches_one_process(llama32_policy_dir, level_files, tmp_path):
    """2 DDP processes (gloo) x 2 pairs against one process x 4 pairs per micro-batch, packed with
    --max_tokens_per_batch 400: the processes' pairs pack into different numbers of forwards, which are evened out
    (else the gradient reduction would hang); the adapters agree to 1e-5 of their scale."""
    args = ["--model_path", str(llama32_policy_dir), "--data_files", ",".join(map(str, level_files)), "--epochs", "2",
            "--lr", "1e-3", "--warmup_steps", "0", "--grad_accum_steps", "2", "--lora_dropout", "0", "--prompt_format",
            "chat", "--max_tokens_per_batch", "400", "--layout", "packed", "--device", "cpu", "--no_progress"]
    with __import__("socket").socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [str(Path(sys.executable).with_name("accelerate")), "launch", "--config_file",
           str(REPO / "configs/accelerate/ddp.yaml"), "--num_processes", "2", "--mixed_precision", "no",
           "--main_process_port", str(port), str(REPO / "first_improvement/training/train_dpop_improved.py"), *args,
           "--output_dir", str(tmp_path / "ddp"), "--per_device_batch_size", "2"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_cfg = json.loads((tmp_path / "ddp" / "run_config.json").read_text())
    assert run_cfg["world_size"] == 2 and run_cfg["final"]["packed"]["steps_evened_out"] >= 1
    from conftest import load_script

    load_script("first_improvement/training/train_dpop_improved.py").main(
        [*args, "--output_dir", str(tmp_path / "one"), "--per_device_batch_size", "4"])
    a, b = (load_file(str(tmp_path / n / "adapter_model.safetensors")) for n in ("ddp", "one"))
    scale = max(t.abs().max().item() for k, t in b.items() if "lora_B" in k)
    assert scale > 1e-4 and max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-5 * max(1.0, scale)
    logs = [[json.loads(x) for x in (tmp_path / n / "train_log.jsonl").read_text().splitlines()] for n in ("ddp", "one")]
    assert [r["loss"] for r in logs[0]] == pytest.approx([r["loss"] for r in logs[1]], rel=1e-5)


# ---------------------------------------------------------------------------------------------
# the study's defaults unchanged
# ---------------------------------------------------------------------------------------------

#: the last commit before the packed layout and the loss registry: its trainer is the yardstick of --layout padded
EARLIER_TRAINER_COMMIT = "205935f"

_EARLIER_RUN = """
import json, sys, torch
torch.set_num_threads(1)
from aligner.train.config import DPOPTrainingConfig
from aligner.train.dpop_trainer import train_dpop
from aligner.train.preference import load_levels
kw = json.loads(sys.argv[1])
train_dpop(DPOPTrainingConfig(**kw), load_levels(json.loads(sys.argv[2])))
"""


@pytest.mark.slow
@pytest.mark.parametrize("prompt_format,extra", [("plain", {}), ("chat", {"rpo_alpha": 0.5, "study_compat": True,
                                                                          "max_length": 300})])
def test_padded_dpop_run_logs_what_the_earlier_trainer_logged(prompt_format, extra, llama32_policy_dir, level_files,
                                                               tmp_path):
    """The trainer as it was (``git archive`` of the commit before this change) and ``--layout padded`` now, the same
    DPOP run: every value the earlier trainer logged is logged again, equal (measured: bitwise), except the curriculum
    stage's old second name ``epoch``."""
    earlier = tmp_path / "earlier_src"
    earlier.mkdir()
    archive = subprocess.run(["git", "archive", EARLIER_TRAINER_COMMIT, "aligner"], cwd=REPO, capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"commit {EARLIER_TRAINER_COMMIT} not in this checkout's history: {archive.stderr[-200:]!r}")
    subprocess.run(["tar", "-x", "-C", str(earlier)], input=archive.stdout, check=True)
    kw = {**dict(model_path=str(llama32_policy_dir), epochs=2, lr=5e-3, warmup_steps=1, max_length=1024,
                 per_device_batch_size=2, grad_accum_steps=2, logging_steps=1, device="cpu", progress=False,
                 prompt_format=prompt_format, save_every_steps=0, lora_dropout=0.05, max_grad_norm=1.0), **extra}
    files = json.dumps([str(f) for f in level_files])
    proc = subprocess.run([sys.executable, "-c", _EARLIER_RUN, json.dumps({**kw, "output_dir": str(tmp_path / "was")}),
                           files], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(earlier), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    now = _run(llama32_policy_dir, tmp_path / "now", level_files, layout="padded",
               **{k: v for k, v in kw.items() if k != "model_path"})
    was = [json.loads(x) for x in (tmp_path / "was" / "train_log.jsonl").read_text().splitlines()]
    assert len(was) == len(now) >= 5
    for a, b in zip(was, now):
        assert set(a) - set(b) == {"epoch"} and set(b) <= set(a)
        for k, v in a.items():
            if k not in ("epoch", "pairs_per_s"):
                assert b[k] == pytest.approx(v, rel=1e-6, abs=1e-9), (a["step"], k)
