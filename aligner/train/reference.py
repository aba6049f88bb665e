"""The reference log-probs cached per pair (``--precompute_ref``).

The reference is the base model (the policy with its adapters disabled); it never changes during a run, so its
summed response log-probs are a function of the pair.  With ``--precompute_ref`` every distinct pair of the run is
scored once before training, the values are kept per pair, and every later use reads them: the easy pairs, which
come back in all four curriculum stages, cost one reference forward instead of four, and a second run on the same
data (another loss, another learning rate) reads them all.

Key: each pair by the sha256 of its token ids and response spans (``pair_key``); each cache file by the identity
of the reference computation (``reference_identity``: the model path, its config and weight files, the weights'
dtype, the autocast, the layout and the attention kernel).  One file per difficulty level, next to the level's data
file (``<data dir>/<stem>.ref_logps.<identity hash>.json``, or in the output folder when the data folder is
read-only); entries are added, never replaced, and a file made for another identity is left alone.

How far from the live values: the cached value of a pair comes from a forward over other pairs in other rows than
the live reference's (batches are formed among the pairs to score, longest first), so it differs from the live
value by kernel rounding only: in fp32 within 1e-5 of it relative (the same bound as packed against padded; measured
on the Llama-3.2-shaped test model: 1.1e-7), under bf16 autocast within the bf16 tolerance of 0.01 nats per response
token (the tolerance of any bf16 forward against fp32; measured: 0.0004).  So step 1 of a LoRA run, where policy = reference, has a margin of
that rounding and not exactly 0 (the live reference gives exactly 0).

Sharding: the pairs not in the cache are split over the processes (process p takes every p-th), each computes its
share, the values are gathered to every process and the main process writes the file.  The one collective per call
is the gather, after the forwards (no process works inside a barrier while the others wait).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from aligner.core.io import DataError, read_json, sha256_file, write_json_atomic
from aligner.train.pair_tokens import TokenizedPair

logger = logging.getLogger(__name__)

CACHE_VERSION = 2


def model_identity(model_path: str, dtype: torch.dtype, mixed_precision: str) -> dict:
    """What the reference log-probs depend on besides the pairs: the model folder's config and weight files, the
    weights' dtype and the autocast."""
    p = Path(model_path)
    ident: dict = {"model_path": str(p.resolve()) if p.exists() else model_path, "dtype": str(dtype),
                   "mixed_precision": mixed_precision}
    if p.is_dir():
        cfg_file = p / "config.json"
        ident["config_sha256"] = sha256_file(cfg_file) if cfg_file.is_file() else None
        ident["weights"] = sorted((f.name, f.stat().st_size, int(f.stat().st_mtime))
                                  for f in p.iterdir() if f.suffix in (".safetensors", ".bin"))
    return ident


def reference_identity(model_path: str, dtype: torch.dtype, mixed_precision: str, layout: str,
                       attention: str) -> dict:
    """The cache file's identity: ``model_identity`` plus the layout and attention kernel of the computation."""
    ident = {"version": CACHE_VERSION, **model_identity(model_path, dtype, mixed_precision), "layout": layout,
             "attention": attention}
    return json.loads(json.dumps(ident))  # as the file holds it (lists, not tuples), so the two compare equal


def pair_key(pair: TokenizedPair) -> str:
    """A pair's key: the sha256 of both sequences' token ids and response starts."""
    enc = json.dumps([pair.chosen.response_start, pair.chosen.input_ids,
                      pair.rejected.response_start, pair.rejected.input_ids], separators=(",", ":"))
    return hashlib.sha256(enc.encode()).hexdigest()[:32]


def cache_path(data_file: str | os.PathLike, identity: dict, fallback_dir: str | os.PathLike) -> Path:
    """``<data dir>/<data stem>.ref_logps.<identity hash[:16]>.json``; in ``fallback_dir`` when the data folder is
    not writable."""
    data_file = Path(data_file)
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    name = f"{data_file.stem}.ref_logps.{digest}.json"
    folder = data_file.parent if os.access(data_file.parent, os.W_OK) else Path(fallback_dir)
    return folder / name


