"""Run by tests/test_train_scale.py under torchrun (2 CPU processes, gloo): FSDP1 on the trainer's kind of LoRA
model (bf16 base, fp32 LoRA weights: PEFT's default), with the wrap policy and mixed precision the trainer
installs (aligner.train.accel).  accelerate cannot run FSDP on CPU (it falls back to DDP or to one process), so
this calls torch's FSDP directly with the settings accelerate would pass.

Writes a JSON report: whether decoder-layer-only wrapping fails (the bug), the (dtype, requires_grad) of every wrap
unit with the LoRA policy, and the pre-clip gradient norm of one DPOP-style step with each process taking half the
batch, against the same step without FSDP on the whole batch.

usage: torchrun --nproc_per_node 2 tests/fsdp_lora_worker.py MODEL_DIR OUT_JSON USE_ORIG_PARAMS(true|false)
"""

import json
import sys

import torch
import torch.distributed as dist


def build(model_dir):
    from peft import LoraConfig, get_peft_model

    from aligner.core.logprobs import accepts_logits_to_keep
    from aligner.core.models import load_causal_lm

    base, _ = load_causal_lm(model_dir, dtype=torch.bfloat16, device="cpu")
    torch.manual_seed(0)  # random B (init_lora_weights=False), so both LoRA matrices get gradients
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                                            task_type="CAUSAL_LM", init_lora_weights=False))
    model.train()
    accepts_logits_to_keep(model)  # the trainer probes at load, before any wrapper
    return model


def batch(vocab):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, vocab, (4, 12), generator=g)
    attn = torch.ones_like(ids)
    rmask = torch.zeros_like(ids, dtype=torch.bool)
    rmask[:, 7:] = True
    return ids, attn, rmask


def step_loss(model, ids, attn, rmask):
    from aligner.core.logprobs import batch_response_logprobs

    with torch.autocast("cpu", dtype=torch.bfloat16):
        return -batch_response_logprobs(model, ids, attn, rmask).mean()


def grad_norm(params):
    return torch.sqrt(sum((p.grad.float() ** 2).sum() for p in params if p.grad is not None)).item()


def main(model_dir, out_json, use_orig_params):
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp import MixedPrecision
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    from aligner.train.accel import fsdp_lora_wrap_policy, fsdp_mixed_precision, fsdp_unit_dtypes

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    report = {"world": world}

    plain = build(model_dir)
    report["lora_dtypes"] = sorted({str(p.dtype) for n, p in plain.named_parameters() if "lora_" in n})
    report["base_dtypes"] = sorted({str(p.dtype) for n, p in plain.named_parameters() if "lora_" not in n})
    ids, attn, rmask = batch(plain.get_output_embeddings().weight.shape[0])
    step_loss(plain, ids, attn, rmask).backward()
    report["plain_grad_norm"] = grad_norm([p for p in plain.parameters() if p.requires_grad])
    del plain

    # accelerate's FSDP1 bf16 defaults: param, reduce and buffer dtype bf16; the trainer reduces in fp32
    accel_default = MixedPrecision(param_dtype=torch.bfloat16, reduce_dtype=torch.bfloat16,
                                   buffer_dtype=torch.bfloat16)
    common = dict(use_orig_params=use_orig_params, device_id=torch.device("cpu"),
                  mixed_precision=fsdp_mixed_precision(accel_default))
    layers_only = transformer_auto_wrap_policy
    try:
        import functools

        FSDP(build(model_dir), auto_wrap_policy=functools.partial(layers_only, transformer_layer_cls={LlamaDecoderLayer}),
             **common)
        report["layers_only_error"] = None
    except ValueError as err:
        report["layers_only_error"] = str(err).splitlines()[0]

    model = build(model_dir)
    fsdp = FSDP(model, auto_wrap_policy=fsdp_lora_wrap_policy(model), **common)
    report["units"] = fsdp_unit_dtypes(fsdp)
    rows = slice(rank * 4 // world, (rank + 1) * 4 // world)
    step_loss(fsdp, ids[rows], attn[rows], rmask[rows]).backward()
    report["fsdp_grad_norm"] = float(fsdp.clip_grad_norm_(float("inf")))
    opt = torch.optim.AdamW([p for p in fsdp.parameters() if p.requires_grad], lr=1e-3)
    before = [p.detach().clone() for p in fsdp.parameters() if p.requires_grad]
    opt.step()
    after = [p.detach() for p in fsdp.parameters() if p.requires_grad]
    report["step_changed_params"] = bool(any(not torch.equal(a, b) for a, b in zip(before, after)))
    report["step_finite"] = bool(all(torch.isfinite(a).all() for a in after))
    if rank == 0:
        with open(out_json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=1)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3].lower() == "true")
