"""Curriculum preference training of a LoRA adapter (DPOP by default), built on ``accelerate``.

Loss: ``--loss`` names one of ``aligner.train.losses.LOSSES`` (dpop, the study's, by default; sigmoid, ipo, hinge,
apo_zero, simpo), ``--rpo_alpha`` adds the chosen answers' NLL to any of them.  The reference is the same model with
its adapters disabled, under ``no_grad``, in the same forward layout, or read from the per-pair cache
(``--precompute_ref``, ``aligner.train.reference``); SimPO needs none and runs no reference forward.

Layout (``--layout``, ``aligner.train.steps``): ``packed`` (default) computes each pair's prompt once, both answers
attending to it, several pairs to a row without padding, an optimizer step cut into forwards of at most
``--max_tokens_per_batch`` tokens; ``padded`` runs each micro-batch as 2B right-padded rows.  Both train the same
pairs per step with the same loss, so their log-probs, gradients and logs agree to float rounding.

LR schedule (``schedule``): ``per_stage`` (the study's runnable first recipe) gives every curriculum stage a new
AdamW (its moments reset) and its own warmup + decay over that stage's optimizer steps; ``global`` keeps one
optimizer and one schedule over the whole run.  Warmup is counted in optimizer steps.

Batching: a stage's shuffled order is cut into optimizer steps of ``per_device_batch_size x processes x
grad_accum_steps`` pairs; the last, partial step is filled by wrapping round to the stage's first pairs (as
``DistributedSampler`` does; ``leftover="wrap"``), so every step has the same size and every process the same
number of micro-batches, or left out (``leftover="drop"``, what the study's code amounts to).  Process p takes
rows p*B..(p+1)*B of each micro-batch slice, so a 2-process run with batch B matches a 1-process run with batch 2B.

Checkpoints (``OUTPUT/checkpoints/step_<N>/``, every ``save_every_steps`` optimizer steps) hold the adapter
(``adapter_model.safetensors`` + config), the optimizer, the LR scheduler, every process's RNG states (python,
numpy, torch, CUDA) and the data position (stage, step within the stage); ``resume=True`` continues from the
newest complete one and ends with the same adapter as an uninterrupted run.  Outputs: ``OUTPUT/epoch_<k>/``
after curriculum stage k (the study's folder name), the final adapter (and tokenizer) in ``OUTPUT/``,
``OUTPUT/train_log.jsonl`` (one line per logging step: ``stage``, ``loss``, the loss's own metrics, ...) and
``OUTPUT/run_config.json``.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from aligner.core.cli import note_saved
from aligner.core.io import ResumableJsonlWriter, write_jsonl_atomic
from aligner.core.logprobs import accepts_logits_to_keep, attention_implementation
from aligner.core.models import attach_adapters, load_causal_lm, resolve_device, resolve_dtype, use_adapter
from aligner.core.runinfo import setup_logging, write_run_config
from aligner.train.accel import (
    choose_mixed_precision,
    drop_fp32_output_upcast,
    prepare_fsdp_for_lora,
    reconcile_deepspeed_config,
    reset_single_process_state,
)
from aligner.train.checkpoints import LOG_FILE, CheckpointManager, TrainState, check_output_dir
from aligner.train.config import CurriculumData, LatestRecipeData, PreferenceTrainingConfig
from aligner.train.curriculum import CurriculumSchedule, n_stages_for, plan_stages
from aligner.train.layouts import score_pairs
from aligner.train.losses import OPTIONAL_SETTINGS, LossSettings, loss_spec
from aligner.train.packing import check_packable, default_max_tokens
from aligner.train.preference import (
    PairLevel,
    PairRules,
    PairTokenizer,
    TokenizedPair,
    curriculum_levels,
    latest_recipe_levels,
    stats_dict,
)
from aligner.train.reference import cached_reference, pair_key, reference_identity
from aligner.train.schedule import build_optimizer, reset_optimizer_state
from aligner.train.steps import LogWindow, run_packed_step, run_padded_step
from aligner.train.tracking import log_record, start_tracker

logger = logging.getLogger(__name__)

TRAIN_LOG = LOG_FILE  # the earlier name


@dataclass
class TrainResult:
    output_dir: Path
    global_step: int
    completed: bool
    last_log: dict


class PreferenceTrainer:
    def __init__(self, cfg: PreferenceTrainingConfig, levels: Sequence[PairLevel],
                 run_args: dict | tuple | None = None):
        if not levels:
            raise ValueError("no training data")
        if cfg.per_device_batch_size < 1 or cfg.grad_accum_steps < 1:
            raise ValueError("per_device_batch_size and grad_accum_steps must be >= 1")
        if cfg.epochs is None:  # every stage of the curriculum (--epochs K runs the first K)
            cfg.epochs = n_stages_for(len(levels))
        self.cfg = cfg
        self.levels = list(levels)
        self.run_args = run_args if run_args is not None else asdict(cfg)
        self.out = Path(cfg.output_dir)
        self.loss_spec = loss_spec(cfg.loss)
        self.loss_settings = LossSettings.from_config(cfg)
        defaults = {f.name: f.default for f in fields(cfg)}
        unused = [f"--{name}" for name in OPTIONAL_SETTINGS
                  if name not in self.loss_spec.uses and getattr(cfg, name) != defaults[name]]
        if unused:
            logger.info("--loss %s does not use %s (set by the recipe or the command line)", cfg.loss, " or ".join(unused))
        # packed: a forward holds at most max_tokens (rows x width), a row at most max_length tokens (or one pair)
        self.max_tokens = cfg.max_tokens_per_batch or default_max_tokens(cfg.per_device_batch_size, cfg.max_length)
        self.row_tokens = cfg.max_length
        self.tokens_computed = 0
        self.packing_counts = {"forwards": 0, "steps_evened_out": 0}
        self.ref_values: dict[str, tuple[float, float]] | None = None
        self.ref_record: dict = {}

    # -- setup --------------------------------------------------------------------------------
    def _setup_accelerator(self):
        from accelerate import Accelerator
        from accelerate.utils import DistributedType

        cfg = self.cfg
        want_cpu = cfg.device == "cpu"
        if cfg.device not in ("auto", "cpu") and not torch.cuda.is_available():
            raise RuntimeError(f"--device {cfg.device} requested but CUDA is not available")
        device_guess = torch.device("cpu") if want_cpu else resolve_device("auto")
        kwargs = {"gradient_accumulation_steps": cfg.grad_accum_steps}
        mp = choose_mixed_precision(cfg.mixed_precision, device_guess)
        if mp is not None:
            kwargs["mixed_precision"] = mp
        if want_cpu:
            kwargs["cpu"] = True
        reset_single_process_state()
        acc = Accelerator(**kwargs)
        if acc.distributed_type == DistributedType.DEEPSPEED:  # batch sizes and clipping from our flags
            reconcile_deepspeed_config(acc.state.deepspeed_plugin.deepspeed_config, cfg.max_grad_norm,
                                       cfg.per_device_batch_size, cfg.grad_accum_steps)
        self.acc = acc
        self.DistributedType = DistributedType

    #: an already loaded (base model, tokenizer) to train instead of loading ``model_path``, which still names it
    #: (run_config.json, the reference cache key): benchmarks/gpu_rehearsal.py reuses one base across runs
    preloaded: tuple | None = None

    def _load_model(self):
        from peft import LoraConfig, get_peft_model

        cfg, acc = self.cfg, self.acc
        if self.preloaded is not None:
            model, tok = self.preloaded
            self.dtype = next(model.parameters()).dtype
        else:
            self.dtype = resolve_dtype(cfg.dtype, acc.device)
            model, tok = load_causal_lm(cfg.model_path, dtype=self.dtype, device=acc.device)
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        if cfg.load_adapter_path:
            # Continue training a saved adapter (the study's --load-adapter-path); the reference stays the base.
            model, _ = attach_adapters(model, [cfg.load_adapter_path], names=["default"], is_trainable=True)
        else:
            lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                              target_modules=list(cfg.lora_target_modules), bias="none", task_type="CAUSAL_LM")
            model = get_peft_model(model, lora)
        model.train()
        if cfg.layout == "packed":
            check_packable(model)
        # Probed once here, before any wrapper: the boolean logits_to_keep mask, or the full-logits path.
        logger.info("boolean logits_to_keep: %s", "supported" if accepts_logits_to_keep(model) else "full logits")
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        n_all = sum(p.numel() for p in model.parameters())
        logger.info("trainable parameters: %d of %d (%.3f%%)", n_train, n_all, 100.0 * n_train / max(1, n_all))
        self.model, self.tokenizer = model, tok

    def _tokenize(self):
        cfg = self.cfg
        ptok = PairTokenizer.from_config(self.tokenizer, cfg)
        self.tokenized: list[list[TokenizedPair]] = []
        self.tokenize_stats = {}
        for lv in self.levels:
            kept, st = ptok.encode_all(lv.pairs, lv.name, progress=cfg.progress and self.acc.is_main_process)
            self.tokenized.append(kept)
            self.tokenize_stats[lv.name] = stats_dict(st)

    def _precompute_reference(self):
        """The reference log-probs of every distinct pair the plan uses, from the per-pair cache or computed (sharded
        across processes, in the run's layout, adapters disabled, the training autocast) and added to it
        (``aligner.train.reference``).  Runs before ``prepare``: each process uses its own copy of the model."""
        cfg, acc = self.cfg, self.acc
        identity = reference_identity(cfg.model_path, self.dtype, str(acc.mixed_precision), cfg.layout,
                                      attention_implementation(self.model))
        used = sorted({ref for s in self.plan.stages for k in range(self.plan.steps[s])
                       for ref in self.plan.step_pairs(s, k)})
        by_file: dict[Path, list[TokenizedPair]] = {}
        for lv, i in used:
            by_file.setdefault(Path(self.levels[lv].data_path), []).append(self.tokenized[lv][i])

        def score(pairs):
            if cfg.progress and acc.is_main_process:
                print(f"reference log-probs of {len(pairs)} pairs ({cfg.layout} layout)", flush=True)
            return score_pairs(self.model, pairs, cfg.layout, self.tokenizer.pad_token_id, acc.device,
                               batch_size=cfg.per_device_batch_size, max_tokens=self.max_tokens,
                               row_tokens=self.row_tokens)

        self.model.eval()
        with torch.no_grad(), use_adapter(self.model, None), acc.autocast():
            self.ref_values, self.ref_record = cached_reference(acc, by_file, identity, self.out, score)
        self.model.train()

    def cached_reference(self, refs: Sequence[tuple[int, int]]) -> torch.Tensor | None:
        """The cached reference values (2n,) [chosen..., rejected...] of ``refs``, or None (live reference)."""
        if self.ref_values is None:
            return None
        values = [self.ref_values[pair_key(self.tokenized[lv][i])] for lv, i in refs]
        return torch.tensor([c for c, _ in values] + [r for _, r in values], dtype=torch.float32,
                            device=self.acc.device)

    def _plan(self):
        cfg, acc = self.cfg, self.acc
        sizes = [len(t) for t in self.tokenized]
        if sum(sizes) == 0:
            raise ValueError("every pair was skipped (responses longer than --max_length?)")
        schedule = CurriculumSchedule(sizes, cfg.stage_fractions, cfg.seed, [lv.name for lv in self.levels])
        self.plan = plan_stages(schedule, cfg.epochs, cfg.per_device_batch_size * acc.num_processes *
                                cfg.grad_accum_steps, leftover=cfg.leftover, curriculum_order=cfg.curriculum_order)
        if acc.is_main_process:
            for d in self.plan.description:
                rest = (f"{d['dropped_pairs']} left out" if cfg.leftover == "drop"
                        else f"{d['wrapped_pairs']} wrapped round")
                print(f"stage {d['stage']}: {d['n_pairs']} pairs {d['per_level']} -> {d['optimizer_steps']} "
                      f"optimizer steps of {self.plan.pairs_per_step} pairs ({rest})")

    def _build_optimizer(self):
        """AdamW on the trainable parameters and the LR schedule (``aligner.train.schedule``), stepped by hand once
        per optimizer step (not prepared: accelerate would step it once per process)."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer, self.scheduler = build_optimizer(params, self.cfg, self.plan)

    def _begin_stage(self, stage: int) -> None:
        """Before a stage's first optimizer step: with ``--schedule per_stage`` a fresh AdamW, as the study builds
        one per stage (the schedule restarts by itself: ``schedule.StageLRLambda``)."""
        if self.cfg.schedule == "per_stage" and reset_optimizer_state(self.optimizer):
            logger.info("stage %d: AdamW state reset (--schedule per_stage)", stage)

    # -- batches ------------------------------------------------------------------------------
    def micro_batch(self, stage: int, step_in_stage: int, micro: int, process: int | None = None
                    ) -> list[tuple[int, int]]:
        """Process ``process``'s (default: this one's) rows of micro-batch ``micro``: process p takes rows
        p*B..(p+1)*B of each slice, so a 2-process run with batch B matches a 1-process run with batch 2B."""
        bs, world = self.cfg.per_device_batch_size, self.acc.num_processes
        rank = self.acc.process_index if process is None else process
        lo = micro * bs * world + rank * bs
        return self.plan.step_pairs(stage, step_in_stage)[lo: lo + bs]

    def clip_gradients(self):
        """The pre-clip gradient norm (of the gradient averaged over forwards and processes), clipping at
        --max_grad_norm; without clipping the norm is computed with an infinite threshold, which leaves the gradient
        as it is."""
        cfg = self.cfg
        max_norm = cfg.max_grad_norm if cfg.max_grad_norm and cfg.max_grad_norm > 0 else float("inf")
        return self.acc.clip_grad_norm_(self.model.parameters(), max_norm)

    # -- checkpoints --------------------------------------------------------------------------
    def _signature(self) -> dict:
        return {"world_size": self.acc.num_processes, **self.plan.signature(), "total_steps": self.plan.total_steps,
                "loss": self.cfg.loss}

    def _note_checkpoint(self, path: Path) -> None:
        """What a Ctrl-C keeps (``aligner.core.cli.run_cli`` prints it with the command that continues)."""
        note_saved(f"--resume continues from checkpoint {path} (optimizer step {self.state.global_step} of "
                   f"{self.plan.total_steps})")

    # -- the loop -----------------------------------------------------------------------------
    def _prepare(self):
        """The optimizer and ``accelerate.prepare``.  FSDP1 wraps LoRA Linears as units of their own and gets the
        optimizer built on the wrapped model; elsewhere model and optimizer are prepared together (DeepSpeed and
        FSDP2 need that).  Then accelerate's fp32 upcast of the outputs is removed (``aligner.train.accel``)."""
        acc = self.acc
        if prepare_fsdp_for_lora(acc, self.model) == 1:
            self.model = acc.prepare(self.model)
            self._build_optimizer()
            self.optimizer = acc.prepare(self.optimizer)
        else:
            self._build_optimizer()
            self.model, self.optimizer = acc.prepare(self.model, self.optimizer)
        if drop_fp32_output_upcast(acc, self.model):
            logger.info("logits kept in the autocast dtype (accelerate's fp32 output upcast removed)")

    def _start_position(self):
        """Resume from a checkpoint, or from the study's --start-epoch/--resume-step, or from the start."""
        cfg = self.cfg
        ckpts = self.checkpoints.complete() if cfg.resume else []
        if cfg.resume and ckpts:
            self.checkpoints.load(ckpts[-1], self.model, self.state, self._signature())
            self._note_checkpoint(ckpts[-1])
            return True
        if cfg.resume:
            logger.warning("--resume: no checkpoint in %s; starting from the beginning", self.checkpoints.root)
        if cfg.start_epoch > 1 or cfg.resume_step > 0:
            # The study's manual resume: skip earlier stages and the micro-batches already trained, and move
            # the LR schedule to where it was (the optimizer moments are not available this way).
            steps = self.plan.steps
            if cfg.start_epoch not in steps:
                raise ValueError(f"--start-epoch {cfg.start_epoch} is not one of the stages {self.plan.stages}")
            done_in_stage = min(cfg.resume_step // cfg.grad_accum_steps, steps[cfg.start_epoch])
            before = sum(steps[s] for s in self.plan.stages if s < cfg.start_epoch)
            self.state.stage, self.state.step_in_stage = cfg.start_epoch, done_in_stage
            self.state.global_step = before + done_in_stage
            self.state.pairs_seen = self.state.global_step * self.plan.pairs_per_step
            with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()" is intended here
                warnings.simplefilter("ignore", UserWarning)
                for _ in range(self.state.global_step):
                    self.scheduler.step()
            logger.info("starting at stage %d, optimizer step %d of it (global step %d)", cfg.start_epoch,
                        done_in_stage, self.state.global_step)
        return False

    def _open_log(self, resumed: bool) -> ResumableJsonlWriter | None:
        if not self.acc.is_main_process:
            return None
        path = self.out / TRAIN_LOG
        if resumed and path.exists():
            # Lines written after the checkpoint by the interrupted run are replayed, so drop them.
            old = ResumableJsonlWriter(path, resume=True)
            old.close()
            write_jsonl_atomic(path, [r for r in old.records if r.get("step", 0) <= self.state.global_step])
        return ResumableJsonlWriter(path, resume=resumed)

    def _setup(self) -> bool:
        """Everything before the first step; returns whether a checkpoint was resumed."""
        from accelerate.utils import set_seed

        cfg = self.cfg
        self._setup_accelerator()
        acc = self.acc
        check_output_dir(self.out, cfg.resume, cfg.overwrite_output_dir, cfg.start_epoch > 1 or cfg.resume_step > 0,
                         acc.is_main_process)
        set_seed(cfg.seed)
        if acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
        acc.wait_for_everyone()
        self._load_model()
        self._tokenize()
        self._plan()
        if cfg.precompute_ref and self.loss_spec.needs_reference:
            self._precompute_reference()
        self._prepare()
        self.state = TrainState()
        self.checkpoints = CheckpointManager(acc, self.out, cfg.save_total_limit)
        self.checkpoints.register(self.scheduler, self.state)
        resumed = self._start_position()
        if acc.is_main_process:
            write_run_config(self.out, self.run_args, extra=self._run_extra())
        return resumed

    def train(self) -> TrainResult:
        from tqdm.auto import tqdm

        resumed = self._setup()
        self.log = self._open_log(resumed)
        start_tracker(self.acc, self.cfg.report_to, self.out, self.cfg)
        self.window = LogWindow()
        self.bar = tqdm(total=self.plan.total_steps, initial=self.state.global_step, desc=f"train ({self.cfg.loss})",
                        disable=not (self.cfg.progress and self.acc.is_main_process), unit="step")
        self.t0, self.steps_this_run, self.last_log = time.perf_counter(), 0, {}
        completed = True
        for stage in self.plan.stages:
            if stage < self.state.stage:
                continue
            if stage > self.state.stage:
                self.state.stage, self.state.step_in_stage = stage, 0
            completed = self._run_stage(stage)
            if not completed:
                break
            self.checkpoints.save_adapter(self.model, self.out / f"epoch_{stage}")
            if self.acc.is_main_process:
                print(f"stage {stage} done: adapter saved to {self.out / f'epoch_{stage}'}")
        return self._finish(completed)

    def _run_stage(self, stage: int) -> bool:
        """The stage's remaining optimizer steps; False when ``stop_after_steps`` interrupts it."""
        cfg = self.cfg
        if self.state.step_in_stage == 0:
            self._begin_stage(stage)
        while self.state.step_in_stage < self.plan.steps[stage]:
            if cfg.stop_after_steps is not None and self.steps_this_run >= cfg.stop_after_steps:
                return False
            grad_norm = self._optimizer_step(stage)
            last_in_stage = self.state.step_in_stage == self.plan.steps[stage]
            if self.state.global_step % cfg.logging_steps == 0 or last_in_stage:
                self.last_log = self._log_step(stage, grad_norm)
                self.bar.set_postfix(loss=f"{self.last_log['loss']:.4f}",
                                     acc=f"{self.last_log.get('rewards/accuracies', float('nan')):.2f}", stage=stage)
            self.bar.update(1)
            if cfg.save_every_steps and self.state.global_step % cfg.save_every_steps == 0:
                self._note_checkpoint(self.checkpoints.save(self.model, self.state, self._signature()))
        return True

    def _optimizer_step(self, stage: int):
        """One optimizer step in the run's layout (``aligner.train.steps``), clipping, AdamW, the LR schedule;
        returns the gradient norm before clipping."""
        step = run_packed_step if self.cfg.layout == "packed" else run_padded_step
        grad_norm = step(self, stage)
        self.lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        self.state.global_step += 1
        self.state.step_in_stage += 1
        self.state.pairs_seen += self.plan.pairs_per_step
        self.steps_this_run += 1
        return grad_norm

    def _finish(self, completed: bool) -> TrainResult:
        acc = self.acc
        self.bar.close()
        if self.log is not None:
            self.log.close()
        if completed:
            self.checkpoints.save_adapter(self.model, self.out, tokenizer=self.tokenizer)
            if acc.is_main_process:
                pairs = self.steps_this_run * self.plan.pairs_per_step / self.acc.num_processes
                final = {"global_step": self.state.global_step, "last_log": self.last_log,
                         "seconds": time.perf_counter() - self.t0,
                         "policy_tokens_per_pair": self.tokens_computed / max(1.0, pairs),
                         **({"packed": self.packing_counts} if self.cfg.layout == "packed" else {})}
                write_run_config(self.out, self.run_args, extra={**self._run_extra(), "final": final})
                print(f"training finished after {self.state.global_step} optimizer steps; adapter in {self.out}")
        else:
            logger.warning("stopped after %d optimizer steps (stop_after_steps); resume with --resume",
                           self.steps_this_run)
        acc.wait_for_everyone()
        acc.end_training()
        return TrainResult(self.out, self.state.global_step, completed, self.last_log)

    def _log_step(self, stage: int, grad_norm) -> dict:
        """One train_log.jsonl record: the window's loss and metrics averaged over every process's pairs."""
        acc = self.acc
        losses, metrics = self.window.take()
        record = {"step": self.state.global_step, "stage": stage,
                  "step_in_stage": self.state.step_in_stage, "pairs_seen": self.state.pairs_seen, "lr": self.lr,
                  "loss": acc.gather(torch.cat(losses)).double().mean().item()}
        for k, vals in metrics.items():
            record[k] = acc.gather(torch.cat(vals)).double().mean().item()
        if grad_norm is not None:
            record["grad_norm"] = float(grad_norm)
        elapsed = max(1e-9, time.perf_counter() - self.t0)
        record["pairs_per_s"] = self.steps_this_run * self.plan.pairs_per_step / elapsed
        if self.log is not None:
            self.log.append(record)
        log_record(acc, record)  # --report_to: the same names and values
        return record

    def _run_extra(self) -> dict:
        return {
            "world_size": self.acc.num_processes,
            "distributed_type": str(self.acc.distributed_type),
            "mixed_precision": str(self.acc.mixed_precision),
            "model_dtype": str(self.dtype),
            "levels": {lv.name: {"file": str(lv.data_path), "load": lv.load_stats,
                                 "tokenize": self.tokenize_stats[lv.name]} for lv in self.levels},
            "curriculum": self.plan.description,
            "pairs_per_optimizer_step": self.plan.pairs_per_step,
            "total_optimizer_steps": self.plan.total_steps,
            "loss": {"name": self.cfg.loss, "needs_reference": self.loss_spec.needs_reference},
            "layout": {"name": self.cfg.layout, "attention": attention_implementation(self.model),
                       **({"max_tokens_per_batch": self.max_tokens, "row_tokens": self.row_tokens}
                          if self.cfg.layout == "packed" else {})},
            "reference": self._reference_record(),
        }

    def _reference_record(self) -> dict:
        if not self.loss_spec.needs_reference:
            return {"none": f"--loss {self.cfg.loss} is reference-free"}
        if self.ref_values is not None:
            return {"precomputed": True, **self.ref_record}
        return {"precomputed": False, "model": "policy with adapters disabled"}


def train_preference(cfg: PreferenceTrainingConfig, levels: Sequence[PairLevel], run_args=None) -> TrainResult:
    return PreferenceTrainer(cfg, levels, run_args).train()


def train_recipe(data: CurriculumData | LatestRecipeData, cfg: PreferenceTrainingConfig) -> TrainResult:
    """A training script's run: the latest recipe's sampled mix, or the curriculum's level files."""
    setup_logging()
    build = latest_recipe_levels if isinstance(data, LatestRecipeData) else curriculum_levels
    return train_preference(cfg, build(data, PairRules.from_config(cfg)), run_args=(data, cfg))


#: the earlier names (scripts, benchmarks and other branches import them)
DPOPTrainer = PreferenceTrainer
train_dpop = train_preference
