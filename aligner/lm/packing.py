"""Prefix sharing for groups of continuations of one context (a question and its MC choices).

All continuations of a context go into ONE row behind a single copy of the shared context prefix; each
continuation sees the prefix and itself only (a block attention mask, position ids restarting after the
prefix).  Several groups go into one forward.  The summed log-probs equal scoring every (context,
continuation) sequence on its own to float rounding; the Hugging Face backend (``aligner.lm.hf``) uses it
when the model's attention kernel takes a custom 4D mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from aligner.core.logprobs import accepts_logits_to_keep, encode_prompt_response, token_logprobs_at_rows


@dataclass
class PackedGroup:
    """One context and its continuations as one row: the shared prefix once, then each continuation's
    tokens.  ``segments[j]`` may start with context tokens when the tokenizer merged the boundary."""

    prefix: list[int]
    segments: list[list[int]]
    response_offsets: list[int]  # index in segments[j] of its first continuation token

    @property
    def length(self) -> int:
        return len(self.prefix) + sum(len(s) for s in self.segments)


def pack_group(tokenizer, context: str, continuations: Sequence[str]) -> PackedGroup:
    encoded = [encode_prompt_response(tokenizer, context, c) for c in continuations]
    # The shared prefix stops before the first continuation token of every choice, so each choice's
    # sequence is exactly prefix + its segment, as encode_prompt_response tokenized it.
    p = min(e.response_start for e in encoded)
    prefix = encoded[0].input_ids[:p]
    for e in encoded:
        if e.input_ids[:p] != prefix:  # cannot happen with one context; guards the exactness claim
            raise ValueError("continuations of one context disagree on the context tokens")
    return PackedGroup(prefix=prefix, segments=[e.input_ids[p:] for e in encoded],
                       response_offsets=[e.response_start - p for e in encoded])


def _packed_batch(groups: Sequence[PackedGroup], pad_id: int, dtype: torch.dtype, device: torch.device):
    """input_ids, position_ids, additive 4D mask, and per-target (row, predicting position, token, choice)."""
    width = max(g.length for g in groups)
    b = len(groups)
    ids = torch.full((b, width), pad_id, dtype=torch.long)
    pos = torch.zeros((b, width), dtype=torch.long)
    seg = torch.full((b, width), -1, dtype=torch.long)  # 0 = prefix, j+1 = choice j, -1 = padding
    rows, pred_pos, targets, owner = [], [], [], []
    for r, g in enumerate(groups):
        p = len(g.prefix)
        ids[r, :p] = torch.tensor(g.prefix)
        pos[r, :p] = torch.arange(p)
        seg[r, :p] = 0
        start = p
        for j, (s, off) in enumerate(zip(g.segments, g.response_offsets)):
            n = len(s)
            ids[r, start: start + n] = torch.tensor(s, dtype=torch.long)
            pos[r, start: start + n] = torch.arange(p, p + n)
            seg[r, start: start + n] = j + 1
            for k in range(off, n):
                rows.append(r)
                pred_pos.append(start + k - 1 if k > 0 else p - 1)  # token k of a segment follows token k-1
                targets.append(s[k])                                # or, for k = 0, the prefix's last token
                owner.append(j)
            start += n
    q = seg.unsqueeze(2)   # (b, w, 1) query
    k = seg.unsqueeze(1)   # (b, 1, w) key
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    allowed = causal & (k >= 0) & ((k == 0) | (k == q))
    allowed |= torch.eye(width, dtype=torch.bool)  # padding rows see themselves, so no softmax over nothing
    mask = torch.zeros((b, 1, width, width), dtype=dtype)
    mask.masked_fill_(~allowed.unsqueeze(1), torch.finfo(dtype).min)
    return (ids.to(device), pos.to(device), mask.to(device),
            torch.tensor(rows), torch.tensor(pred_pos), torch.tensor(targets), owner)


@torch.no_grad()
def packed_group_logprobs(model, groups: Sequence[PackedGroup], pad_id: int) -> list[list[float]]:
    """Summed continuation log-probs for every continuation of every group, one forward for all groups."""
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    if not dtype.is_floating_point:
        dtype = torch.float32
    ids, pos, mask, rows, pred_pos, targets, owner = _packed_batch(groups, pad_id, dtype, device)
    width = ids.shape[1]
    keep = torch.zeros(ids.shape, dtype=torch.bool)
    keep[rows, pred_pos] = True
    if accepts_logits_to_keep(model):
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=keep.to(device),
                       use_cache=False).logits
        if logits.dim() == 3:  # a model that ignored the boolean mask
            logits = logits[keep.to(device)]
    else:
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits[keep.to(device)]
    # Row of the kept logits for each (row, position); several targets can share one (a prefix's last token).
    kept_row = torch.cumsum(keep.flatten(), 0) - 1
    lookup = kept_row[rows * width + pred_pos].to(logits.device)
    tok_lp = token_logprobs_at_rows(logits, lookup, targets.to(logits.device)).tolist()
    out = [[0.0] * len(g.segments) for g in groups]
    for r, j, lp in zip(rows.tolist(), owner, tok_lp):
        out[r][j] += lp
    return out
