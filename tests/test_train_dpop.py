"""Curriculum DPOP training on the tiny model with HaluEval pairs (chosen = right_answer, rejected =
hallucinated_answer, context = knowledge): the README command, held-out implicit reward, lambda = 50 vs 0,
bitwise resume, the reference cache, 2-process DDP through `accelerate launch`, the other two scripts."""

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, halueval_pair, halueval_rows, run_script, write_level_files
from safetensors.torch import load_file

from aligner.core.models import load_causal_lm
from aligner.train.config import DPOPTrainingConfig
from aligner.train.dpop_trainer import policy_and_reference_logps, train_dpop
from aligner.train.preference import PairTokenizer, PreferencePair, implicit_reward_report, load_levels

DPOP_METRICS = {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
                "logps/rejected", "logps/ref_chosen", "logps/ref_rejected", "loss/dpo", "loss/positive", "loss/nll"}
N_PER_LEVEL = 20
MAX_LENGTH = 128
FAST = dict(lr=5e-3, warmup_steps=0, per_device_batch_size=4, grad_accum_steps=1, max_length=MAX_LENGTH,
            progress=False)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(halueval_file, tmp_path_factory):
    rows = halueval_rows(halueval_file, 400)
    d = tmp_path_factory.mktemp("pairs")
    files = write_level_files(rows, d, ("easy", "medium", "hard"), N_PER_LEVEL)
    held_out = [PreferencePair(r["question"], r["knowledge"], r["right_answer"], r["hallucinated_answer"])
                for r in rows[300:360]]
    train = [PreferencePair(**halueval_pair(r)) for r in rows[: 3 * N_PER_LEVEL]]
    return {"dir": d, "files": files, "held_out": held_out, "train": train}


def _adapter(path):
    return load_file(str(Path(path) / "adapter_model.safetensors"))


def _report(model_dir, adapter_dir, pairs, beta=0.3):
    from peft import PeftModel

    base, tok = load_causal_lm(model_dir)
    model = PeftModel.from_pretrained(base, str(adapter_dir))
    enc, _ = PairTokenizer(tok, MAX_LENGTH).encode_all(pairs)
    return implicit_reward_report(model, tok.pad_token_id, enc, beta, adapter="default")


@pytest.fixture(scope="module")
def readme_run(tiny_model_dir, data, tmp_path_factory):
    """The README command as written (lambda = 50, beta = 0.3 defaults), plus flags that make it seconds long."""
    out = tmp_path_factory.mktemp("readme") / "best_run"
    run_script("first_improvement/training/train_dpop.py",
               "--model_path", tiny_model_dir, "--data_files", ",".join(map(str, data["files"])),
               "--output_dir", out, "--epochs", "3",
               "--max_length", MAX_LENGTH, "--lr", "5e-3", "--warmup_steps", "0", "--per_device_batch_size", "4",
               "--grad_accum_steps", "1", "--logging_steps", "1", "--no_progress")
    return out


@pytest.fixture(scope="module")
def dpo_run(tiny_model_dir, data, tmp_path_factory):
    """The same run with lambda = 0 (plain DPO), in process."""
    out = tmp_path_factory.mktemp("dpo") / "lam0"
    cfg = DPOPTrainingConfig(model_path=str(tiny_model_dir), output_dir=str(out), lam=0.0, epochs=3, **FAST)
    result = train_dpop(cfg, load_levels(data["files"]))
    assert result.completed
    return out


