"""The precomputed reference (``--precompute_ref``): the reference log-probs of every micro-batch of a run,
computed once in the training batch layout and cached next to the data.

Why the layout: the live reference is a forward of the very rows the policy sees, chosen and rejected together,
padded to the same width, under the same autocast.  A reference computed in another layout (sorted by length, other
batch sizes, so other padding) differs from it by kernel rounding, most visibly in bf16 on GPU, and then at step 1,
where policy = reference, the margin and the positive term are not exactly 0.  So the cache holds one value per
(stage, optimizer step, micro-batch, process, row) of the plan, computed with the micro-batch the trainer will
build there; a run reads exactly what the live reference would have computed.

Sharding: each process computes its own rows of every micro-batch (the rows it trains on), the values are
gathered to every process, and the main process writes the cache.  No process works inside a barrier while the
others wait (the NCCL watchdog kills collectives that wait longer than 600 s); the one collective is the final
gather.  The cache key covers the reference model, every pair's tokens and the layout (the plan's pair order,
per-device batch size, process count), so a run with another layout computes its own.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path

import torch

from aligner.core.io import sha256_file
from aligner.train.preference import load_ref_cache, save_ref_cache

logger = logging.getLogger(__name__)


def model_identity(model_path: str, dtype: torch.dtype, mixed_precision: str) -> dict:
    """What the reference log-probs depend on besides the data and the layout (for the cache key)."""
    p = Path(model_path)
    ident: dict = {"model_path": str(p.resolve()) if p.exists() else model_path, "dtype": str(dtype),
                   "mixed_precision": mixed_precision}
    if p.is_dir():
        cfg_file = p / "config.json"
        ident["config_sha256"] = sha256_file(cfg_file) if cfg_file.is_file() else None
        ident["weights"] = sorted((f.name, f.stat().st_size, int(f.stat().st_mtime))
                                  for f in p.iterdir() if f.suffix in (".safetensors", ".bin"))
    return ident


def layout_signature(plan, per_device_batch_size: int, world_size: int) -> dict:
    """What decides which rows share a micro-batch (and so its padding)."""
    orders = json.dumps([[s, plan.orders[s]] for s in plan.stages]).encode()
    return {"orders_sha256": hashlib.sha256(orders).hexdigest(), "pairs_per_step": plan.pairs_per_step,
            "per_device_batch_size": int(per_device_batch_size), "world_size": int(world_size)}


def _all_processes_agree(acc, flag: bool) -> bool:
    t = torch.tensor([1 if flag else 0], device=acc.device)
    return bool(acc.gather(t).min().item() == 1)


def _compute_local(keys: Sequence[Hashable], forward: Callable, rows: int, device, progress: bool) -> torch.Tensor:
    from tqdm.auto import tqdm

    local = torch.empty(len(keys), rows, dtype=torch.float32, device=device)
    for i, key in enumerate(tqdm(keys, desc="reference log-probs", disable=not progress, unit="micro-batch")):
        values = forward(key)
        if values.shape != (rows,):
            raise RuntimeError(f"micro-batch {key} gave {tuple(values.shape)} reference values, expected ({rows},)")
        local[i] = values.float()
    return local


def precomputed_reference(acc, keys: Sequence[Hashable], forward: Callable[[Hashable], torch.Tensor], rows: int,
                          path: str | Path, cache_key: str, meta: dict | None = None,
                          progress: bool = False) -> dict[Hashable, torch.Tensor]:
    """This process's reference values per micro-batch key (a (rows,) fp32 tensor on ``acc.device``: chosen rows
    then rejected rows, as the micro-batch is laid out).  ``forward(key)`` computes them for one micro-batch (the
    caller sets no_grad, adapters off and the autocast); ``keys`` are the run's micro-batches in order, the same on
    every process.  Read from ``path`` when every process finds a cache made for ``cache_key``."""
    world, rank, half = acc.num_processes, acc.process_index, rows // 2
    n = len(keys) * world * half  # values per side (chosen / rejected) over the whole run
    cached = load_ref_cache(path, cache_key, n)
    if _all_processes_agree(acc, cached is not None):
        logger.info("reference log-probs read from %s", path)
        chosen = torch.tensor(cached[0], dtype=torch.float32).view(len(keys), world, half)
        rejected = torch.tensor(cached[1], dtype=torch.float32).view(len(keys), world, half)
    else:
        local = _compute_local(keys, forward, rows, acc.device, progress and acc.is_main_process)
        gathered = acc.gather(local).view(world, len(keys), rows).transpose(0, 1).cpu()  # (keys, world, rows)
        chosen, rejected = gathered[..., :half], gathered[..., half:]
        if acc.is_main_process:
            save_ref_cache(path, cache_key, chosen.reshape(-1).tolist(), rejected.reshape(-1).tolist(),
                           meta={**(meta or {}), "n_micro_batches": len(keys), "world_size": world, "rows": rows})
            logger.info("reference log-probs of %d micro-batches cached in %s", len(keys), path)
        acc.wait_for_everyone()
    mine = torch.cat([chosen[:, rank], rejected[:, rank]], dim=1).to(acc.device)  # (keys, rows)
    return {key: mine[i] for i, key in enumerate(keys)}
