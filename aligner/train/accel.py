"""What the DPOP trainer sets on ``accelerate`` for real hardware (one place, each rule with its reason):

* **Mixed precision**: ``auto`` is bf16 on CUDA cards with native bf16 (Ampere and later), fp16 with a gradient
  scaler on older cards (``aligner.core.models.native_bf16``: emulated bf16 does not count), none on CPU; an
  ``accelerate launch --mixed_precision`` / config file decides when set.
* **Logits stay in their compute dtype**: with native autocast, ``accelerate.prepare`` wraps the forward in
  ``convert_outputs_to_fp32``, which turns every kept logit to fp32 at once (``[N, V]`` x 4 bytes).  The trainer
  removes that wrapper (autocast stays) so that ``aligner.core.logprobs`` upcasts ``LOGSUMEXP_CHUNK`` rows at a
  time, forward and backward.
* **DeepSpeed**: ``--max_grad_norm`` is the one source of the clipping threshold.  It is written into the ZeRO
  config's ``gradient_clipping`` before ``prepare`` (0 is written as 0.0, which disables clipping; an absent key
  would mean DeepSpeed's own default, 1.0 since DeepSpeed 0.19.3); a config that sets another number is refused.
  Under ZeRO-1/2 the module holds the full adapter on every rank, so the adapter is saved by the main process
  from the module itself; only ZeRO-3 (and FSDP) need the collective state-dict gather.  Checkpoints leave out the
  frozen base (``exclude_frozen_parameters``).
* **FSDP1 with LoRA**: FSDP1 flattens each wrap unit into one parameter of one dtype (and, without
  ``use_orig_params``, one ``requires_grad``), but a bf16 base layer holds fp32 LoRA weights.  PEFT's
  ``fsdp_auto_wrap_policy`` gives every LoRA Linear its own unit (beside the decoder-layer units), so each unit is
  uniform; FSDP's mixed precision casts the fp32 LoRA masters to bf16 for compute, and gradients are reduced in
  fp32.  FSDP2 (``fsdp_version: 2``) keeps per-parameter dtypes and needs no policy; accelerate makes the
  trainable parameters fp32 there.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from types import MethodType

import torch

from aligner.core.io import AlignerError
from aligner.core.models import native_bf16

logger = logging.getLogger(__name__)


class DistributedConfigError(AlignerError, ValueError):
    pass


def choose_mixed_precision(setting: str, device: torch.device) -> str | None:
    """The ``mixed_precision`` to give ``Accelerator`` (None: leave it to ``accelerate launch``)."""
    if setting != "auto":
        return setting
    if os.environ.get("ACCELERATE_MIXED_PRECISION"):
        return None  # `accelerate launch --mixed_precision` / a config file decides
    if device.type == "cuda":
        return "bf16" if native_bf16() else "fp16"
    return "no"


def reset_single_process_state() -> None:
    """accelerate keeps one process-wide state; a second run in the same (single) process with other settings
    (mixed precision, CPU) would be refused, so a leftover single-process state is cleared first."""
    from accelerate.state import AcceleratorState, PartialState

    if PartialState._shared_state and PartialState._shared_state.get("num_processes", 1) == 1:
        AcceleratorState._reset_state(reset_partial_state=True)


# ---------------------------------------------------------------------------------------------
# DeepSpeed
# ---------------------------------------------------------------------------------------------

def reconcile_deepspeed_config(ds_cfg: dict, max_grad_norm: float, micro_batch: int, accum: int) -> dict:
    """Write the trainer's batch sizes and clipping threshold into a DeepSpeed config (in place) before
    ``prepare``; refuse a config whose ``gradient_clipping`` is a number other than ``--max_grad_norm``."""
    clip = float(max_grad_norm) if max_grad_norm and max_grad_norm > 0 else 0.0
    given = ds_cfg.get("gradient_clipping", "auto")
    if given not in (None, "auto"):
        if abs(float(given) - clip) > 1e-12:
            raise DistributedConfigError(
                f"the DeepSpeed config sets gradient_clipping {given} but --max_grad_norm is {max_grad_norm}: set "
                f"gradient_clipping: auto in the accelerate/DeepSpeed config (the trainer fills it from "
                f"--max_grad_norm) or pass --max_grad_norm {given}")
    ds_cfg["gradient_clipping"] = clip
    # No dataloader goes through prepare(), so DeepSpeed's batch sizes are set here.
    ds_cfg["train_micro_batch_size_per_gpu"] = micro_batch
    ds_cfg["gradient_accumulation_steps"] = accum
    return ds_cfg


def deepspeed_zero_stage(acc) -> int | None:
    """The ZeRO stage of a DeepSpeed run, None for other distributed types."""
    if "DEEPSPEED" not in str(acc.distributed_type):
        return None
    cfg = acc.state.deepspeed_plugin.deepspeed_config
    return int(cfg.get("zero_optimization", {}).get("stage", 0))


def adapter_save_needs_gather(acc) -> bool:
    """Whether the adapter weights must be gathered by a collective state dict (FSDP, ZeRO-3), or can be read from
    the module by the main process alone (one process, DDP, ZeRO-0/1/2)."""
    if "FSDP" in str(acc.distributed_type):
        return True
    stage = deepspeed_zero_stage(acc)
    return stage is not None and stage >= 3


def checkpoint_kwargs(acc) -> tuple[dict, dict]:
    """Extra arguments for ``save_state`` / ``load_state``: under DeepSpeed the engine's checkpoint would hold the
    whole frozen base, so only trainable parameters are written (and loaded non-strictly)."""
    if deepspeed_zero_stage(acc) is None:
        return {}, {}
    return {"exclude_frozen_parameters": True}, {"load_module_strict": False}


# ---------------------------------------------------------------------------------------------
# FSDP
# ---------------------------------------------------------------------------------------------

def fsdp_lora_wrap_policy(model):
    """FSDP1 auto-wrap policy for a PEFT model: each leaf module with a trainable weight (every lora_A / lora_B
    Linear) is its own unit, and the decoder layers (``FSDP_TRANSFORMER_CLS_TO_WRAP``, which accelerate sets from
    ``fsdp_transformer_layer_cls_to_wrap``, else the model's ``_no_split_modules``) are units of frozen weights."""
    from peft.utils.other import fsdp_auto_wrap_policy

    return fsdp_auto_wrap_policy(model)


def fsdp_mixed_precision(policy, reduce_dtype: torch.dtype = torch.float32):
    """The same FSDP mixed-precision policy with gradients reduced in fp32 (LoRA gradients are small)."""
    if policy is None or not dataclasses.is_dataclass(policy):
        return policy
    return dataclasses.replace(policy, reduce_dtype=reduce_dtype)


def prepare_fsdp_for_lora(acc, model) -> int | None:
    """Set the FSDP plugin up for a LoRA model before ``prepare``; returns the FSDP version (None: not FSDP)."""
    if "FSDP" not in str(acc.distributed_type):
        return None
    plugin = acc.state.fsdp_plugin
    version = int(getattr(plugin, "fsdp_version", 1) or 1)
    if version == 1:
        plugin.auto_wrap_policy = fsdp_lora_wrap_policy(model)
    plugin.mixed_precision_policy = fsdp_mixed_precision(plugin.mixed_precision_policy)
    logger.info("FSDP%d for LoRA: %s", version, "a unit per LoRA Linear + decoder layers" if version == 1
                else "per-parameter dtypes (fully_shard)")
    return version


def fsdp_unit_dtypes(model) -> list[dict]:
    """For an FSDP1-wrapped model: per wrap unit, the dtypes and requires_grad flags of the parameters it holds
    (the original parameters, before flattening).  A unit FSDP1 can flatten has one of each."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    units = []
    for name, mod in model.named_modules():
        if isinstance(mod, FSDP):
            handle = getattr(mod, "_handle", None)
            if handle is None:
                continue
            flat = handle.flat_param
            infos = getattr(flat, "_param_infos", [])
            units.append({"unit": name or "<root>", "dtype": str(flat.dtype), "requires_grad": flat.requires_grad,
                          "n_params": len(infos)})
    return units


# ---------------------------------------------------------------------------------------------
# the fp32 output upcast
# ---------------------------------------------------------------------------------------------

def drop_fp32_output_upcast(acc, model) -> bool:
    """Remove accelerate's ``convert_outputs_to_fp32`` from a prepared model's forward, keeping its autocast;
    returns whether there was one.  The logits then come out in the autocast dtype and are upcast chunk by chunk."""
    from accelerate.utils.operations import ConvertOutputsToFp32

    inner = acc.unwrap_model(model)  # the module whose forward accelerate patched (inside DDP / FSDP1)
    fwd = inner.forward
    func = getattr(fwd, "__func__", fwd)
    conv = getattr(func, "__wrapped__", None)
    if not isinstance(conv, ConvertOutputsToFp32):
        return False
    if hasattr(fwd, "__func__") and not hasattr(conv.model_forward, "__self__"):
        inner.forward = MethodType(conv.model_forward, inner)
    else:
        inner.forward = conv.model_forward
    return True