@pytest.mark.slow
def test_readme_command_outputs(readme_run, tiny_model_dir, data):
    from peft import PeftModel

    out = readme_run
    for k in (1, 2, 3):
        assert (out / f"epoch_{k}" / "adapter_model.safetensors").is_file()
    assert (out / "adapter_config.json").is_file() and not (out / "epoch_4").exists()
    # The adapter loads with PEFT and holds exactly the saved weights, which are not the identity (B != 0).
    base, _ = load_causal_lm(tiny_model_dir)
    model = PeftModel.from_pretrained(base, str(out))
    saved = _adapter(out)
    loaded = {k.replace(".default", ""): v for k, v in model.state_dict().items() if "lora_" in k}
    assert len(saved) == len(loaded) > 0
    for name, tensor in saved.items():
        assert torch.equal(loaded[name], tensor)
    assert any(t.abs().max() > 0 for n, t in saved.items() if "lora_B" in n)
    assert _adapter(out / "epoch_3").keys() == saved.keys()
    # Curriculum: the stage sizes follow the study's rule, computed here from the pairs kept per level
    # (pairs whose responses cannot fit --max_length are skipped, so the counts follow the data actually used).
    run_cfg = json.loads((out / "run_config.json").read_text())
    e, m, h = (v["tokenize"]["n_kept"] for v in run_cfg["levels"].values())
    assert min(e, m, h) >= N_PER_LEVEL - 3
    assert all(v["tokenize"]["n_in"] == N_PER_LEVEL for v in run_cfg["levels"].values())
    expected = [[e, 0, 0], [e, m // 2, 0], [e, m // 2, (6 * h) // 10]]
    assert [list(s["per_level"].values()) for s in run_cfg["curriculum"]] == expected
    steps = [-(-sum(c) // 4) for c in expected]  # ceil(pairs / 4 pairs per step)
    assert run_cfg["flags"]["lam"] == 50.0 and run_cfg["flags"]["beta"] == 0.3
    # One log line per optimizer step, stages in order, every metric present.
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, sum(steps) + 1))
    assert [r["stage"] for r in log] == [1] * steps[0] + [2] * steps[1] + [3] * steps[2]
    assert all(DPOP_METRICS | {"loss", "lr", "stage"} <= set(r) and "epoch" not in r for r in log)
    assert log[0]["rewards/margins"] == 0.0 and log[0]["loss"] == pytest.approx(0.6931471805599453, rel=1e-6)


@pytest.mark.slow
def test_heldout_implicit_reward_rises_and_lambda_guards_the_chosen_answer(readme_run, dpo_run, tiny_model_dir,
                                                                             data, tmp_path):
    from peft import LoraConfig, get_peft_model

    # Before training: a freshly initialised adapter (B = 0) is the reference, so every margin is 0.
    base, tok = load_causal_lm(tiny_model_dir)
    fresh = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"],
                                            task_type="CAUSAL_LM"))
    enc, _ = PairTokenizer(tok, MAX_LENGTH).encode_all(data["held_out"])
    before = implicit_reward_report(fresh, tok.pad_token_id, enc, 0.3)
    assert before["reward_accuracy"] == 0.0 and before["reward_margin"] == 0.0
    # A non-degenerate "before": an untrained adapter with random weights moves the log-probs about as much,
    # but in no particular direction, so its implicit reward prefers the chosen answer about half the time.
    torch.manual_seed(0)
    base2, _ = load_causal_lm(tiny_model_dir)
    random_adapter = get_peft_model(base2, LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"],
                                                      task_type="CAUSAL_LM", init_lora_weights=False))
    chance = implicit_reward_report(random_adapter, tok.pad_token_id, enc, 0.3)
    print("held-out, random untrained adapter:", chance)

    # After training, with lambda = 50 (the README command) and with lambda = 0, the implicit reward prefers the
    # chosen answer on most held-out pairs (chance would be 0.5; before training it is 0, all ties).
    dpop_held = _report(tiny_model_dir, readme_run, data["held_out"])
    dpo_held = _report(tiny_model_dir, dpo_run, data["held_out"])
    for report in (dpop_held, dpo_held):
        assert report["reward_accuracy"] >= 0.7 and report["reward_margin"] > 0
        assert report["reward_accuracy"] >= chance["reward_accuracy"] + 0.15

    # lambda = 50 keeps the chosen answers of the training pairs at least as likely as under the reference (on
    # average; the penalty is a training objective, so held-out pairs are not guaranteed); with lambda = 0 they
    # end lower than with lambda = 50 (on the tiny model, below the reference: the DPOP paper's failure mode).
    dpop_train = _report(tiny_model_dir, readme_run, data["train"])
    dpo_train = _report(tiny_model_dir, dpo_run, data["train"])
    assert dpop_train["chosen_logp_delta"] >= 0.0
    assert dpo_train["chosen_logp_delta"] < dpop_train["chosen_logp_delta"]
    print("held-out, lambda=0:", dpo_held, "\nheld-out, lambda=50:", dpop_held)
    print("train, lambda=0:", dpo_train, "\ntrain, lambda=50:", dpop_train)


