"""Training checkpoints: ``OUTPUT/checkpoints/step_<N>/`` with the adapter, the optimizer, the LR scheduler,
every process's RNG states and the data position; saved whole-or-not-at-all (written to ``step_<N>.tmp`` and
renamed), the newest ``save_total_limit`` kept.  A checkpoint is resumed only by a run with the same plan
(data, batch size, gradient accumulation, process count)."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from aligner.core.io import read_json, write_json_atomic

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "trainer_state.json"


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
        acc = self.acc
        state = acc.get_state_dict(model)  # collective under FSDP / DeepSpeed ZeRO-3
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
        acc.save_state(str(tmp))
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
            if k != "total_steps" and saved.get(k) != v:
                raise RuntimeError(f"cannot resume from {ckpt}: it was made with {k}={saved.get(k)}, this run has {v} "
                                   "(same data, batch size, grad accumulation and process count are needed)")
        self.acc.load_state(str(ckpt))
        if self.acc.distributed_type not in (DistributedType.FSDP, DistributedType.DEEPSPEED):
            weights = load_file(str(ckpt / "adapter_model.safetensors"))
            result = set_peft_model_state_dict(self.acc.unwrap_model(model), weights)
            missing = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
            if missing:
                raise RuntimeError(f"adapter weights in {ckpt} do not match the model: {missing[:3]}")
        logger.info("resumed from %s (global step %d, stage %d, step %d of the stage)", ckpt, state.global_step,
                    state.stage, state.step_in_stage)

    def discard_all(self) -> None:
        if self.acc.is_main_process and self.root.is_dir():
            logger.warning("removing checkpoints of an earlier run in %s (pass --resume to continue it)", self.root)
            shutil.rmtree(self.root)
        self.acc.wait_for_everyone()
