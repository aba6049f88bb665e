"""The settings of a DPOP training run: one dataclass, every field declared once with its default, help
text and command-line spellings (the training scripts' parsers are generated from it by
``aligner.core.cli``; each script overrides only the defaults of its recipe).

The defaults are the study's first recipe (``first_improvement/training/train_dpop.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from aligner.core.paths import PAIR_FILES, TEACHER_PAIRS_FILE, pair_file
from aligner.lm.settings import ChatSettings
from aligner.train.curriculum import DEFAULT_FRACTIONS, parse_fractions

PROMPT_FORMATS = ("plain", "chat")


def _g(group: str, help: str, **more) -> dict:
    return {"help": help, "group": group, **more}


@dataclass(kw_only=True)
class DPOPTrainingConfig(ChatSettings):
    model_path: str = field(metadata={"help": "base model folder or hub id", "aliases": ["--model-path"]})
    output_dir: str = field(metadata={
        "help": "where epoch_<k>/, checkpoints/, the final adapter and train_log.jsonl go",
        "aliases": ["--out-dir", "--out_dir"]})
    # loss
    beta: float = field(default=0.3, metadata=_g("DPOP loss", "DPO temperature beta"))
    lam: float = field(default=50.0, metadata=_g("DPOP loss", "DPOP positive-term weight lambda; 0 = plain DPO",
                                                  aliases=["--lambda"]))
    # optimisation
    lr: float = field(default=2e-4, metadata=_g("optimisation", "peak learning rate", aliases=["--learning_rate"]))
    weight_decay: float = field(default=0.0, metadata=_g("optimisation", "AdamW weight decay"))
    warmup_steps: int = field(default=100, metadata=_g(
        "optimisation", "LR warmup in optimizer steps, counted once over the whole run", aliases=["--warmup-steps"]))
    lr_scheduler: str = field(default="linear", metadata=_g(
        "optimisation", "transformers scheduler name: linear, cosine, constant_with_warmup, ..."))
    max_grad_norm: float = field(default=1.0, metadata=_g("optimisation", "gradient clipping; 0 disables"))
    per_device_batch_size: int = field(default=1, metadata=_g(
        "optimisation", "pairs per process per micro-batch", aliases=["--per-device-batch-size"]))
    grad_accum_steps: int = field(default=8, metadata=_g(
        "optimisation", "micro-batches per optimizer step", aliases=["--grad-accum-steps", "--grad_accum"]))
    seed: int = field(default=42, metadata=_g("optimisation", "seed for LoRA init, shuffles and dropout"))
    # curriculum and data
    epochs: int | None = field(default=4, metadata=_g(
        "curriculum and data", "run the first K curriculum stages (none: every stage)"))
    stage_fractions: Sequence[float] = field(default=DEFAULT_FRACTIONS, metadata=_g(
        "curriculum and data", "fraction of each level used from the stage that introduces it", sep=",",
        parse=float))
    max_length: int = field(default=1024, metadata=_g(
        "curriculum and data", "max prompt+response tokens; the context is truncated to fit, never the response"))
    prompt_format: str = field(default="plain", metadata=_g(
        "curriculum and data", "plain context+question prompts, or the chat template with EOS-terminated "
                               "responses", choices=list(PROMPT_FORMATS)))
    append_eos: bool | None = field(default=None, metadata={"cli": False})  # None: EOS for the chat format only
    # LoRA
    lora_r: int = field(default=16, metadata=_g("LoRA", "LoRA rank"))
    lora_alpha: int = field(default=32, metadata=_g("LoRA", "LoRA scaling alpha"))
    lora_dropout: float = field(default=0.05, metadata=_g("LoRA", "dropout on the LoRA input"))
    lora_target_modules: Sequence[str] = field(default=("q_proj", "v_proj"), metadata=_g(
        "LoRA", "comma-separated module names", sep=","))
    load_adapter_path: str | None = field(default=None, metadata=_g(
        "LoRA", "continue training this saved adapter (the reference stays the base model)",
        aliases=["--load-adapter-path"]))
    start_epoch: int = field(default=1, metadata=_g(
        "LoRA", "curriculum stage to start at, with --load-adapter-path", aliases=["--start-epoch"]))
    resume_step: int = field(default=0, metadata=_g(
        "LoRA", "micro-batches of the start stage already trained (study's unit; rounded down to whole optimizer "
                "steps)", aliases=["--resume-step"]))
    # checkpoints, logging, reference
    save_every_steps: int = field(default=2000, metadata=_g(
        "checkpoints, logging, reference", "checkpoint every N optimizer steps; 0 = never",
        aliases=["--save-every-steps"]))
    save_total_limit: int = field(default=2, metadata=_g(
        "checkpoints, logging, reference", "checkpoints kept (newest); 0 keeps all"))
    logging_steps: int = field(default=1, metadata=_g(
        "checkpoints, logging, reference", "one train_log.jsonl line per N optimizer steps"))
    resume: bool = field(default=False, metadata=_g(
        "checkpoints, logging, reference", "continue from the newest checkpoint in OUTPUT/checkpoints"))
    stop_after_steps: int | None = field(default=None, metadata=_g(
        "checkpoints, logging, reference", "stop after N optimizer steps of this run without final save, as if "
                                           "interrupted; for smoke tests (default: none)"))
    precompute_ref: bool = field(default=False, metadata=_g(
        "checkpoints, logging, reference", "compute reference log-probs once per dataset and cache them next to "
                                           "the data"))
    ref_batch_size: int = field(default=8, metadata=_g(
        "checkpoints, logging, reference", "batch size of the reference precompute"))
    # devices
    device: str = field(default="auto", metadata=_g(
        "devices", "auto = CUDA when available; `accelerate launch` picks the GPU per process",
        choices=["auto", "cpu", "cuda"]))
    dtype: str = field(default="auto", metadata=_g(
        "devices", "base weights dtype: auto (bf16 on CUDA, fp32 on CPU), fp32, bf16, fp16"))
    mixed_precision: str = field(default="auto", metadata=_g(
        "devices", "autocast: auto = bf16 (fp16 without bf16 support) on CUDA, none on CPU, or what `accelerate "
                   "launch` sets", choices=["auto", "no", "bf16", "fp16"]))
    gradient_checkpointing: bool = field(default=False, metadata=_g("devices", "trade compute for memory"))
    progress: bool = field(default=True, metadata=_g("devices", "no tqdm bars (default: bars on)",
                                                      flag="--no_progress"))

    def __post_init__(self):
        self.stage_fractions = parse_fractions(self.stage_fractions)
        modules = self.lora_target_modules
        modules = modules.split(",") if isinstance(modules, str) else modules
        self.lora_target_modules = [m.strip() for m in modules if m.strip()]
        if self.prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt_format must be one of {PROMPT_FORMATS}, not {self.prompt_format!r}")


@dataclass(kw_only=True)
class CurriculumData:
    """The best-model recipe's data: difficulty levels easiest first."""

    data_files: str | None = field(default=None, metadata={
        "help": "comma-separated pair files, easiest level first (default: none; see --data_dir)"})
    data_dir: str | None = field(default=None, metadata={
        "help": f"folder holding {', '.join(PAIR_FILES)} (default: none)", "aliases": ["--data-dir"]})
    skip_invalid: bool = field(default=False, metadata={
        "help": "skip (and count) malformed pair lines instead of stopping with file:line"})


@dataclass(kw_only=True)
class LatestRecipeData:
    """The latest recipe's data: teacher-guided hard pairs mixed with medium pairs (or a two-level curriculum)."""

    data_dir: str = field(default="final_data", metadata={
        "help": f"folder holding {TEACHER_PAIRS_FILE} and {pair_file('medium')}", "aliases": ["--data-dir"]})
    hard_file: str | None = field(default=None, metadata={
        "help": f"teacher-guided hard pairs (default: DATA_DIR/{TEACHER_PAIRS_FILE})"})
    medium_file: str | None = field(default=None, metadata={
        "help": f"medium pairs (default: DATA_DIR/{pair_file('medium')})"})
    hard_limit: int = field(default=6000, metadata={"help": "first N hard pairs used"})
    medium_limit: int = field(default=600, metadata={"help": "first N medium pairs used"})
    mix_seed: int = field(default=42, metadata={"help": "seed of the hard+medium mix shuffle"})
    curriculum: bool = field(default=False, metadata={
        "help": "medium then hard as curriculum levels instead of one mixed stage; --epochs then defaults to every "
                "stage (default: off)"})
    skip_invalid: bool = field(default=False, metadata={
        "help": "skip (and count) malformed pair lines instead of stopping with file:line"})
