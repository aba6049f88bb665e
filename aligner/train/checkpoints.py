"""Training checkpoints: ``OUTPUT/checkpoints/step_<N>/`` with the adapter, the optimizer, the LR scheduler,
every process's RNG states and the data position; saved whole-or-not-at-all (written to ``step_<N>.tmp`` and
renamed), the newest ``save_total_limit`` kept.  A checkpoint is resumed only by a run with the same plan
(data, batch size, gradient accumulation, process count).

An output folder that holds an earlier run (checkpoints, ``epoch_<k>/`` or a final adapter) is never written over
silently: a new run there is refused unless it resumes (``--resume``), continues the study's way
(``--start-epoch`` / ``--resume-step``), or is told to start afresh (``--overwrite_output_dir``, which removes the
earlier run's checkpoints, stage adapters, final adapter and log)."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from aligner.core.io import AlignerError, read_json, write_json_atomic
from aligner.train.accel import adapter_save_needs_gather, checkpoint_kwargs

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "trainer_state.json"
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin", "adapter_config.json")
LOG_FILE = "train_log.jsonl"
#: signature entries a checkpoint written before they existed holds implicitly (DPOP was the only loss)
SIGNATURE_BEFORE = {"loss": "dpop"}


class OutputDirError(AlignerError, RuntimeError):
    pass


def previous_run(output_dir: str | os.PathLike) -> list[str]:
    """What an earlier training run left in ``output_dir``: checkpoints, stage adapters, the final adapter."""
    out = Path(output_dir)
    found = []
    ckpts = sorted((out / CHECKPOINT_DIR).glob("step_*")) if (out / CHECKPOINT_DIR).is_dir() else []
    if ckpts:
        found.append(f"{len(ckpts)} checkpoint(s) in {CHECKPOINT_DIR}/")
    stages = sorted(p.name for p in out.glob("epoch_*") if p.is_dir() and any((p / f).is_file() for f in ADAPTER_FILES))
    if stages:
        found.append(", ".join(stages))
    if any((out / f).is_file() for f in ADAPTER_FILES):
        found.append("a final adapter")
    return found


def check_output_dir(output_dir: str | os.PathLike, resume: bool, overwrite: bool, continuing: bool,
                     is_main_process: bool = True) -> None:
    """Refuse to start a run over an earlier one (see the module docstring); with ``overwrite`` remove the earlier
    run (main process only).  ``continuing``: the study's --start-epoch / --resume-step restart."""
    out = Path(output_dir)
    found = previous_run(out)
    if not found:
        return
    if overwrite:
        if is_main_process:
            logger.warning("--overwrite_output_dir: removing the earlier run in %s (%s)", out, "; ".join(found))
            shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
            for p in out.glob("epoch_*"):
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
            for name in (*ADAPTER_FILES, LOG_FILE):
                (out / name).unlink(missing_ok=True)
        return
    if continuing:
        return
    has_checkpoint = any((p / STATE_FILE).is_file() for p in (out / CHECKPOINT_DIR).glob("step_*"))
    if resume and has_checkpoint:
        return
    what = "; ".join(found)
    if resume:
        raise OutputDirError(f"--resume: {out} holds an earlier run ({what}) but no complete checkpoint to resume "
                             "from; pass --overwrite_output_dir to start afresh there, or another --output_dir")
    raise OutputDirError(f"{out} holds an earlier run ({what}); pass --resume to continue it, --overwrite_output_dir "
                         "to start afresh there, or another --output_dir")


@dataclass
class TrainState:
    """The data position, saved with every checkpoint (registered with ``accelerator.register_for_checkpointing``)."""
    global_step: int = 0
    stage: int = 1
    step_in_stage: int = 0
    pairs_seen: int = 0

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, int(v))


class CheckpointManager:
    """Saves and restores the checkpoints of one output folder through an ``accelerate.Accelerator``."""

    def __init__(self, acc, output_dir: Path, save_total_limit: int = 2):
        self.acc = acc
        self.root = Path(output_dir) / CHECKPOINT_DIR
        self.save_total_limit = save_total_limit

    def register(self, scheduler, state: TrainState) -> None:
        """Let ``save_state`` / ``load_state`` carry the scheduler and the data position, never the frozen base
        weights (the adapter is written separately)."""
        def save_hook(models, weights, output_dir):
            weights.clear()

        def load_hook(models, input_dir):
            models.clear()

        self.acc.register_save_state_pre_hook(save_hook)
        self.acc.register_load_state_pre_hook(load_hook)
        self.acc.register_for_checkpointing(scheduler, state)

    def save_adapter(self, model, path: Path, tokenizer=None) -> None:
        """The adapter (safetensors + config) by the main process.  Only under FSDP and ZeRO-3 are the weights
        gathered first (a collective, every process calls it); elsewhere PEFT reads the adapter tensors from the
        module (views, no copy of the frozen base)."""
        acc = self.acc
        state = acc.get_state_dict(model) if adapter_save_needs_gather(acc) else None
        if acc.is_main_process:
            path.mkdir(parents=True, exist_ok=True)
            acc.unwrap_model(model).save_pretrained(str(path), state_dict=state, safe_serialization=True)
            if tokenizer is not None:
                tokenizer.save_pretrained(str(path))
        acc.wait_for_everyone()

    def complete(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        done = [p for p in self.root.glob("step_*")
                if p.is_dir() and p.name[5:].isdigit() and (p / STATE_FILE).is_file()]
        return sorted(done, key=lambda p: int(p.name[5:]))

    def save(self, model, state: TrainState, signature: dict) -> Path:
        acc = self.acc
        final = self.root / f"step_{state.global_step}"
        tmp = self.root / f"step_{state.global_step}.tmp"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp), **checkpoint_kwargs(acc)[0])
        self.save_adapter(model, tmp)
        if acc.is_main_process:
            write_json_atomic(tmp / STATE_FILE, {**state.state_dict(), **signature})
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)  # a checkpoint exists only once complete
            if self.save_total_limit > 0:
                for old in self.complete()[: -self.save_total_limit]:
                    shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()
        return final

    def load(self, ckpt: Path, model, state: TrainState, signature: dict) -> None:
        from accelerate.utils import DistributedType
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        saved = read_json(ckpt / STATE_FILE)
        for k, v in signature.items():
            if k != "total_steps" and saved.get(k, SIGNATURE_BEFORE.get(k)) != v:
                raise RuntimeError(f"cannot resume from {ckpt}: it was made with {k}={saved.get(k)}, this run has {v} "
                                   "(same data, loss, batch size, grad accumulation and process count are needed)")
        self.acc.load_state(str(ckpt), **checkpoint_kwargs(self.acc)[1])
        if self.acc.distributed_type not in (DistributedType.FSDP, DistributedType.DEEPSPEED):
            weights = load_file(str(ckpt / "adapter_model.safetensors"))
            result = set_peft_model_state_dict(self.acc.unwrap_model(model), weights)
            missing = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
            if missing:
                raise RuntimeError(f"adapter weights in {ckpt} do not match the model: {missing[:3]}")
        logger.info("resumed from %s (global step %d, stage %d, step %d of the stage)", ckpt, state.global_step,
                    state.stage, state.step_in_stage)
