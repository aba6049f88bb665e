"""Every loss of the registry trains through the same trainer (issue 22 item 3): a short run per loss on the tiny
model whose first logged loss is the loss's value at zero log-ratios (step 1 of a LoRA run: B = 0, the policy is
the reference): ln 2 for dpop and sigmoid, 1 / (4 beta^2) for ipo, 1 for hinge and apo_zero; SimPO's, which has no
reference, is its formula on the base model's log-probs computed plainly.  SimPO runs no reference forward; the
curriculum, checkpoints and resume work the same for a loss other than the default."""

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import halueval_rows, write_level_files
from safetensors.torch import load_file

from aligner.core.cli import ErrorExit, run_cli
from aligner.core.models import load_causal_lm
from aligner.train.config import PreferenceTrainingConfig
from aligner.train.losses import LOSS_NAMES
from aligner.train.preference import load_levels
from aligner.train.trainer import LogWindow, PreferenceTrainer, train_preference

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BETA = 0.3


@pytest.fixture(scope="module")
def levels_files(halueval_file, tmp_path_factory):
    return write_level_files(halueval_rows(halueval_file, 12), tmp_path_factory.mktemp("loss_pairs"),
                             ("easy", "medium"), 6)


def _cfg(model_dir, out, **kw):
    return PreferenceTrainingConfig(**{**dict(
        model_path=str(model_dir), output_dir=str(out), epochs=2, lr=5e-3, warmup_steps=0, max_length=128, beta=BETA,
        per_device_batch_size=2, grad_accum_steps=1, lora_dropout=0.0, logging_steps=1, device="cpu", progress=False,
        save_every_steps=0, simpo_gamma=0.5), **kw})


def _log(out):
    return [json.loads(x) for x in (Path(out) / "train_log.jsonl").read_text().splitlines()]


def _plain_simpo(model, pairs, beta, gamma):
    """SimPO's loss of a batch, the log-probs computed one sequence at a time with a full log-softmax."""
    def avg(enc):
        ids = torch.tensor([enc.input_ids])
        lp = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)[0]
        return sum(lp[t - 1, enc.input_ids[t]].item() for t in range(enc.response_start, len(enc.input_ids))) / enc.n_response

    values = [-math.log(1 / (1 + math.exp(-(beta * (avg(p.chosen) - avg(p.rejected)) - gamma)))) for p in pairs]
    return sum(values) / len(values)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_each_loss_trains_and_starts_at_its_zero_log_ratio_value(name, tiny_model_dir, levels_files, tmp_path):
    trainer = PreferenceTrainer(_cfg(tiny_model_dir, tmp_path / name, loss=name), load_levels(levels_files))
    result = trainer.train()
    log = _log(tmp_path / name)
    assert result.completed and [r["stage"] for r in log] == [1, 1, 1, 2, 2, 2, 2, 2]  # 6 pairs; 6 + 3 (wrapped)
    if name == "simpo":
        base, _ = load_causal_lm(tiny_model_dir)
        step1 = [trainer.tokenized[lv][i] for lv, i in trainer.plan.step_pairs(1, 0)]
        with torch.no_grad():
            want = _plain_simpo(base, step1, BETA, 0.5)
        assert log[0]["loss"] == pytest.approx(want, rel=1e-5)
        assert not any(k.startswith("logps/ref") for k in log[0])
        run_cfg = json.loads((tmp_path / name / "run_config.json").read_text())
        assert "reference-free" in run_cfg["reference"]["none"]
    else:
        want = {"dpop": math.log(2), "sigmoid": math.log(2), "ipo": 1 / (4 * BETA ** 2), "hinge": 1.0,
                "apo_zero": 1.0}[name]
        assert log[0]["loss"] == pytest.approx(want, rel=1e-6)
        assert log[0]["rewards/margins"] == 0.0
    own = {"dpop": "loss/positive", "apo_zero": "loss/apo_chosen"}.get(name, f"loss/{name}")
    assert all(own in r and "loss/nll" in r and "grad_norm" in r for r in log)
    assert log[-1]["loss"] != log[0]["loss"]
    adapter = load_file(str(tmp_path / name / "adapter_model.safetensors"))
    assert max(t.abs().max().item() for k, t in adapter.items() if "lora_B" in k) > 1e-4  # it trained
    assert (tmp_path / name / "epoch_1" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("layout", ["packed", "padded"])
def test_simpo_runs_no_reference_forward(layout, tiny_model_dir, levels_files, tmp_path):
    """Forwards of the model in one optimizer step of one micro-batch: 2 (reference, policy) for dpop, 1 for simpo."""
    counts = {}
    for name in ("dpop", "simpo"):
        trainer = PreferenceTrainer(_cfg(tiny_model_dir, tmp_path / f"{name}_{layout}", loss=name, layout=layout),
                                    load_levels(levels_files))
        trainer._setup()
        trainer.window, trainer.steps_this_run = LogWindow(), 0
        calls = []
        hook = trainer.model.get_base_model().register_forward_pre_hook(lambda *a, calls=calls: calls.append(1))
        trainer._optimizer_step(1)
        hook.remove()
        counts[name] = len(calls)
    assert counts == {"dpop": 2, "simpo": 1}


def _interrupted(cfg, levels) -> str:
    """The line a Ctrl-C prints after the run of ``cfg`` (stopped by ``stop_after_steps``)."""
    def run():
        assert not train_preference(cfg, levels).completed
        raise KeyboardInterrupt

    with pytest.raises(ErrorExit) as exit_:
        run_cli(run)
    return str(exit_.value)


def test_resume_gives_the_same_adapter_for_another_loss(tiny_model_dir, levels_files, tmp_path):
    """--loss ipo, packed: interrupted after 4 of 8 steps and resumed from the step-3 checkpoint (twice: the first
    resumed run is interrupted again before its next checkpoint), the adapter equals an uninterrupted run's; the
    Ctrl-C line names the checkpoint a --resume continues from; a checkpoint of another loss is refused."""
    levels = load_levels(levels_files)
    common = dict(loss="ipo", save_every_steps=3, lora_dropout=0.05)
    train_preference(_cfg(tiny_model_dir, tmp_path / "full", **common), levels)
    step_3 = tmp_path / "cut" / "checkpoints" / "step_3"
    line = f"interrupted; --resume continues from checkpoint {step_3} (optimizer step 3 of 8)"
    assert _interrupted(_cfg(tiny_model_dir, tmp_path / "cut", stop_after_steps=4, **common), levels) == line
    with pytest.raises(RuntimeError, match="loss=ipo, this run has hinge"):
        train_preference(_cfg(tiny_model_dir, tmp_path / "cut", resume=True, **{**common, "loss": "hinge"}), levels)
    # resumed, then interrupted after step 4, before the step-6 checkpoint: still step 3's
    assert _interrupted(_cfg(tiny_model_dir, tmp_path / "cut", resume=True, stop_after_steps=1, **common),
                        levels) == line
    train_preference(_cfg(tiny_model_dir, tmp_path / "cut", resume=True, **common), levels)
    a, b = (load_file(str(tmp_path / n / "adapter_model.safetensors")) for n in ("full", "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in _log(tmp_path / "cut")] == [r["loss"] for r in _log(tmp_path / "full")]