def test_resume_gives_the_same_adapter(tiny_model_dir, data, tmp_path):
    levels = load_levels(data["files"][:2])
    for lv in levels:
        lv.pairs = lv.pairs[:8]
    common = dict(model_path=str(tiny_model_dir), epochs=2, lr=5e-3, warmup_steps=2, per_device_batch_size=2,
                  grad_accum_steps=2, max_length=MAX_LENGTH, save_every_steps=3, progress=False)
    # stage 1: 8 pairs = 2 steps; stage 2: 8 + 4 pairs = 3 steps.  LoRA dropout is on, so RNG state matters.
    full = train_dpop(DPOPTrainingConfig(output_dir=str(tmp_path / "full"), **common), levels)
    part = train_dpop(DPOPTrainingConfig(output_dir=str(tmp_path / "cut"), stop_after_steps=4, **common), levels)
    assert full.global_step == 5 and not part.completed and part.global_step == 4
    assert not (tmp_path / "cut" / "adapter_model.safetensors").exists()
    assert sorted(p.name for p in (tmp_path / "cut" / "checkpoints").iterdir()) == ["step_3"]
    state = json.loads((tmp_path / "cut" / "checkpoints" / "step_3" / "trainer_state.json").read_text())
    assert (state["stage"], state["step_in_stage"]) == (2, 1)
    resumed = train_dpop(DPOPTrainingConfig(output_dir=str(tmp_path / "cut"), resume=True, **common), levels)
    assert resumed.completed and resumed.global_step == 5
    a, b = _adapter(tmp_path / "full"), _adapter(tmp_path / "cut")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    a2, b2 = _adapter(tmp_path / "full" / "epoch_2"), _adapter(tmp_path / "cut" / "epoch_2")
    assert all(torch.equal(a2[k], b2[k]) for k in a2)
    log_full = [json.loads(x) for x in (tmp_path / "full" / "train_log.jsonl").read_text().splitlines()]
    log_cut = [json.loads(x) for x in (tmp_path / "cut" / "train_log.jsonl").read_text().splitlines()]
    assert [(r["step"], r["loss"]) for r in log_cut] == [(r["step"], r["loss"]) for r in log_full]
    # A checkpoint cannot be resumed by a run that would cut the data differently.
    with pytest.raises(RuntimeError, match="pairs_per_step"):
        train_dpop(DPOPTrainingConfig(output_dir=str(tmp_path / "cut"), resume=True,
                                      **{**common, "per_device_batch_size": 1}), levels)


