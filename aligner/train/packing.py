"""The packed layout: each pair's prompt computed once, several pairs to a row, no padding inside a row.

A pair is laid out as one block ``[prompt, chosen answer, rejected answer]``: the prompt's tokens once, then the
chosen answer's tokens, then the rejected answer's.  Both answers attend to their prompt and to themselves (causal),
never to each other or to another pair; position ids restart at 0 for every pair and both answers continue from
the prompt's last position.  The chosen and rejected sequences then go through exactly the computation of their
own unpadded forwards, so their summed response log-probs equal the padded layout's to float rounding.  The first
answer token of both answers is predicted from the prompt's last position, which the two share: that one row of
logits serves two targets (``aligner.core.logprobs.token_logprobs_at_rows``).

The "prompt" shared here is the longest common prefix of the two token sequences, stopped before the first scored
token of either, so every tokenization rule of ``aligner.train.pair_tokens`` packs exactly, the study's
(``--study_compat``: the last prompt token scored, two BOS, sequences cut from the right) included: whatever the
two sequences share before their scored spans is computed once, the rest belongs to the answer blocks.

The block structure reaches the model as a 4-D mask ``(rows, 1, W, W)`` with explicit ``position_ids``;
transformers 5 passes a 4-D mask to the attention kernel as it is (``masking_utils._preprocess_mask_arguments``).
SDPA gets a boolean mask (True = attend; what transformers builds for SDPA itself), eager an additive float mask in
the model's dtype (0 or the dtype's minimum, what transformers builds for eager).  Flash-attention kernels take no
such mask: a model loaded with one is refused by ``check_packable``.  A dense mask costs W^2 per row in memory and
compute (masked blocks are computed and discarded by SDPA's math and memory-efficient kernels), which is why rows
are capped at ``row_tokens`` and a micro-batch at ``max_tokens`` (rows x width).

Micro-batches: the pairs an optimizer step gives one process are cut into micro-batches of at most ``max_tokens``
tokens (rows x width) by ``plan_micro_batches``; every process runs the same number of them
(``equalize_counts``), so collectives match under DDP, FSDP and DeepSpeed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from aligner.core.logprobs import (
    PACKABLE_ATTENTION,
    _base_model,
    accepts_logits_to_keep,
    attention_implementation,
    token_logprobs_at_rows,
)
from aligner.train.pair_tokens import TokenizedPair


def shared_prefix_length(pair: TokenizedPair) -> int:
    """Tokens the chosen and rejected sequences share before the first scored token of either."""
    return pair.shared_prefix


def packed_length(pair: TokenizedPair) -> int:
    """Tokens the pair takes in a packed row: the shared prompt once plus both answer blocks."""
    return len(pair.chosen.input_ids) + len(pair.rejected.input_ids) - shared_prefix_length(pair)


def padded_tokens(pairs: Sequence[TokenizedPair]) -> int:
    """Tokens of the padded layout's forward over ``pairs``: 2B rows as wide as the longest sequence."""
    return 2 * len(pairs) * max(max(len(p.chosen.input_ids), len(p.rejected.input_ids)) for p in pairs)


def default_max_tokens(pairs_per_batch: int, max_length: int) -> int:
    """``--max_tokens_per_batch``'s default: what a padded micro-batch of ``pairs_per_batch`` pairs can hold."""
    return 2 * pairs_per_batch * max_length


def check_packable(model) -> None:
    """Refuse a model whose attention kernel ignores a custom 4-D mask (one line, naming the flag)."""
    impl = attention_implementation(model)
    if impl not in PACKABLE_ATTENTION:
        raise ValueError(f"--layout packed needs an attention kernel that takes a 4-D mask ({', '.join(PACKABLE_ATTENTION)}); "
                         f"the model uses {impl!r}: use --layout padded")


# ---------------------------------------------------------------------------------------------
# which pairs share a row, which rows share a micro-batch
# ---------------------------------------------------------------------------------------------

