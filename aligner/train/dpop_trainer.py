"""Curriculum DPOP training of a LoRA adapter, built on ``accelerate``.

One optimizer and one LR schedule (warmup counted in optimizer steps) span every curriculum stage.  Per
micro-batch the policy runs once over the chosen and rejected sequences concatenated (2B rows), with only the
response positions projected onto the vocabulary (``aligner.logprobs.batch_response_logprobs``); the reference
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
import math
import os
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from aligner.core.io import ResumableJsonlWriter, read_json, sha256_file, write_json_atomic, write_jsonl_atomic
from aligner.core.logprobs import batch_response_logprobs, pad_sequences, response_mask
from aligner.core.models import attach_adapters, load_causal_lm, resolve_device, resolve_dtype, use_adapter
from aligner.core.runinfo import write_run_config
from aligner.train.config import DPOPTrainingConfig
from aligner.train.curriculum import CurriculumSchedule, n_stages_for
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

CHECKPOINT_DIR = "checkpoints"
TRAIN_LOG = "train_log.jsonl"
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


@dataclass
class TrainResult:
    output_dir: Path
    global_step: int
    completed: bool
    last_log: dict


# ---------------------------------------------------------------------------------------------
# data helpers used by the scripts
# ---------------------------------------------------------------------------------------------


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
        ptok = PairTokenizer(self.tokenizer, cfg.max_length, cfg.prompt_format, cfg.append_eos)
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
        self.schedule = CurriculumSchedule(sizes, cfg.stage_fractions, cfg.seed,
                                           [lv.name for lv in self.levels])
        self.stages = self.schedule.stages(cfg.epochs)
        self.pairs_per_step = cfg.per_device_batch_size * acc.num_processes * cfg.grad_accum_steps
        self.stage_orders: dict[int, list[tuple[int, int]]] = {}
        self.stage_steps: dict[int, int] = {}
        for s in self.stages:
            order = self.schedule.stage_order(s)
            if not order:
                logger.warning("stage %d has no pairs (its levels are empty); it is skipped", s)
            n_steps = math.ceil(len(order) / self.pairs_per_step)
            pad = n_steps * self.pairs_per_step - len(order)
            order = order + [order[i % len(order)] for i in range(pad)]
            self.stage_orders[s], self.stage_steps[s] = order, n_steps
        self.total_steps = sum(self.stage_steps.values())
        desc = self.schedule.describe(cfg.epochs)
        for d in desc:
            d["optimizer_steps"] = self.stage_steps[d["stage"]]
            d["wrapped_pairs"] = d["optimizer_steps"] * self.pairs_per_step - d["n_pairs"]
        self.plan_description = desc
        if acc.is_main_process:
            for d in desc:
                print(f"stage {d['stage']}: {d['n_pairs']} pairs {d['per_level']} -> {d['optimizer_steps']} "
                      f"optimizer steps of {self.pairs_per_step} pairs ({d['wrapped_pairs']} wrapped round)")

    def _build_optimizer(self):
        from transformers import get_scheduler

        cfg = self.cfg
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        # Stepped by hand once per optimizer step (not prepared: accelerate would step it once per process).
        self.scheduler = get_scheduler(cfg.lr_scheduler, optimizer=self.optimizer,
                                       num_warmup_steps=min(cfg.warmup_steps, self.total_steps),
                                       num_training_steps=self.total_steps)

    # -- batches ------------------------------------------------------------------------------
    def _micro_batch(self, stage: int, step_in_stage: int, micro: int) -> list[tuple[int, int]]:
        cfg, acc = self.cfg, self.acc
        bs, world = cfg.per_device_batch_size, acc.num_processes
        lo = step_in_stage * self.pairs_per_step + micro * bs * world + acc.process_index * bs
        return self.stage_orders[stage][lo: lo + bs]

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
    def _register_checkpointing(self):
        acc = self.acc

        def save_hook(models, weights, output_dir):
            weights.clear()  # the adapter is saved by _save_checkpoint; never the frozen base weights

        def load_hook(models, input_dir):
            models.clear()  # loaded by _load_checkpoint

        acc.register_save_state_pre_hook(save_hook)
        acc.register_load_state_pre_hook(load_hook)
        self.state = TrainState()
        acc.register_for_checkpointing(self.scheduler, self.state)

    def _save_adapter(self, path: Path, with_tokenizer: bool = False) -> None:
        acc = self.acc
        state = acc.get_state_dict(self.model)  # collective under FSDP / DeepSpeed ZeRO-3
        if acc.is_main_process:
            path.mkdir(parents=True, exist_ok=True)
            acc.unwrap_model(self.model).save_pretrained(str(path), state_dict=state, safe_serialization=True)
            if with_tokenizer:
                self.tokenizer.save_pretrained(str(path))
        acc.wait_for_everyone()

    def _checkpoints(self) -> list[Path]:
        root = self.out / CHECKPOINT_DIR
        if not root.is_dir():
            return []
        done = [p for p in root.glob("step_*") if p.is_dir() and p.name[5:].isdigit() and (p / STATE_FILE).is_file()]
        return sorted(done, key=lambda p: int(p.name[5:]))

    def _save_checkpoint(self) -> None:
        acc = self.acc
        root = self.out / CHECKPOINT_DIR
        final = root / f"step_{self.state.global_step}"
        tmp = root / f"step_{self.state.global_step}.tmp"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        self._save_adapter(tmp)
        if acc.is_main_process:
            write_json_atomic(tmp / STATE_FILE, {**self.state.state_dict(), **self._plan_signature(),
                                                 "total_steps": self.total_steps})
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)  # a checkpoint exists only once complete
            if self.cfg.save_total_limit > 0:
                for old in self._checkpoints()[: -self.cfg.save_total_limit]:
                    shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()

    def _plan_signature(self) -> dict:
        return {"world_size": self.acc.num_processes, "pairs_per_step": self.pairs_per_step,
                "stage_steps": {str(k): v for k, v in self.stage_steps.items()}}

    def _load_checkpoint(self, ckpt: Path) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        saved = read_json(ckpt / STATE_FILE)
        mine = self._plan_signature()
        for k, v in mine.items():
            if saved.get(k) != v:
                raise RuntimeError(f"cannot resume from {ckpt}: it was made with {k}={saved.get(k)}, this run has {v} "
                                   "(same data, batch size, grad accumulation and process count are needed)")
        self.acc.load_state(str(ckpt))
        if self.acc.distributed_type not in (self.DistributedType.FSDP, self.DistributedType.DEEPSPEED):
            weights = load_file(str(ckpt / "adapter_model.safetensors"))
            result = set_peft_model_state_dict(self.acc.unwrap_model(self.model), weights)
            missing = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
            if missing:
                raise RuntimeError(f"adapter weights in {ckpt} do not match the model: {missing[:3]}")
        logger.info("resumed from %s (global step %d, stage %d, step %d of the stage)", ckpt,
                    self.state.global_step, self.state.stage, self.state.step_in_stage)

    # -- the loop -----------------------------------------------------------------------------
    def _start_position(self):
        """Resume from a checkpoint, or from the study's --start-epoch/--resume-step, or from the start."""
        cfg = self.cfg
        ckpts = self._checkpoints() if cfg.resume else []
        if cfg.resume and ckpts:
            self._load_checkpoint(ckpts[-1])
            return True
        if cfg.resume:
            logger.warning("--resume: no checkpoint in %s; starting from the beginning", self.out / CHECKPOINT_DIR)
        if self.acc.is_main_process and (self.out / CHECKPOINT_DIR).is_dir():
            logger.warning("removing checkpoints of an earlier run in %s (pass --resume to continue it)",
                           self.out / CHECKPOINT_DIR)
            shutil.rmtree(self.out / CHECKPOINT_DIR)
        self.acc.wait_for_everyone()
        if cfg.start_epoch > 1 or cfg.resume_step > 0:
            # The study's manual resume: skip earlier stages and the micro-batches already trained, and move
            # the LR schedule to where it was (the optimizer moments are not available this way).
            if cfg.start_epoch not in self.stage_steps:
                raise ValueError(f"--start-epoch {cfg.start_epoch} is not one of the stages {self.stages}")
            done_in_stage = min(cfg.resume_step // cfg.grad_accum_steps, self.stage_steps[cfg.start_epoch])
            before = sum(self.stage_steps[s] for s in self.stages if s < cfg.start_epoch)
            self.state.stage, self.state.step_in_stage = cfg.start_epoch, done_in_stage
            self.state.global_step = before + done_in_stage
            self.state.pairs_seen = self.state.global_step * self.pairs_per_step
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

    def train(self) -> TrainResult:
        cfg = self.cfg
        self._setup_accelerator()
        acc = self.acc
        from accelerate.utils import set_seed

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
        self._register_checkpointing()
        resumed = self._start_position()
        if acc.is_main_process:
            write_run_config(self.out, self.run_args, extra=self._run_extra())
        log = self._open_log(resumed)

        from tqdm.auto import tqdm

        bar = tqdm(total=self.total_steps, initial=self.state.global_step, desc="DPOP",
                   disable=not (cfg.progress and acc.is_main_process), unit="step")
        window_losses: list[torch.Tensor] = []
        window_metrics: dict[str, list[torch.Tensor]] = {k: [] for k in METRIC_NAMES}
        last_log: dict = {}
        t0 = time.perf_counter()
        steps_this_run = 0
        completed = True
        grad_norm = None
        for stage in self.stages:
            if stage < self.state.stage:
                continue
            if stage > self.state.stage:
                self.state.stage, self.state.step_in_stage = stage, 0
            while self.state.step_in_stage < self.stage_steps[stage]:
                if cfg.stop_after_steps is not None and steps_this_run >= cfg.stop_after_steps:
                    completed = False
                    break
                for micro in range(cfg.grad_accum_steps):
                    with acc.accumulate(self.model):
                        loss, metrics = self.micro_step(self._micro_batch(stage, self.state.step_in_stage, micro))
                        if acc.sync_gradients:
                            grad_norm = acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm) \
                                if cfg.max_grad_norm and cfg.max_grad_norm > 0 else None
                        self.optimizer.step()
                        self.optimizer.zero_grad(set_to_none=True)
                    window_losses.append(loss.reshape(1))
                    for k, v in metrics.items():
                        window_metrics[k].append(v)
                lr = self.scheduler.get_last_lr()[0]
                self.scheduler.step()
                self.state.global_step += 1
                self.state.step_in_stage += 1
                self.state.pairs_seen += self.pairs_per_step
                steps_this_run += 1
                if self.state.global_step % cfg.logging_steps == 0 or self.state.step_in_stage == self.stage_steps[stage]:
                    last_log = self._log_step(log, stage, lr, grad_norm, window_losses, window_metrics, t0,
                                              steps_this_run)
                    window_losses = []
                    window_metrics = {k: [] for k in METRIC_NAMES}
                    bar.set_postfix(loss=f"{last_log['loss']:.4f}", acc=f"{last_log['rewards/accuracies']:.2f}",
                                    stage=stage)
                bar.update(1)
                if cfg.save_every_steps and self.state.global_step % cfg.save_every_steps == 0:
                    self._save_checkpoint()
            if not completed:
                break
            self._save_adapter(self.out / f"epoch_{stage}")
            if acc.is_main_process:
                print(f"stage {stage} done: adapter saved to {self.out / f'epoch_{stage}'}")
        bar.close()
        if log is not None:
            log.close()
        if completed:
            self._save_adapter(self.out, with_tokenizer=True)
            if acc.is_main_process:
                write_run_config(self.out, self.run_args,
                                 extra={**self._run_extra(), "final": {"global_step": self.state.global_step,
                                                                       "last_log": last_log,
                                                                       "seconds": time.perf_counter() - t0}})
                print(f"training finished after {self.state.global_step} optimizer steps; adapter in {self.out}")
        else:
            logger.warning("stopped after %d optimizer steps (stop_after_steps); resume with --resume", steps_this_run)
        acc.wait_for_everyone()
        acc.end_training()
        return TrainResult(self.out, self.state.global_step, completed, last_log)

    def _log_step(self, log, stage, lr, grad_norm, losses, metrics, t0, steps_this_run) -> dict:
        acc = self.acc
        loss = acc.gather(torch.cat(losses)).double().mean().item()
        record = {"step": self.state.global_step, "stage": stage, "epoch": stage,
                  "step_in_stage": self.state.step_in_stage, "pairs_seen": self.state.pairs_seen, "lr": lr,
                  "loss": loss}
        for k, vals in metrics.items():
            record[k] = acc.gather(torch.cat(vals)).double().mean().item()
        if grad_norm is not None:
            record["grad_norm"] = float(grad_norm)
        record["pairs_per_s"] = steps_this_run * self.pairs_per_step / max(1e-9, time.perf_counter() - t0)
        if log is not None:
            log.append(record)
        return record

    def _run_extra(self) -> dict:
        return {
            "world_size": self.acc.num_processes,
            "distributed_type": str(self.acc.distributed_type),
            "mixed_precision": str(self.acc.mixed_precision),
            "model_dtype": str(self.dtype),
            "levels": {lv.name: {"file": str(lv.data_path), "load": lv.load_stats,
                                 "tokenize": self.tokenize_stats[lv.name]} for lv in self.levels},
            "curriculum": self.plan_description,
            "pairs_per_optimizer_step": self.pairs_per_step,
            "total_optimizer_steps": self.total_steps,
            "reference": ({"precomputed": True, "cache_files": self.ref_cache_files} if self.cfg.precompute_ref
                          else {"precomputed": False, "model": "policy with adapters disabled"}),
        }


def train_dpop(cfg: DPOPTrainingConfig, levels: Sequence[PairLevel], run_args: dict | None = None) -> TrainResult:
    return DPOPTrainer(cfg, levels, run_args).train()