def read_cache(path: str | os.PathLike, identity: dict) -> dict[str, tuple[float, float]]:
    """The cached {pair key: (ref chosen, ref rejected)} of ``path``; empty when absent, unreadable or made for
    another identity (logged)."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        obj = read_json(path)
    except DataError as err:
        logger.warning("ignoring an unreadable reference cache (%s)", err)
        return {}
    if not isinstance(obj, dict) or obj.get("identity") != identity or not isinstance(obj.get("pairs"), dict):
        logger.warning("%s was made for another reference computation; not used", path)
        return {}
    return {k: (float(v[0]), float(v[1])) for k, v in obj["pairs"].items()}


def write_cache(path: str | os.PathLike, identity: dict, entries: dict[str, tuple[float, float]]) -> Path:
    return write_json_atomic(path, {"identity": identity, "pairs": {k: list(v) for k, v in sorted(entries.items())}},
                             indent=None)


def _gather_values(acc, values: torch.Tensor, n_total: int) -> torch.Tensor:
    """Every process's (m_p, 2) values, process p holding items p, p + world, ...; returns all (n_total, 2) in
    item order on every process."""
    world = acc.num_processes
    per = -(-n_total // world)
    padded = torch.zeros(per, 2, dtype=torch.float32, device=acc.device)
    padded[: values.shape[0]] = values
    gathered = acc.gather(padded).view(world, per, 2).cpu()
    out = torch.empty(n_total, 2, dtype=torch.float32)
    for p in range(world):
        mine = gathered[p][: len(range(p, n_total, world))]
        out[p::world] = mine
    return out


def _all_agree(acc, count: int) -> bool:
    t = torch.tensor([count], device=acc.device)
    seen = acc.gather(t)
    return bool((seen == seen[0]).all().item())


def fill_reference(acc, pairs: Sequence[TokenizedPair], known: dict[str, tuple[float, float]],
                   score: Callable[[list[TokenizedPair]], torch.Tensor]) -> tuple[dict[str, tuple[float, float]], int]:
    """``known`` completed with the reference values of every pair of ``pairs`` it lacks: ``score(share)`` returns
    the (2n,) values [chosen..., rejected...] of this process's share of the missing pairs (the caller batches
    them, sets no_grad, adapters off and the autocast).  Returns (the values of every pair, how many were
    computed).  When the processes disagree on what is missing (caches read from different disks), every pair is
    recomputed."""
    distinct: dict[str, TokenizedPair] = {}
    for p in pairs:
        distinct.setdefault(pair_key(p), p)
    missing = [k for k in distinct if k not in known]
    if not _all_agree(acc, len(missing)):
        logger.warning("the processes found different reference caches; recomputing every pair")
        known, missing = {}, list(distinct)
    if not missing:
        return dict(known), 0
    share = missing[acc.process_index::acc.num_processes]
    values = score([distinct[k] for k in share]) if share else torch.zeros(0)
    local = torch.stack(values.float().chunk(2), dim=1) if share else torch.zeros(0, 2)
    every = _gather_values(acc, local.to(acc.device), len(missing))
    out = dict(known)
    out.update({k: (float(c), float(r)) for k, (c, r) in zip(missing, every.tolist())})
    return out, len(missing)


def cached_reference(acc, pairs_by_file: dict[Path, list[TokenizedPair]], identity: dict, fallback_dir: Path,
                     score: Callable[[list[TokenizedPair]], torch.Tensor]) -> tuple[dict[str, tuple[float, float]], dict]:
    """The reference values of every pair of ``pairs_by_file`` (data file -> the pairs of it the run uses): read
    from each file's cache, the missing ones computed (``fill_reference``) and added to the caches.  Returns (pair
    key -> (chosen, rejected), a record for run_config.json: cache files, pairs computed and read)."""
    paths = {f: cache_path(f, identity, fallback_dir) for f in pairs_by_file}
    cached = {f: read_cache(path, identity) for f, path in paths.items()}
    known = {k: v for entries in cached.values() for k, v in entries.items()}
    every = [p for pairs in pairs_by_file.values() for p in pairs]
    values, computed = fill_reference(acc, every, known, score)
    if acc.is_main_process and computed:
        for f, path in paths.items():
            write_cache(path, identity, {**cached[f], **{k: values[k] for k in map(pair_key, pairs_by_file[f])}})
    acc.wait_for_everyone()
    distinct = len({pair_key(p) for p in every})
    logger.info("reference log-probs: %d pairs computed, %d read from the cache", computed, distinct - computed)
    return values, {"per_pair_cache": [str(p) for p in paths.values()], "computed": computed,
                    "read": distinct - computed}
