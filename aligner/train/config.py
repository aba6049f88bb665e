"""The settings of a DPOP training run: one dataclass, every field declared once with its default, help
text and command-line spellings (the training scripts' parsers are generated from it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aligner.train.curriculum import DEFAULT_FRACTIONS


@dataclass
class DPOPTrainingConfig:
    model_path: str
    output_dir: str
    # loss
    beta: float = 0.3
    lam: float = 50.0
    # optimisation
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 100
    lr_scheduler: str = "linear"
    max_grad_norm: float = 1.0
    per_device_batch_size: int = 1
    grad_accum_steps: int = 8
    # curriculum
    epochs: int = 4
    stage_fractions: Sequence[float] = DEFAULT_FRACTIONS
    seed: int = 42
    # data
    max_length: int = 1024
    prompt_format: str = "plain"
    append_eos: bool | None = None  # None: EOS for the chat format only
    # LoRA
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: Sequence[str] = ("q_proj", "v_proj")
    load_adapter_path: str | None = None
    start_epoch: int = 1
    resume_step: int = 0           # the study's unit: micro-batches of the start stage already trained
    # checkpoints and logging
    save_every_steps: int = 2000
    save_total_limit: int = 2
    logging_steps: int = 1
    resume: bool = False
    stop_after_steps: int | None = None  # stop (as if interrupted) after this many optimizer steps
    # reference
    precompute_ref: bool = False
    ref_batch_size: int = 8
    # devices
    device: str = "auto"
    dtype: str = "auto"
    mixed_precision: str = "auto"
    gradient_checkpointing: bool = False
    progress: bool = True
