"""The settings of a preference training run (DPOP by default): one dataclass, every field declared once with its
default, help text and command-line spellings (the training scripts' parsers are generated from it by
``aligner.core.cli``; each script overrides only the defaults of its recipe).

The dataclass defaults are the study's first recipe (``first_improvement/training/train_dpop.py``);
``RECIPE_DEFAULTS`` holds what each of the three training scripts sets beside them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from aligner.core.fidelity import StudyCompat
from aligner.core.paths import PAIR_FILES, PUBLISHED_TEACHER_PAIRS_FILE, TEACHER_PAIRS_FILE, pair_file
from aligner.lm.settings import ChatSettings
from aligner.prompts import DPO_IMPROVED_SYSTEM, DPO_LATEST_SYSTEM, PLAIN_DPO_FORMATS
from aligner.train.curriculum import CURRICULUM_ORDERS, DEFAULT_FRACTIONS, LEFTOVER_MODES, parse_fractions
from aligner.train.losses import LOSS_NAMES, LOSSES
from aligner.train.pair_tokens import TRUNCATION_MODES as TRUNCATIONS

PROMPT_FORMATS = ("plain", "chat")
SCHEDULES = ("per_stage", "global")
RECIPES = ("first", "improved", "latest")
REPORT_TO = ("none", "tensorboard", "wandb")
LAYOUTS = ("packed", "padded")
#: --context_fields: any spelling (the first non-empty), or the rule of the recipe's study script
CONTEXT_FIELDS = ("any", "study")
#: what --truncation study means per recipe: the first and improved scripts cut whole sequences from the right at
#: max_length; the latest one first cuts the context to a token budget, then cuts from the right
STUDY_TRUNCATION = {"first": "right", "improved": "right", "latest": "budget"}


def _g(group: str, help: str, **more) -> dict:
    return {"help": help, "group": group, **more}


@dataclass(kw_only=True)
class PreferenceTrainingConfig(ChatSettings, StudyCompat):
    model_path: str = field(metadata={"help": "base model folder or hub id", "aliases": ["--model-path"]})
    output_dir: str = field(metadata={
        "help": "where epoch_<k>/, checkpoints/, the final adapter and train_log.jsonl go",
        "aliases": ["--out-dir", "--out_dir"]})
    # loss
    loss: str = field(default="dpop", metadata=_g(
        "loss", "the preference loss (aligner.train.losses): " + "; ".join(f"{n} = {s.summary}" for n, s in
                                                                           LOSSES.items()) + " (default: dpop, the study's)",
        choices=list(LOSS_NAMES)))
    beta: float = field(default=0.3, metadata=_g("loss", "temperature beta of every loss (ipo: its tau)"))
    lam: float = field(default=50.0, metadata=_g("loss", "dpop: positive-term weight lambda (0 = plain DPO)",
                                                  aliases=["--lambda"]))
    rpo_alpha: float = field(default=0.0, metadata=_g(
        "loss", "any loss: add A x the per-token NLL of the chosen answers (pooled over the micro-batch, as TRL) to "
                "the loss: RPO / 'DPO + NLL' (Pang et al. 2024); logged as loss/nll; 0 = off, the study"))
    logit_clamp: float | None = field(default=None, metadata=_g(
        "loss", "dpop and sigmoid: clamp beta*Delta to [-C, C] inside the log-sigmoid (the study's latest recipe: "
                "50); none = no clamp", aliases=["--clamp_logits"]))
    simpo_gamma: float = field(default=0.5, metadata=_g(
        "loss", "simpo: target reward margin gamma (TRL's CPOConfig default)"))
    # batch layout
    layout: str = field(default="packed", metadata=_g(
        "batch layout", "packed: each pair's prompt computed once with both answers attending to it, pairs packed into "
                        "rows without padding (block 4-D attention mask, SDPA or eager); padded: chosen and rejected "
                        "as 2B right-padded rows (the earlier layout); the log-probs agree to float rounding",
        choices=list(LAYOUTS)))
    max_tokens_per_batch: int | None = field(default=None, metadata=_g(
        "batch layout", "packed: most tokens (rows x width) in one forward; an optimizer step still holds "
                        "per_device_batch_size x processes x grad_accum_steps pairs, cut into as many forwards as this "
                        "needs (default: 2 x per_device_batch_size x max_length, the most a padded micro-batch holds)"))
    # optimisation
    lr: float = field(default=2e-4, metadata=_g("optimisation", "peak learning rate", aliases=["--learning_rate"]))
    weight_decay: float = field(default=0.01, metadata=_g(
        "optimisation", "AdamW weight decay (the study's: torch's default 0.01)"))
    warmup_steps: int = field(default=100, metadata=_g(
        "optimisation", "LR warmup in optimizer steps (per stage with --schedule per_stage, else once over the run)",
        aliases=["--warmup-steps"]))
    schedule: str = field(default="per_stage", metadata=_g(
        "optimisation", "per_stage: a new AdamW and a new warmup + decay schedule for every curriculum stage, over "
                        "that stage's steps (the study's runnable first recipe); global: one optimizer and one "
                        "schedule over the whole run", choices=list(SCHEDULES)))
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
        "curriculum and data", "run the first K curriculum stages (none: every stage; the study's name, --epochs)",
        aliases=["--stages"]))
    curriculum_order: str = field(default="staged", metadata=_g(
        "curriculum and data", "staged: the curriculum, stage after stage (the study's); shuffled: the ablation, one "
                               "stage holding every pair visit of the --epochs stages (the same pairs, as often) in "
                               "one seeded shuffled order", choices=list(CURRICULUM_ORDERS)))
    stage_fractions: Sequence[float] = field(default=DEFAULT_FRACTIONS, metadata=_g(
        "curriculum and data", "fraction of each level used from the stage that introduces it", sep=",",
        parse=float))
    max_length: int = field(default=1024, metadata=_g(
        "curriculum and data", "max prompt+response tokens; the context is truncated to fit, never the response"))
    prompt_format: str = field(default="plain", metadata=_g(
        "curriculum and data", "plain context+question prompts, or the chat template with EOS-terminated "
                               "responses", choices=list(PROMPT_FORMATS)))
    append_eos: bool | None = field(default=None, metadata={"cli": False})  # None: EOS for the chat format only
    system_prompt: str | None = field(default=None, metadata=_g(
        "curriculum and data", "system prompt of the chat format (default: none = the recipe's: the improved recipe's "
                               "'You are a helpful AI assistant...', the latest recipe's 'You are a careful and honest "
                               "assistant...')"))
    # fidelity: None = follow --study_compat (the study's behaviour with it, the corrected one without)
    recipe: str = field(default="first", metadata={"cli": False})  # which study script these defaults reproduce
    leftover: str | None = field(default=None, metadata=_g(
        "fidelity", "the last, partial optimizer step of a stage: wrap = filled with the stage's first pairs; drop = "
                    "not trained (the study: its gradient is discarded, or in the latest recipe applied at lr 0) "
                    "(default: wrap; drop with --study_compat)", choices=list(LEFTOVER_MODES)))
    plain_prompt: str | None = field(default=None, metadata=_g(
        "fidelity", "plain format: separated = 'context\\n\\nquestion\\n' + answer; raw = context + question + answer "
                    "glued unstripped, as the study (default: separated; raw with --study_compat)",
        choices=list(PLAIN_DPO_FORMATS)))
    score_last_prompt_token: bool | None = field(default=None, metadata=_g(
        "fidelity", "also score the last prompt token, the study's off-by-one; unset: on with --study_compat, else off",
        boolean_optional=True))
    double_bos: bool | None = field(default=None, metadata=_g(
        "fidelity", "tokenize chat prompts with special tokens although the template already wrote BOS, giving two "
                    "BOS as the study; unset: on with --study_compat, else off", boolean_optional=True))
    truncation: str | None = field(default=None, metadata=_g(
        "fidelity", "over-long pairs: context = cut the context, never a response; right = cut the whole sequence "
                    "at --max_length from the right (the study's first and improved recipes: responses and EOS are "
                    "lost); budget = the latest recipe's context budget (the cut context decoded and cleaned up "
                    "as transformers 4 did) then right cut (default: context; the recipe's with --study_compat)",
        choices=list(TRUNCATIONS)))
    keep_identical: bool | None = field(default=None, metadata=_g(
        "fidelity", "keep pairs whose chosen and rejected answers are identical, as the study; unset: kept with "
                    "--study_compat, else dropped and counted", boolean_optional=True))
    keep_empty_fields: bool | None = field(default=None, metadata=_g(
        "fidelity", "keep pairs with an empty or missing prompt, chosen or rejected answer (missing = \"\"; an empty "
                    "answer of the chat format is its EOS alone), counted, as the study; unset: kept with "
                    "--study_compat, else a one-line error naming the file and line", boolean_optional=True))
    context_fields: str | None = field(default=None, metadata=_g(
        "fidelity", "where a pair's context is read: any = the first non-empty of context, knowledge, contexts; "
                    "study = the recipe's script's rule: first and improved read only 'context', the latest reads "
                    "'knowledge' only when the record has no 'context' key (default: any; study with "
                    "--study_compat)", choices=list(CONTEXT_FIELDS)))
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
        "LoRA", "curriculum stage to start at, with --load-adapter-path", aliases=["--start-epoch", "--start_stage"]))
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
        "checkpoints, logging, reference", "compute the reference log-probs once, in the training batch layout "
                                           "(sharded across processes), and cache them next to the data"))
    # -- train_scale block: output folder safety --
    overwrite_output_dir: bool = field(default=False, metadata=_g(
        "checkpoints, logging, reference", "start afresh in an output_dir that holds an earlier run (its "
                                           "checkpoints, epoch_<k>/ and final adapter are removed); without it "
                                           "such a folder is refused unless --resume"))
    # -- end train_scale block --
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
    report_to: str = field(default="none", metadata=_g(
        "checkpoints, logging, reference", "also send the train_log.jsonl metrics to an experiment tracker through "
                                           "accelerate: tensorboard (event files in OUTPUT/runs/) or wandb",
        choices=list(REPORT_TO)))
    progress: bool = field(default=True, metadata=_g("devices", "no tqdm bars (default: bars on)",
                                                      flag="--no_progress"))

    def __post_init__(self):
        self.stage_fractions = parse_fractions(self.stage_fractions)
        modules = self.lora_target_modules
        modules = modules.split(",") if isinstance(modules, str) else modules
        self.lora_target_modules = [m.strip() for m in modules if m.strip()]
        if self.prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt_format must be one of {PROMPT_FORMATS}, not {self.prompt_format!r}")
        for name, allowed in (("loss", LOSS_NAMES), ("layout", LAYOUTS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"--{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")
        if self.max_tokens_per_batch is not None and self.max_tokens_per_batch < 1:
            raise ValueError(f"--max_tokens_per_batch must be >= 1, got {self.max_tokens_per_batch}")
        self._resolve_fidelity()

    def _resolve_fidelity(self) -> None:
        """Fill the fidelity settings left unset from --study_compat (and the recipe), so run_config.json records
        what ran."""
        for name, allowed in (("schedule", SCHEDULES), ("recipe", RECIPES), ("report_to", REPORT_TO)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, not {getattr(self, name)!r}")
        compat = bool(self.study_compat)
        if self.leftover is None:
            self.leftover = "drop" if compat else "wrap"
        if self.plain_prompt is None:
            self.plain_prompt = "raw" if compat else "separated"
        for name in ("score_last_prompt_token", "double_bos", "keep_identical", "keep_empty_fields"):
            if getattr(self, name) is None:
                setattr(self, name, compat)
        if self.context_fields is None:
            self.context_fields = "study" if compat else "any"
        if self.truncation is None:
            self.truncation = STUDY_TRUNCATION[self.recipe] if compat else "context"
        for name, allowed in (("leftover", LEFTOVER_MODES), ("plain_prompt", PLAIN_DPO_FORMATS),
                              ("truncation", TRUNCATIONS), ("context_fields", CONTEXT_FIELDS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, not {getattr(self, name)!r}")
        if self.logit_clamp is not None and self.logit_clamp <= 0:
            self.logit_clamp = None  # --logit_clamp 0: no clamp


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
        "help": f"teacher-guided hard pairs (default: DATA_DIR/{TEACHER_PAIRS_FILE}, else the published "
                f"DATA_DIR/{PUBLISHED_TEACHER_PAIRS_FILE})"})
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


_POLICY = "models/llama3-2-3b-instruct"
#: each training script's recipe: the settings its parser defaults to where they differ from the dataclass's
RECIPE_DEFAULTS = {
    "first": dict(model_path=_POLICY, output_dir="outputs/first_improvement/dpop", save_every_steps=250,
                  logging_steps=10, recipe="first"),
    "improved": dict(model_path=_POLICY, output_dir="outputs/first_improvement/dpop_improved", save_every_steps=250,
                     logging_steps=10, prompt_format="chat", schedule="global", system_prompt=DPO_IMPROVED_SYSTEM,
                     recipe="improved"),
    "latest": dict(model_path=_POLICY, output_dir="outputs/further_improvement/dpop", beta=0.1, lam=1.0, lr=2e-5,
                   warmup_steps=50, lr_scheduler="cosine", grad_accum_steps=16, epochs=None, save_every_steps=500,
                   logging_steps=10, prompt_format="chat", lora_target_modules=("q_proj", "k_proj", "v_proj", "o_proj"),
                   system_prompt=DPO_LATEST_SYSTEM, logit_clamp=50.0, recipe="latest"),
}


#: the earlier name (scripts, the pipeline and other branches import it)
DPOPTrainingConfig = PreferenceTrainingConfig