@pytest.mark.slow
def test_two_process_accelerate_launch_matches_one_process(tiny_model_dir, data, tmp_path):
    """`accelerate launch --cpu --num_processes 2` starts ONE process in accelerate 1.15 (huggingface/accelerate
    #2741: --cpu selects the simple launcher); two CPU processes come from the torchrun launcher
    (configs/accelerate/ddp.yaml) with the script's --device cpu, which gives a MULTI_CPU (gloo) run."""
    small = tmp_path / "dpo_pairs_easy.jsonl"
    small.write_text("".join(data["files"][0].read_text().splitlines(keepends=True)[:8]), encoding="utf-8")
    args = ["--model_path", str(tiny_model_dir), "--data_files", str(small), "--epochs", "1", "--max_length",
            str(MAX_LENGTH), "--lr", "5e-3", "--warmup_steps", "0", "--grad_accum_steps", "2", "--lora_dropout", "0",
            "--device", "cpu", "--no_progress"]
    accelerate = Path(sys.executable).with_name("accelerate")
    with socket.socket() as sock:  # a free port: other test runs may share the machine
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [str(accelerate), "launch", "--config_file", str(REPO / "configs/accelerate/ddp.yaml"),
           "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", str(port),
           str(REPO / "first_improvement/training/train_dpop.py"), *args,
           "--output_dir", str(tmp_path / "ddp"), "--per_device_batch_size", "1"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_cfg = json.loads((tmp_path / "ddp" / "run_config.json").read_text())
    assert run_cfg["world_size"] == 2 and "MULTI_CPU" in run_cfg["distributed_type"]
    assert run_cfg["pairs_per_optimizer_step"] == 4
    # Process p takes pair p of each 2-pair slice: the same pairs and gradient as one process with batch 2.
    spec = importlib.util.spec_from_file_location("fi_train_dpop", REPO / "first_improvement/training/train_dpop.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main([*args, "--output_dir", str(tmp_path / "one"), "--per_device_batch_size", "2"])
    a, b = _adapter(tmp_path / "ddp"), _adapter(tmp_path / "one")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    assert max(t.abs().max().item() for n, t in a.items() if "lora_B" in n) > 1e-3  # it did train


def test_improved_and_further_scripts(tiny_model_dir, data, tmp_path):
    def load(rel, name):
        spec = importlib.util.spec_from_file_location(name, REPO / rel)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    improved = load("first_improvement/training/train_dpop_improved.py", "fi_train_dpop_improved")
    improved.main(["--model-path", str(tiny_model_dir), "--data-dir", str(data["dir"]), "--out-dir",
                   str(tmp_path / "improved"), "--epochs", "1", "--max_length", str(MAX_LENGTH),
                   "--per-device-batch-size", "4", "--grad-accum-steps", "1", "--lr", "5e-3", "--stop_after_steps", "2",
                   "--save-every-steps", "2", "--no_progress"])
    state = json.loads((tmp_path / "improved" / "checkpoints" / "step_2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    assert json.loads((tmp_path / "improved" / "run_config.json").read_text())["flags"]["prompt_format"] == "chat"

    # further_improvement: teacher-style field names for the hard file, study names for the medium one
    hard = tmp_path / "hard_fakes_vllm.jsonl"
    rows = [json.loads(x) for x in data["files"][2].read_text().splitlines()]
    hard.write_text("".join(json.dumps({"data_index": i, "question": r["prompt"], "knowledge": r["context"],
                                        "chosen": r["chosen"], "rejected": r["rejected"], "type": "logical"}) + "\n"
                            for i, r in enumerate(rows)), encoding="utf-8")
    (tmp_path / "dpo_pairs_medium.jsonl").write_text(data["files"][1].read_text(), encoding="utf-8")
    further = load("further_improvement/training/train_dpop.py", "fu_train_dpop")
    common = ["--model_path", str(tiny_model_dir), "--data_dir", str(tmp_path), "--hard_limit", "6",
              "--medium_limit", "3", "--max_length", "256", "--per_device_batch_size", "4",
              "--grad_accum_steps", "1", "--no_progress"]
    further.main([*common, "--output_dir", str(tmp_path / "mix")])
    cfg = json.loads((tmp_path / "mix" / "run_config.json").read_text())
    assert cfg["flags"]["beta"] == 0.1 and cfg["flags"]["lr"] == 2e-5 and cfg["flags"]["epochs"] == 1
    tokenized = cfg["levels"]["mix"]["tokenize"]
    assert tokenized["n_in"] == 9 and cfg["levels"]["mix"]["load"]["hard"]["n_read"] == 6
    n = tokenized["n_kept"]
    assert n >= 7 and [s["n_pairs"] for s in cfg["curriculum"]] == [n]
    assert cfg["total_optimizer_steps"] == -(-n // 4) and (tmp_path / "mix" / "adapter_model.safetensors").is_file()
    further.main([*common, "--output_dir", str(tmp_path / "cur"), "--curriculum", "--stop_after_steps", "1"])
    cfg = json.loads((tmp_path / "cur" / "run_config.json").read_text())
    m, h = (cfg["levels"][k]["tokenize"]["n_kept"] for k in ("medium", "hard"))
    assert [s["per_level"] for s in cfg["curriculum"]] == [{"medium": m, "hard": 0}, {"medium": m, "hard": h // 2},
                                                          {"medium": m, "hard": h}]
    # A teacher that produced no usable pair (the demo's tiny teacher) leaves the medium pairs to train on.
    hard.write_text("", encoding="utf-8")
    further.main([*common, "--output_dir", str(tmp_path / "nohard")])
    cfg = json.loads((tmp_path / "nohard" / "run_config.json").read_text())
    assert cfg["levels"]["mix"]["load"]["hard"]["n_read"] == 0 and cfg["levels"]["mix"]["tokenize"]["n_in"] == 3


def test_one_concatenated_forward_matches_the_straightforward_four(tiny_model_dir, data):
    """The benchmark's straightforward path and the trainer's step compute the same log-probs."""
    bench = importlib.util.spec_from_file_location("bench_train", REPO / "benchmarks/bench_train.py")
    mod = importlib.util.module_from_spec(bench)
    bench.loader.exec_module(mod)
    from peft import LoraConfig, get_peft_model

    from aligner.train.dpop_trainer import collate_pairs

    base, tok = load_causal_lm(tiny_model_dir)
    torch.manual_seed(0)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                                            task_type="CAUSAL_LM", init_lora_weights=False))  # random B: policy != ref
    enc, _ = PairTokenizer(tok, MAX_LENGTH).encode_all(data["held_out"][:3])
    ids, attn, rmask = collate_pairs(enc, tok.pad_token_id)
    policy, ref = policy_and_reference_logps(model, ids, attn, rmask)
    pc = mod.straightforward_logps(model, enc, "chosen", tok.pad_token_id, "cpu")
    pr = mod.straightforward_logps(model, enc, "rejected", tok.pad_token_id, "cpu")
    with torch.no_grad(), model.disable_adapter():
        rc = mod.straightforward_logps(model, enc, "chosen", tok.pad_token_id, "cpu")
    assert torch.allclose(policy, torch.cat([pc, pr]), atol=1e-4)
    assert torch.allclose(ref[:3], rc, atol=1e-4) and not torch.allclose(ref[:3], pc, atol=1e-2)


def test_accelerate_configs_parse():
    from accelerate.commands.config.config_args import load_config_from_file

    kinds = {"ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed_zero2": "DEEPSPEED"}
    for name, kind in kinds.items():
        cfg = load_config_from_file(str(REPO / "configs" / "accelerate" / f"{name}.yaml"))
        assert kind in str(cfg.distributed_type) and cfg.num_processes >= 2
    fsdp = load_config_from_file(str(REPO / "configs/accelerate/fsdp.yaml")).fsdp_config
    assert fsdp["fsdp_use_orig_params"] is True  # frozen base + trainable LoRA in one flat parameter
    assert load_config_from_file(str(REPO / "configs/accelerate/deepspeed_zero2.yaml")).deepspeed_config["zero_stage"] == 2


@pytest.mark.slow
def test_study_style_restart_from_a_saved_adapter(readme_run, tiny_model_dir, data, tmp_path):
    """--load-adapter-path epoch_1 --start-epoch 2 --resume-step 6: continue the saved adapter in stage 2 after
    its first 6 micro-batches, with the LR schedule where an uninterrupted run would have it."""
    cfg = DPOPTrainingConfig(model_path=str(tiny_model_dir), output_dir=str(tmp_path / "restart"), epochs=2,
                             load_adapter_path=str(readme_run / "epoch_1"), start_epoch=2, resume_step=6,
                             **{**FAST, "warmup_steps": 3})
    result = train_dpop(cfg, load_levels(data["files"]))
    log = [json.loads(x) for x in (tmp_path / "restart" / "train_log.jsonl").read_text().splitlines()]
    run_cfg = json.loads((tmp_path / "restart" / "run_config.json").read_text())
    s1, s2 = (s["optimizer_steps"] for s in run_cfg["curriculum"])
    assert [r["step"] for r in log] == list(range(s1 + 6 + 1, s1 + s2 + 1)) and result.global_step == s1 + s2
    assert {r["stage"] for r in log} == {2}
    # --schedule per_stage (the default): stage 2's own linear schedule with 3 warmup steps over its s2 steps,
    # evaluated at its 7th step (the first run here)
    assert log[0]["lr"] == pytest.approx(5e-3 * (s2 - 6) / (s2 - 3), rel=1e-9)
    # the loaded adapter is not the reference: the very first step already has non-zero rewards
    assert log[0]["rewards/chosen"] != 0.0 and log[0]["logps/chosen"] != log[0]["logps/ref_chosen"]
