"""Curriculum DPOP training of a LoRA adapter, built on ``accelerate``.

One optimizer and one LR schedule (warmup counted in optimizer steps) span every curriculum stage.  Per
micro-batch the policy runs once over the chosen and rejected sequences concatenated (2B rows), with only the
response positions projected onto the vocabulary (``aligner.core.logprobs.batch_response_logprobs``); the reference
is the same model with its adapters disabled, under ``no_grad``, or log-probs precomputed once per dataset and
cached next to the data (``precompute_ref``).

Batching: a stage's shuffled order is cut into optimizer steps of ``per_device_batch_size x processes x
grad_accum_steps`` pairs; the last step is filled by wrapping round to the stage's first pairs (as
``DistributedSampler`` does), so every step has the same size and every process the same number of
micro-batches.  Process p takes rows p*B..(p+1)*B of each micro-batch slice, so a 2-process run with batch B
matches a 1-process run with batch 2B.

Checkpoints (``OUTPUT/checkpoints/step_<N>/``, every ``save_every_steps`` optimizer steps) hold the adapter
(``adapter_model.safetensors`` + config), the optimizer, the LR scheduler, every process's RNG states (python,
numpy, torch, CUDA) and the data position (stage, step within the stage); ``resume=True`` continues from the
newest complete one and ends with the same adapter as an uninterrupted run.  Outputs: ``OUTPUT/epoch_<k>/``
after stage k, the final adapter (and tokenizer) in ``OUTPUT/``, ``OUTPUT/train_log.jsonl`` (one line per
logging step) and ``OUTPUT/run_config.json``.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from aligner.core.io import ResumableJsonlWriter, sha256_file, write_jsonl_atomic
from aligner.core.logprobs import batch_response_logprobs, pad_sequences, response_mask
from aligner.core.models import attach_adapters, load_causal_lm, resolve_device, resolve_dtype, use_adapter
from aligner.core.runinfo import write_run_config
from aligner.train.checkpoints import CheckpointManager, TrainState
from aligner.train.config import DPOPTrainingConfig
from aligner.train.curriculum import CurriculumSchedule, n_stages_for, plan_stages
from aligner.train.losses import METRIC_NAMES, dpop_loss
from aligner.train.preference import (
    PairLevel,
    PairTokenizer,
    TokenizedPair,
    compute_ref_logps,
    load_ref_cache,
    ref_cache_key,
    ref_cache_path,
    save_ref_cache,
    stats_dict,
)

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

def _mixed_precision(cfg: DPOPTrainingConfig, device: torch.device) -> str | None:
    if cfg.mixed_precision != "auto":
        return cfg.mixed_precision
    if os.environ.get("ACCELERATE_MIXED_PRECISION"):
        return None  # `accelerate launch --mixed_precision` / a config file decides
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def model_identity(model_path: str, dtype: torch.dtype, mixed_precision: str) -> dict:
    """What the reference log-probs depend on besides the data (for the cache key)."""
    p = Path(model_path)
    ident: dict = {"model_path": str(p.resolve()) if p.exists() else model_path, "dtype": str(dtype),
                   "mixed_precision": mixed_precision}
    if p.is_dir():
        cfg_file = p / "config.json"
        ident["config_sha256"] = sha256_file(cfg_file) if cfg_file.is_file() else None
        ident["weights"] = sorted((f.name, f.stat().st_size, int(f.stat().st_mtime))
                                  for f in p.iterdir() if f.suffix in (".safetensors", ".bin"))
    return ident


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
    def __init__(self, cfg: DPOPTrainingConfig, levels: Sequence[PairLevel], run_args: dict | None = None):
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
        mp = _mixed_precision(cfg, device_guess)
        if mp is not None:
            kwargs["mixed_precision"] = mp
        if want_cpu:
            kwargs["cpu"] = True
        acc = Accelerator(**kwargs)
        if acc.distributed_type == DistributedType.DEEPSPEED:
            # No dataloader goes through prepare(), so DeepSpeed's batch sizes are set here.
            ds_cfg = acc.state.deepspeed_plugin.deepspeed_config
            ds_cfg["train_micro_batch_size_per_gpu"] = cfg.per_device_batch_size
            ds_cfg["gradient_accumulation_steps"] = cfg.grad_accum_steps
        self.acc = acc
        self.DistributedType = DistributedType

    def _load_model(self):
        from peft import LoraConfig, get_peft_model

        cfg, acc = self.cfg, self.acc
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
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        n_all = sum(p.numel() for p in model.parameters())
        logger.info("trainable parameters: %d of %d (%.3f%%)", n_train, n_all, 100.0 * n_train / max(1, n_all))
        self.model, self.tokenizer = model, tok

    def _tokenize(self):
        cfg = self.cfg
        ptok = PairTokenizer(self.tokenizer, cfg.max_length, cfg.prompt_format, cfg.append_eos, cfg.date_string)
        self.tokenized: list[list[TokenizedPair]] = []
        self.tokenize_stats = {}
        for lv in self.levels:
            kept, st = ptok.encode_all(lv.pairs, lv.name, progress=cfg.progress and self.acc.is_main_process)
            self.tokenized.append(kept)
            self.tokenize_stats[lv.name] = stats_dict(st)

    def _precompute_reference(self):
        """Reference log-probs for every kept pair of every level, from the cache beside the data or computed
        once (adapters disabled, same autocast as training) and cached.  Runs before ``prepare`` so no
        collective op is involved; the main process computes, the others read its cache."""
        cfg, acc = self.cfg, self.acc
        ident = model_identity(cfg.model_path, self.dtype, str(acc.mixed_precision))
        self.ref_values: list[tuple[list[float], list[float]]] = []
        self.ref_cache_files = []
        for lv, pairs in zip(self.levels, self.tokenized):
            key = ref_cache_key(ident, pairs)
            path = ref_cache_path(lv.data_path, key, fallback_dir=self.out)
            with acc.main_process_first():
                cached = load_ref_cache(path, key, len(pairs))
                if cached is None:
                    if not acc.is_main_process:
                        raise RuntimeError(f"reference cache {path} missing after the main process wrote it")
                    self.model.eval()
                    with torch.no_grad(), use_adapter(self.model, None), acc.autocast():
                        cached = compute_ref_logps(self.model, self.tokenizer.pad_token_id, pairs,
                                                   cfg.ref_batch_size, progress=cfg.progress)
                    self.model.train()
                    save_ref_cache(path, key, *cached, meta={"model": ident, "level": lv.name, "n_pairs": len(pairs)})
                    logger.info("reference log-probs for %s cached in %s", lv.name, path)
                else:
                    logger.info("reference log-probs for %s read from %s", lv.name, path)
            self.ref_values.append(cached)
            self.ref_cache_files.append(str(path))

    def _plan(self):
        cfg, acc = self.cfg, self.acc
        sizes = [len(t) for t in self.tokenized]
        if sum(sizes) == 0:
            raise ValueError("every pair was skipped (responses longer than --max_length?)")
        schedule = CurriculumSchedule(sizes, cfg.stage_fractions, cfg.seed, [lv.name for lv in self.levels])
        self.plan = plan_stages(schedule, cfg.epochs, cfg.per_device_batch_size * acc.num_processes *
                                cfg.grad_accum_steps)
        if acc.is_main_process:
            for d in self.plan.description:
                print(f"stage {d['stage']}: {d['n_pairs']} pairs {d['per_level']} -> {d['optimizer_steps']} "
                      f"optimizer steps of {self.plan.pairs_per_step} pairs ({d['wrapped_pairs']} wrapped round)")

    def _build_optimizer(self):
        from transformers import get_scheduler

        cfg = self.cfg
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        # Stepped by hand once per optimizer step (not prepared: accelerate would step it once per process).
        self.scheduler = get_scheduler(cfg.lr_scheduler, optimizer=self.optimizer,
                                       num_warmup_steps=min(cfg.warmup_steps, self.plan.total_steps),
                                       num_training_steps=self.plan.total_steps)

    # -- batches ------------------------------------------------------------------------------
    def _micro_batch(self, stage: int, step_in_stage: int, micro: int) -> list[tuple[int, int]]:
        """This process's rows of micro-batch ``micro``: process p takes rows p*B..(p+1)*B of each slice, so a
        2-process run with batch B matches a 1-process run with batch 2B."""
        bs, world = self.cfg.per_device_batch_size, self.acc.num_processes
        lo = micro * bs * world + self.acc.process_index * bs
        return self.plan.step_pairs(stage, step_in_stage)[lo: lo + bs]

    def _collate(self, refs: Sequence[tuple[int, int]]):
        ids, attn, rmask = collate_pairs([self.tokenized[lv][i] for lv, i in refs], self.tokenizer.pad_token_id,
                                         self.acc.device)
        ref = None
        if self.cfg.precompute_ref:
            rc = [self.ref_values[lv][0][i] for lv, i in refs]
            rr = [self.ref_values[lv][1][i] for lv, i in refs]
            ref = torch.tensor(rc + rr, dtype=torch.float32, device=self.acc.device)
        return ids, attn, rmask, ref

    def micro_step(self, refs: Sequence[tuple[int, int]]):
        ids, attn, rmask, ref = self._collate(refs)
        policy, ref = policy_and_reference_logps(self.model, ids, attn, rmask, ref,
                                                 unwrapped=self.acc.unwrap_model(self.model))
        pc, pr = policy.chunk(2)
        rc, rr = ref.chunk(2)
        loss, metrics = dpop_loss(pc, pr, rc, rr, beta=self.cfg.beta, lam=self.cfg.lam)
        self.acc.backward(loss)
        return loss.detach(), metrics

    # -- checkpoints --------------------------------------------------------------------------
    def _signature(self) -> dict:
        return {"world_size": self.acc.num_processes, **self.plan.signature(), "total_steps": self.plan.total_steps}

    # -- the loop -----------------------------------------------------------------------------
    def _start_position(self):
        """Resume from a checkpoint, or from the study's --start-epoch/--resume-step, or from the start."""
        cfg = self.cfg
        ckpts = self.checkpoints.complete() if cfg.resume else []
        if cfg.resume and ckpts:
            self.checkpoints.load(ckpts[-1], self.model, self.state, self._signature())
            return True
        if cfg.resume:
            logger.warning("--resume: no checkpoint in %s; starting from the beginning", self.checkpoints.root)
        self.checkpoints.discard_all()
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
        set_seed(cfg.seed)
        if acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
        acc.wait_for_everyone()
        self._load_model()
        self._tokenize()
        self._plan()
        if cfg.precompute_ref:
            self._precompute_reference()
        self._build_optimizer()
        self.model, self.optimizer = acc.prepare(self.model, self.optimizer)
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
        gradient norm (None without clipping)."""
        cfg, acc = self.cfg, self.acc
        grad_norm = None
        for micro in range(cfg.grad_accum_steps):
            with acc.accumulate(self.model):
                loss, metrics = self.micro_step(self._micro_batch(stage, self.state.step_in_stage, micro))
                if acc.sync_gradients and cfg.max_grad_norm and cfg.max_grad_norm > 0:
                    grad_norm = acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
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


def train_dpop(cfg: DPOPTrainingConfig, levels: Sequence[PairLevel], run_args: dict | None = None) -> TrainResult:
    return DPOPTrainer(cfg, levels, run_args).train()