def pack_rows(lengths: Sequence[int], row_tokens: int) -> list[list[int]]:
    """First-fit decreasing: indices of ``lengths`` grouped into rows of at most ``row_tokens`` tokens (a longer
    item gets a row of its own).  Deterministic: ties keep input order."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(row_tokens - lengths[i])
    return rows


def plan_micro_batches(lengths: Sequence[int], max_tokens: int, row_tokens: int) -> list[list[list[int]]]:
    """Micro-batches (each a list of rows, each a list of indices into ``lengths``): rows packed by ``pack_rows``,
    longest first, then taken in order while rows x the widest row stays within ``max_tokens`` (a row wider than
    that is a micro-batch of its own)."""
    rows = pack_rows(lengths, min(row_tokens, max_tokens))
    widths = [sum(lengths[i] for i in row) for row in rows]
    order = sorted(range(len(rows)), key=lambda r: (-widths[r], r))
    batches: list[list[list[int]]] = []
    width = 0
    for r in order:
        if batches and (len(batches[-1]) + 1) * max(width, widths[r]) <= max_tokens:
            batches[-1].append(rows[r])
            width = max(width, widths[r])
        else:
            batches.append([rows[r]])
            width = widths[r]
    return batches


def equalize_counts(batches: list[list[list[int]]], count: int) -> list[list[list[int]]]:
    """Split micro-batches until there are ``count`` (each process must run as many): the micro-batch with the most
    rows loses its second half, or a one-row micro-batch with several pairs is cut in two rows."""
    batches = [list(b) for b in batches]
    while len(batches) < count:
        k = max(range(len(batches)), key=lambda j: (len(batches[j]), sum(map(len, batches[j]))))
        rows = batches[k]
        if len(rows) > 1:
            batches[k:k + 1] = [rows[: len(rows) // 2], rows[len(rows) // 2:]]
        elif len(rows[0]) > 1:
            row = rows[0]
            batches[k:k + 1] = [[row[: len(row) // 2]], [row[len(row) // 2:]]]
        else:
            raise ValueError(f"cannot cut {sum(len(r) for b in batches for r in b)} pairs into {count} micro-batches")
    return batches


# ---------------------------------------------------------------------------------------------
# the tensors of one packed micro-batch
# ---------------------------------------------------------------------------------------------

@dataclass
class PackedBatch:
    """One packed micro-batch of n pairs in R rows of width W.

    ``input_ids``, ``position_ids`` (R, W) long; ``blocks`` (R, W) long: for the k-th pair of a row 3k (prompt),
    3k + 1 (chosen), 3k + 2 (rejected), -1 for the padding after a row's last pair; ``keep`` (R, W) bool: positions
    whose logits are needed; ``rows``, ``targets``, ``owner`` (M,) long, one entry per scored token: the index of its
    predicting position among the kept ones, the token, and its sequence (chosen of pair i = i, rejected = n + i);
    ``response_lengths`` (2n,) scored tokens per sequence, same order."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    blocks: torch.Tensor
    keep: torch.Tensor
    rows: torch.Tensor
    targets: torch.Tensor
    owner: torch.Tensor
    response_lengths: torch.Tensor
    n_pairs: int

    @property
    def tokens(self) -> int:
        return self.input_ids.numel()

    def attention_mask(self, kind: str, dtype: torch.dtype) -> torch.Tensor:
        """(R, 1, W, W): boolean (True = attend) for ``kind`` "sdpa", additive ``dtype`` (0 / min) otherwise."""
        q, k = self.blocks.unsqueeze(2), self.blocks.unsqueeze(1)
        width = self.blocks.shape[1]
        causal = torch.ones(width, width, dtype=torch.bool, device=self.blocks.device).tril()
        same_pair_prompt = (torch.div(k, 3, rounding_mode="floor") == torch.div(q, 3, rounding_mode="floor")) & (k % 3 == 0)
        allowed = causal & (k >= 0) & ((k == q) | same_pair_prompt)
        allowed |= torch.eye(width, dtype=torch.bool, device=self.blocks.device)  # padding sees itself: no empty softmax
        allowed = allowed.unsqueeze(1)
        if kind == "sdpa":
            return allowed
        mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
        return mask.masked_fill_(~allowed, torch.finfo(dtype).min)


