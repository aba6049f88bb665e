"""Curriculum DPOP training of a LoRA adapter, built on ``accelerate``.

LR schedule (``schedule``): ``per_stage`` (the study's runnable first recipe) gives every curriculum stage a new
AdamW (its moments reset) and its own warmup + decay over that stage's optimizer steps; ``global`` keeps one
optimizer and one schedule over the whole run.  Warmup is counted in optimizer steps.  Per micro-batch the
policy runs once over the chosen and rejected sequences concatenated (2B rows), with only the response positions
projected onto the vocabulary (``aligner.core.logprobs.batch_response_logprobs``); the reference is the same model
with its adapters disabled, under ``no_grad``, or log-probs precomputed once per dataset and cached next to the
data (``precompute_ref``).

Batching: a stage's shuffled order is cut into optimizer steps of ``per_device_batch_size x processes x
grad_accum_steps`` pairs; the last, partial step is filled by wrapping round to the stage's first pairs (as
``DistributedSampler`` does; ``leftover="wrap"``), so every step has the same size and every process the same
number of micro-batches, or left out (``leftover="drop"``, what the study's code amounts to).  Process p takes
rows p*B..(p+1)*B of each micro-batch slice, so a 2-process run with batch B matches a 1-process run with batch 2B.

Checkpoints (``OUTPUT/checkpoints/step_<N>/``, every ``save_every_steps`` optimizer steps) hold the adapter
(``adapter_model.safetensors`` + config), the optimizer, the LR scheduler, every process's RNG states (python,
numpy, torch, CUDA) and the data position (stage, step within the stage); ``resume=True`` continues from the
newest complete one and ends with the same adapter as an uninterrupted run.  Outputs: ``OUTPUT/epoch_<k>/``
after stage k, the final adapter (and tokenizer) in ``OUTPUT/``, ``OUTPUT/train_log.jsonl`` (one line per
logging step) and ``OUTPUT/run_config.json``.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from aligner.core.io import ResumableJsonlWriter, write_jsonl_atomic
from aligner.core.logprobs import accepts_logits_to_keep, batch_response_logprobs, pad_sequences, response_mask
from aligner.core.models import attach_adapters, load_causal_lm, resolve_device, resolve_dtype, use_adapter
from aligner.core.runinfo import setup_logging, write_run_config
from aligner.train.accel import (
    choose_mixed_precision,
    drop_fp32_output_upcast,
    prepare_fsdp_for_lora,
    reconcile_deepspeed_config,
    reset_single_process_state,
)
from aligner.train.checkpoints import CheckpointManager, TrainState, check_output_dir
from aligner.train.config import CurriculumData, DPOPTrainingConfig, LatestRecipeData
from aligner.train.curriculum import CurriculumSchedule, n_stages_for, plan_stages
from aligner.train.losses import METRIC_NAMES, dpop_loss
from aligner.train.preference import (
    PairLevel,
    PairTokenizer,
    TokenizedPair,
    curriculum_levels,
    latest_recipe_levels,
    ref_cache_key,
    ref_cache_path,
    stats_dict,
)
from aligner.train.reference import layout_signature, model_identity, precomputed_reference
from aligner.train.schedule import build_optimizer, reset_optimizer_state
from aligner.train.tracking import log_record, start_tracker

logger = logging.getLogger(__name__)

TRAIN_LOG = "train_log.jsonl"


class LogWindow:
    """The loss and per-pair metrics of the micro-batches since the last logging step."""

    def __init__(self):
        self.take()

    def add(self, loss: torch.Tensor, metrics: dict[str, torch.Tensor]) -> None:
        self.losses.append(loss.reshape(1))
        for k, v in metrics.items():
            self.metrics[k].append(v)

    def take(self) -> tuple[list[torch.Tensor], dict[str, list[torch.Tensor]]]:
        out = (getattr(self, "losses", []), getattr(self, "metrics", {}))
        self.losses: list[torch.Tensor] = []
        self.metrics: dict[str, list[torch.Tensor]] = {k: [] for k in METRIC_NAMES}
        return out


@dataclass
class TrainResult:
    output_dir: Path
    global_step: int
    completed: bool
    last_log: dict


# ---------------------------------------------------------------------------------------------
# the trainer
# ---------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------
# one step's tensors (also used by benchmarks/bench_train.py)
# ---------------------------------------------------------------------------------------------

def collate_pairs(pairs: Sequence[TokenizedPair], pad_id: int, device=None):
    """One right-padded batch of 2B rows, [chosen_1..chosen_B, rejected_1..rejected_B], with the response mask."""
    seqs = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    ids, attn = pad_sequences([s.input_ids for s in seqs], pad_id, "right", device)
    rmask = response_mask([s.response_start for s in seqs], [len(s.input_ids) for s in seqs], ids.shape[1], device)
    return ids, attn, rmask


def policy_and_reference_logps(model, ids, attn, rmask, ref: torch.Tensor | None = None, unwrapped=None):
    """(policy, reference) summed response log-probs, each (2B,): one policy forward over chosen+rejected with
    grad, and, unless ``ref`` is given (precomputed), one forward of the same model with its adapters
    disabled under ``no_grad``.  ``unwrapped`` is the PeftModel inside a DDP/FSDP wrapper (default: ``model``)."""
    if ref is None:
        with torch.no_grad(), use_adapter(unwrapped if unwrapped is not None else model, None):
            ref = batch_response_logprobs(model, ids, attn, rmask)
    policy = batch_response_logprobs(model, ids, attn, rmask)
    return policy, ref


class DPOPTrainer:
    def __init__(self, cfg: DPOPTrainingConfig, levels: Sequence[PairLevel], run_args: dict | tuple | None = None):
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
        """The reference log-probs of every micro-batch of the plan, in the training layout (``_collate``), adapters
        disabled, the training autocast; sharded across processes and cached (``aligner.train.reference``).
        Runs before ``prepare``: each process uses its own copy of the model, the one collective is a gather."""
        cfg, acc, bs = self.cfg, self.acc, self.cfg.per_device_batch_size
        ident = {**model_identity(cfg.model_path, self.dtype, str(acc.mixed_precision)),
                 "layout": layout_signature(self.plan, bs, acc.num_processes)}
        key = ref_cache_key(ident, [p for pairs in self.tokenized for p in pairs])
        path = ref_cache_path(self.levels[0].data_path, key, fallback_dir=self.out)
        keys = [(s, k, m) for s in self.plan.stages for k in range(self.plan.steps[s])
                for m in range(cfg.grad_accum_steps)]

        def forward(mb):
            ids, attn, rmask, _ = self._collate(self._micro_batch(*mb))
            return batch_response_logprobs(self.model, ids, attn, rmask)

        self.model.eval()
        with torch.no_grad(), use_adapter(self.model, None), acc.autocast():
            self.ref_values = precomputed_reference(acc, keys, forward, 2 * bs, path, key, progress=cfg.progress,
                                                    meta={"model": ident, "levels": [lv.name for lv in self.levels]})
        self.model.train()
        self.ref_cache_files = [str(path)]

    def _plan(self):
        cfg, acc = self.cfg, self.acc
        sizes = [len(t) for t in self.tokenized]
        if sum(sizes) == 0:
            raise ValueError("every pair was skipped (responses longer than --max_length?)")
        schedule = CurriculumSchedule(sizes, cfg.stage_fractions, cfg.seed, [lv.name for lv in self.levels])
        self.plan = plan_stages(schedule, cfg.epochs, cfg.per_device_batch_size * acc.num_processes *
                                cfg.grad_accum_steps, leftover=cfg.leftover)
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
    def _micro_batch(self, stage: int, step_in_stage: int, micro: int) -> list[tuple[int, int]]:
        """This process's rows of micro-batch ``micro``: process p takes rows p*B..(p+1)*B of each slice, so a
        2-process run with batch B matches a 1-process run with batch 2B."""
        bs, world = self.cfg.per_device_batch_size, self.acc.num_processes
        lo = micro * bs * world + self.acc.process_index * bs
        return self.plan.step_pairs(stage, step_in_stage)[lo: lo + bs]

    def _collate(self, refs: Sequence[tuple[int, int]], key: tuple[int, int, int] | None = None):
        """The micro-batch's tensors, and its precomputed reference values when ``key`` = (stage, step in stage,
        micro-batch) names one (``--precompute_ref``)."""
        ids, attn, rmask = collate_pairs([self.tokenized[lv][i] for lv, i in refs], self.tokenizer.pad_token_id,
                                         self.acc.device)
        ref = self.ref_values.get(key) if key is not None and self.ref_values is not None else None
        return ids, attn, rmask, ref

    def micro_step(self, refs: Sequence[tuple[int, int]], key: tuple[int, int, int] | None = None):
        cfg = self.cfg
        ids, attn, rmask, ref = self._collate(refs, key)
        policy, ref = policy_and_reference_logps(self.model, ids, attn, rmask, ref,
                                                 unwrapped=self.acc.unwrap_model(self.model))
        if not policy.requires_grad:
            # Every response of the micro-batch was cut away (--truncation right, as the study): zero gradient, but
            # the graph must still reach the adapter so that every process takes part in the gradient reduction.
            policy = policy + 0.0 * sum(p.reshape(-1)[0] for p in self.model.parameters() if p.requires_grad)
        pc, pr = policy.chunk(2)
        rc, rr = ref.chunk(2)
        chosen_lengths = rmask[: pc.shape[0]].sum(dim=1)
        loss, metrics = dpop_loss(pc, pr, rc, rr, beta=cfg.beta, lam=cfg.lam, rpo_alpha=cfg.rpo_alpha,
                                  chosen_lengths=chosen_lengths, logit_clamp=cfg.logit_clamp)
        self.acc.backward(loss)
        return loss.detach(), metrics

    # -- checkpoints --------------------------------------------------------------------------
    def _signature(self) -> dict:
        return {"world_size": self.acc.num_processes, **self.plan.signature(), "total_steps": self.plan.total_steps}

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
        self.ref_values = None
        if cfg.precompute_ref:
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
        self.bar = tqdm(total=self.plan.total_steps, initial=self.state.global_step, desc="DPOP",
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
                                     acc=f"{self.last_log['rewards/accuracies']:.2f}", stage=stage)
            self.bar.update(1)
            if cfg.save_every_steps and self.state.global_step % cfg.save_every_steps == 0:
                self.checkpoints.save(self.model, self.state, self._signature())
        return True

    def _optimizer_step(self, stage: int):
        """One optimizer step: ``grad_accum_steps`` micro-batches, clipping, AdamW, the LR schedule; returns the
        gradient norm before clipping (of the gradient averaged over micro-batches and processes; also without
        clipping, where the norm is computed with an infinite threshold, which leaves the gradient as it is)."""
        cfg, acc = self.cfg, self.acc
        grad_norm = None
        max_norm = cfg.max_grad_norm if cfg.max_grad_norm and cfg.max_grad_norm > 0 else float("inf")
        for micro in range(cfg.grad_accum_steps):
            with acc.accumulate(self.model):
                key = (stage, self.state.step_in_stage, micro)
                loss, metrics = self.micro_step(self._micro_batch(*key), key)
                if acc.sync_gradients:  # DeepSpeed clips inside its engine and returns the pre-clip norm here
                    grad_norm = acc.clip_grad_norm_(self.model.parameters(), max_norm)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            self.window.add(loss, metrics)
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
                final = {"global_step": self.state.global_step, "last_log": self.last_log,
                         "seconds": time.perf_counter() - self.t0}
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
        record = {"step": self.state.global_step, "stage": stage, "epoch": stage,
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
            "reference": ({"precomputed": True, "cache_files": self.ref_cache_files} if self.cfg.precompute_ref
                          else {"precomputed": False, "model": "policy with adapters disabled"}),
        }


def train_dpop(cfg: DPOPTrainingConfig, levels: Sequence[PairLevel], run_args=None) -> TrainResult:
    return DPOPTrainer(cfg, levels, run_args).train()


def train_recipe(data: CurriculumData | LatestRecipeData, cfg: DPOPTrainingConfig) -> TrainResult:
    """A training script's run: the latest recipe's sampled mix, or the curriculum's level files."""
    setup_logging()
    build = latest_recipe_levels if isinstance(data, LatestRecipeData) else curriculum_levels
    return train_dpop(cfg, build(data, keep_identical=cfg.keep_identical), run_args=(data, cfg))
