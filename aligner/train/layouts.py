"""The two batch layouts of a training forward, as functions of token ids (also used by the benchmarks).

* padded (``--layout padded``, the earlier one): the B pairs of a micro-batch as 2B right-padded rows,
  [chosen_1..chosen_B, rejected_1..rejected_B], every prompt computed twice (``collate_pairs``);
* packed (``--layout packed``): each pair's prompt once with both answers attending to it, several pairs to a row
  (``aligner.train.packing``).

Both return the summed response log-probs of the 2B sequences in the same order, with their response token counts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from aligner.core.logprobs import batch_response_logprobs, pad_sequences, response_mask
from aligner.core.models import use_adapter
from aligner.train.packing import build_packed_batch, packed_length, packed_response_logprobs, plan_micro_batches
from aligner.train.pair_tokens import TokenizedPair


def collate_pairs(pairs: Sequence[TokenizedPair], pad_id: int, device=None):
    """One right-padded batch of 2B rows, [chosen_1..chosen_B, rejected_1..rejected_B], with the response mask."""
    seqs = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    ids, attn = pad_sequences([s.input_ids for s in seqs], pad_id, "right", device)
    rmask = response_mask([s.response_start for s in seqs], [len(s.input_ids) for s in seqs], ids.shape[1], device)
    return ids, attn, rmask


def policy_and_reference_logps(model, ids, attn, rmask, ref: torch.Tensor | None = None, unwrapped=None):
    """(policy, reference) summed response log-probs, each (2B,), padded layout: one policy forward over
    chosen+rejected with grad, and, unless ``ref`` is given (cached), one forward of the same model with its adapters
    disabled under ``no_grad``.  ``unwrapped`` is the PeftModel inside a DDP/FSDP wrapper (default: ``model``)."""
    if ref is None:
        with torch.no_grad(), use_adapter(unwrapped if unwrapped is not None else model, None):
            ref = batch_response_logprobs(model, ids, attn, rmask)
    policy = batch_response_logprobs(model, ids, attn, rmask)
    return policy, ref


def score_pairs(model, pairs: Sequence[TokenizedPair], layout: str, pad_id: int, device, *, batch_size: int,
                max_tokens: int, row_tokens: int) -> torch.Tensor:
    """Summed response log-probs (2n,) [chosen..., rejected...] of ``pairs`` in ``layout``, batched among themselves
    (padded: ``batch_size`` pairs per forward, longest first; packed: ``plan_micro_batches``).  The caller sets
    no_grad, the adapter and the autocast (the reference cache, ``aligner.train.reference``)."""
    n = len(pairs)
    out = torch.empty(2 * n, dtype=torch.float32, device=device)
    if layout == "padded":
        order = sorted(range(n), key=lambda i: -max(len(pairs[i].chosen.input_ids), len(pairs[i].rejected.input_ids)))
        groups = [order[lo: lo + batch_size] for lo in range(0, n, batch_size)]
        for idx in groups:
            ids, attn, rmask = collate_pairs([pairs[i] for i in idx], pad_id, device)
            values = batch_response_logprobs(model, ids, attn, rmask)
            out[idx], out[[n + i for i in idx]] = values[: len(idx)], values[len(idx):]
        return out
    for rows in plan_micro_batches([packed_length(p) for p in pairs], max_tokens, row_tokens):
        idx = [i for row in rows for i in row]
        where = {i: k for k, i in enumerate(idx)}
        batch = build_packed_batch([pairs[i] for i in idx], [[where[i] for i in row] for row in rows], pad_id, device)
        values = packed_response_logprobs(model, batch)
        out[idx], out[[n + i for i in idx]] = values[: len(idx)], values[len(idx):]
    return out