def _place(pair: TokenizedPair, base: int, k: int, row: list, cols: dict) -> None:
    """Write one pair's block at column ``base`` of ``row`` (lists of ids, positions, blocks) and record, per
    side, the (predicting column, target) of every scored token in ``cols``."""
    ids, pos, blk = row
    p = shared_prefix_length(pair)
    prompt = pair.chosen.input_ids[:p]
    ids[base: base + p], pos[base: base + p], blk[base: base + p] = prompt, range(p), [3 * k] * p
    start = base + p
    for side, enc in enumerate((pair.chosen, pair.rejected)):
        seg = enc.input_ids[p:]
        ids[start: start + len(seg)] = seg
        pos[start: start + len(seg)] = range(p, len(enc.input_ids))
        blk[start: start + len(seg)] = [3 * k + 1 + side] * len(seg)

        def column(t, start=start):
            return base + t if t < p else start + t - p

        cols[side] = [(column(t - 1), enc.input_ids[t]) for t in range(enc.response_start, len(enc.input_ids))]
        start += len(seg)


def build_packed_batch(pairs: Sequence[TokenizedPair], row_groups: Sequence[Sequence[int]], pad_id: int,
                       device=None) -> PackedBatch:
    """The tensors for ``pairs`` laid out in rows: ``row_groups[r]`` lists the indices of the pairs of row r."""
    n = len(pairs)
    if sorted(i for g in row_groups for i in g) != list(range(n)):
        raise ValueError("row_groups must place every pair exactly once")
    width = max(sum(packed_length(pairs[i]) for i in g) for g in row_groups)
    ids = [[pad_id] * width for _ in row_groups]
    pos = [[0] * width for _ in row_groups]
    blk = [[-1] * width for _ in row_groups]
    scored: list[tuple[int, int, int, int]] = []  # (row, column, target, owner)
    for r, group in enumerate(row_groups):
        base = 0
        for k, i in enumerate(group):
            cols: dict = {}
            _place(pairs[i], base, k, (ids[r], pos[r], blk[r]), cols)
            scored += [(r, c, t, i) for c, t in cols[0]] + [(r, c, t, n + i) for c, t in cols[1]]
            base += packed_length(pairs[i])
    keep = torch.zeros(len(row_groups), width, dtype=torch.bool)
    flat = torch.tensor([r * width + c for r, c, _, _ in scored], dtype=torch.long)
    keep.view(-1)[flat] = True
    kept_index = torch.cumsum(keep.view(-1), 0) - 1  # the kept logits come back in row-major order
    lengths = torch.zeros(2 * n, dtype=torch.long)
    owner = torch.tensor([o for *_, o in scored], dtype=torch.long)
    lengths.index_add_(0, owner, torch.ones_like(owner))
    out = PackedBatch(torch.tensor(ids), torch.tensor(pos), torch.tensor(blk), keep, kept_index[flat],
                      torch.tensor([t for _, _, t, _ in scored], dtype=torch.long), owner, lengths, n)
    if device is not None:
        for name in ("input_ids", "position_ids", "blocks", "keep", "rows", "targets", "owner", "response_lengths"):
            setattr(out, name, getattr(out, name).to(device))
    return out


def packed_response_logprobs(model, batch: PackedBatch) -> torch.Tensor:
    """Summed response log-probs (2n,) fp32, [chosen_1..chosen_n, rejected_1..rejected_n]: one forward over the
    packed rows, only the predicting positions projected onto the vocabulary; differentiable when grad is on."""
    base = _base_model(model)
    mask = batch.attention_mask(attention_implementation(base), base.get_input_embeddings().weight.dtype)
    common = dict(input_ids=batch.input_ids, attention_mask=mask, position_ids=batch.position_ids, use_cache=False)
    if accepts_logits_to_keep(model):
        logits = model(**common, logits_to_keep=batch.keep).logits
        if logits.dim() != 2:
            raise RuntimeError(f"logits_to_keep passed the load-time probe but returned shape {tuple(logits.shape)}")
    else:
        logits = model(**common).logits[batch.keep]
    tok_lp = token_logprobs_at_rows(logits, batch.rows, batch.targets)
    return torch.zeros(2 * batch.n_pairs, dtype=torch.float32, device=tok_lp.device).index_add(0, batch.owner, tok_lp)
