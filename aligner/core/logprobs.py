"""Exact, batched log-probabilities of response tokens given a prompt.

Definitions (the same for training, MC scoring and judges):

* The response span is found as lm-evaluation-harness does: tokenize ``prompt`` and ``prompt + response``
  with the same special-token settings; the response tokens are those of the full text after the prompt's
  tokens.  Special tokens (BOS) are added unless the text already starts with the BOS string (a prompt
  rendered by a chat template), so BOS is never doubled and never counted as a response token.
* log p(response | prompt) = sum over response tokens t of (logit[t-1, y_t] - logsumexp(logit[t-1, :])),
  computed in fp32.  Only the positions that predict response tokens are projected onto the vocabulary
  (``logits_to_keep`` with a boolean mask, used when a load-time probe shows the model returns exactly those
  ``[N, V]`` rows; the full-logits path otherwise), and no full log-softmax copy of the batch is ever made:
  the logsumexp runs in fp32 chunks of ``LOGSUMEXP_CHUNK`` rows, in the backward too.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)

LOGSUMEXP_CHUNK = 2048  # rows of the (tokens x vocab) logits turned to fp32 at once


@dataclass
class EncodedPair:
    input_ids: list[int]
    response_start: int  # index of the first response token in input_ids

    @property
    def n_response(self) -> int:
        return len(self.input_ids) - self.response_start


def wants_special_tokens(tokenizer, text: str, add_special_tokens: bool | str = "auto") -> bool:
    if add_special_tokens != "auto":
        return bool(add_special_tokens)
    bos = getattr(tokenizer, "bos_token", None)
    return not (bos and text.startswith(bos))


def encode_prompt_response(tokenizer, prompt: str, response: str,
                           add_special_tokens: bool | str = "auto") -> EncodedPair:
    """Tokenize ``prompt + response`` and locate the response span (see the module docstring)."""
    special = wants_special_tokens(tokenizer, prompt, add_special_tokens)
    whole = tokenizer(prompt + response, add_special_tokens=special)["input_ids"]
    ctx = tokenizer(prompt, add_special_tokens=special)["input_ids"]
    start = len(ctx)
    if whole[:start] != ctx:
        # A token straddles the boundary; the straddling token belongs to the response.
        start = 0
        while start < min(len(ctx), len(whole)) and whole[start] == ctx[start]:
            start += 1
    if start < 1:
        raise ValueError("the prompt must contribute at least one token (BOS) before the response")
    return EncodedPair(list(whole), start)


def pad_sequences(seqs: Sequence[Sequence[int]], pad_id: int, side: str = "right",
                  device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token lists into (input_ids, attention_mask)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if side == "right":
            ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
            mask[i, : len(s)] = 1
        else:
            ids[i, width - len(s):] = torch.as_tensor(s, dtype=torch.long)
            mask[i, width - len(s):] = 1
    if device is not None:
        ids, mask = ids.to(device), mask.to(device)
    return ids, mask


def response_mask(starts: Sequence[int], ends: Sequence[int], width: int,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean (B, width) mask of response *tokens* for right-padded rows."""
    pos = torch.arange(width)
    st = torch.as_tensor(list(starts)).unsqueeze(1)
    en = torch.as_tensor(list(ends)).unsqueeze(1)
    mask = (pos >= st) & (pos < en)
    return mask.to(device) if device is not None else mask


def _base_model(model):
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module  # DDP / FSDP / DeepSpeed wrappers hide the signature behind forward(*args, **kwargs)
    return model.get_base_model() if hasattr(model, "get_base_model") else model


#: attention kernels that honour a custom 4-D mask (the packed layouts of evaluation and training need one)
PACKABLE_ATTENTION = ("sdpa", "eager")


def attention_implementation(model) -> str:
    """The attention kernel ``model`` runs (through DDP / FSDP / DeepSpeed / peft wrappers)."""
    return str(getattr(_base_model(model).config, "_attn_implementation", None) or "eager")


def probe_logits_mask(model, atol: float | None = None) -> bool:
    """Whether ``model(..., logits_to_keep=<(B, T) bool mask>)`` returns the ``[N, V]`` logits of the masked
    positions, equal to ``full_logits[mask]``: two forwards of 10 tokens.  transformers >= 5.21 does that; 4.50 ..
    5.20 raise ``IndexError`` (or, for an int (B, K) tensor, return a wrong shape), and a model may ignore the
    argument.  Run it on the plain model (before DDP/FSDP wrapping: no collectives)."""
    base = _base_model(model)
    try:
        if "logits_to_keep" not in inspect.signature(base.forward).parameters:
            return False
    except (TypeError, ValueError):
        return False
    param = next(base.parameters())
    vocab = base.get_output_embeddings().weight.shape[0] if base.get_output_embeddings() is not None else 2
    ids = (torch.arange(1, 11, device=param.device) % vocab).reshape(2, 5)
    attn = torch.ones_like(ids)
    mask = torch.tensor([[0, 1, 1, 0, 1], [1, 0, 0, 0, 0]], dtype=torch.bool, device=param.device)  # B != T, N = 4
    was_training = base.training
    base.eval()
    try:
        with torch.no_grad():
            full = base(input_ids=ids, attention_mask=attn, use_cache=False).logits
            try:
                kept = base(input_ids=ids, attention_mask=attn, use_cache=False, logits_to_keep=mask).logits
            except Exception as exc:  # noqa: BLE001 - any failure means "use the full-logits path"
                logger.info("boolean logits_to_keep not supported (%s: %s); using full logits", type(exc).__name__, exc)
                return False
    finally:
        base.train(was_training)
    if tuple(kept.shape) != (int(mask.sum()), full.shape[-1]):
        logger.info("boolean logits_to_keep gave shape %s; using full logits", tuple(kept.shape))
        return False
    want = full[mask].float()
    if atol is None:  # the two forwards differ by kernel rounding only; half precision rounds more
        atol = (1e-4 if full.dtype == torch.float32 else 2e-2) * max(1.0, want.abs().max().item())
    return bool(torch.allclose(kept.float(), want, atol=atol, rtol=1e-3))


def accepts_logits_to_keep(model) -> bool:
    """``probe_logits_mask`` run once per model (the result is kept on the base model)."""
    base = _base_model(model)
    cached = getattr(base, "_aligner_logits_mask", None)
    if cached is None:
        cached = probe_logits_mask(base)
        try:
            base._aligner_logits_mask = cached
        except AttributeError:
            pass
    return cached


class _ChunkedTokenLogprobs(torch.autograd.Function):
    """log p(target) per row, ``LOGSUMEXP_CHUNK`` rows at a time in fp32, forward and backward: only the
    (N, V) logits in their own dtype and the (N,) logsumexp are kept for the backward, never an fp32 copy of all
    the logits (plain autograd would keep every chunk's fp32 copy).  The gradient is that of
    ``gather - logsumexp`` (one-hot minus softmax, in fp32) cast to the logits' dtype, as autograd computes it."""

    @staticmethod
    def forward(ctx, logits, targets):
        n = logits.shape[0]
        out = torch.empty(n, dtype=torch.float32, device=logits.device)
        lse = torch.empty(n, dtype=torch.float32, device=logits.device)
        for lo in range(0, n, LOGSUMEXP_CHUNK):
            chunk = logits[lo: lo + LOGSUMEXP_CHUNK].float()
            lse[lo: lo + LOGSUMEXP_CHUNK] = torch.logsumexp(chunk, dim=-1)
            out[lo: lo + LOGSUMEXP_CHUNK] = (chunk.gather(-1, targets[lo: lo + LOGSUMEXP_CHUNK].unsqueeze(-1))
                                             .squeeze(-1) - lse[lo: lo + LOGSUMEXP_CHUNK])
        ctx.save_for_backward(logits, targets, lse)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        logits, targets, lse = ctx.saved_tensors
        grad = torch.empty_like(logits)
        for lo in range(0, logits.shape[0], LOGSUMEXP_CHUNK):
            hi = lo + LOGSUMEXP_CHUNK
            g = grad_out[lo:hi].unsqueeze(-1).float()
            chunk = -(g * torch.exp(logits[lo:hi].float() - lse[lo:hi].unsqueeze(-1)))
            chunk.scatter_add_(-1, targets[lo:hi].unsqueeze(-1), g)
            grad[lo:hi] = chunk.to(logits.dtype)
        return grad, None


def token_logprobs_from_logits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) per row of a (N, V) logits tensor, in fp32, chunked: gather minus logsumexp.  With grad, the
    backward is chunked too (``_ChunkedTokenLogprobs``), so half-precision logits are never upcast all at once."""
    if logits.shape[0] == 0:
        return logits.new_zeros(0, dtype=torch.float32)
    if torch.is_grad_enabled() and logits.requires_grad:
        return _ChunkedTokenLogprobs.apply(logits, targets)
    out = []
    for lo in range(0, logits.shape[0], LOGSUMEXP_CHUNK):
        chunk = logits[lo: lo + LOGSUMEXP_CHUNK].float()
        tgt = targets[lo: lo + LOGSUMEXP_CHUNK].unsqueeze(-1)
        out.append(chunk.gather(-1, tgt).squeeze(-1) - torch.logsumexp(chunk, dim=-1))
    return torch.cat(out)


class _ChunkedRowTokenLogprobs(torch.autograd.Function):
    """``logits[rows[j], targets[j]] - logsumexp(logits[rows[j]])`` for each target j, where one row of logits may
    serve several targets (a prompt's last position predicts both answers' first token in a prefix-shared row).
    The logsumexp is computed once per row, ``LOGSUMEXP_CHUNK`` rows at a time in fp32, forward and backward, as
    ``_ChunkedTokenLogprobs``; a row's gradient is the sum over its targets of (one-hot minus softmax)."""

    @staticmethod
    def forward(ctx, logits, rows, targets):
        n = logits.shape[0]
        lse = torch.empty(n, dtype=torch.float32, device=logits.device)
        for lo in range(0, n, LOGSUMEXP_CHUNK):
            lse[lo: lo + LOGSUMEXP_CHUNK] = torch.logsumexp(logits[lo: lo + LOGSUMEXP_CHUNK].float(), dim=-1)
        out = logits[rows, targets].float() - lse[rows]
        ctx.save_for_backward(logits, rows, targets, lse)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        logits, rows, targets, lse = ctx.saved_tensors
        g = grad_out.float()
        per_row = torch.zeros(logits.shape[0], dtype=torch.float32, device=logits.device).index_add_(0, rows, g)
        grad = torch.empty_like(logits)
        for lo in range(0, logits.shape[0], LOGSUMEXP_CHUNK):
            hi = lo + LOGSUMEXP_CHUNK
            chunk = -(per_row[lo:hi].unsqueeze(-1) * torch.exp(logits[lo:hi].float() - lse[lo:hi].unsqueeze(-1)))
            inside = (rows >= lo) & (rows < hi)
            chunk.index_put_((rows[inside] - lo, targets[inside]), g[inside], accumulate=True)
            grad[lo:hi] = chunk.to(logits.dtype)
        return grad, None, None


def token_logprobs_at_rows(logits: torch.Tensor, rows: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(targets[j]) under the logits row ``rows[j]``, in fp32, for a (N, V) logits tensor and (M,) ``rows`` and
    ``targets``; several targets may share a row (its logsumexp is computed once).  Chunked as
    ``token_logprobs_from_logits``, without a copy of the shared rows."""
    if rows.shape != targets.shape:
        raise ValueError(f"rows {tuple(rows.shape)} and targets {tuple(targets.shape)} must have one shape")
    if rows.numel() == 0:
        return logits.new_zeros(0, dtype=torch.float32)
    return _ChunkedRowTokenLogprobs.apply(logits, rows, targets)


def batch_response_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                            resp_mask: torch.Tensor, return_token_logprobs: bool = False):
    """Summed response log-probs per row of a right-padded batch; differentiable when grad is enabled.

    ``resp_mask`` (B, T, bool) marks response tokens.  Position t-1 predicts token t, so the logits
    kept are those at ``resp_mask`` shifted left by one.
    """
    predict_mask = torch.zeros_like(resp_mask)
    predict_mask[:, :-1] = resp_mask[:, 1:]
    if resp_mask[:, 0].any():
        raise ValueError("a response token at position 0 has no preceding context")
    targets = input_ids[resp_mask]
    if accepts_logits_to_keep(model):
        logits = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=predict_mask,
                       use_cache=False).logits
        if logits.dim() != 2:
            raise RuntimeError(f"logits_to_keep passed the load-time probe but returned shape {tuple(logits.shape)}")
    else:
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[predict_mask]
    tok_lp = token_logprobs_from_logits(logits, targets)
    rows = torch.nonzero(resp_mask, as_tuple=True)[0]
    sums = torch.zeros(input_ids.shape[0], dtype=torch.float32, device=tok_lp.device).index_add(0, rows, tok_lp)
    if return_token_logprobs:
        return sums, tok_lp, rows
    return sums


@torch.no_grad()
def response_logprobs(model, tokenizer, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 16,
                      add_special_tokens: bool | str = "auto", progress: bool = False,
                      desc: str = "log-probs", return_lengths: bool = False):
    """Summed log p(response | prompt) for each pair, batched and exact (see module docstring).

    Pairs are sorted by length (longest first, so memory problems show at once) and batched with right
    padding; results come back in input order.  ``return_lengths`` also returns response token counts.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    encoded = [encode_prompt_response(tokenizer, p, r, add_special_tokens) for p, r in zip(prompts, responses)]
    return encoded_response_logprobs(model, tokenizer.pad_token_id, encoded, batch_size, progress, desc,
                                     return_lengths)


@torch.no_grad()
def encoded_response_logprobs(model, pad_id: int, encoded: Sequence[EncodedPair], batch_size: int = 16,
                              progress: bool = False, desc: str = "log-probs", return_lengths: bool = False):
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i].input_ids))
    results = [0.0] * len(encoded)
    bar = tqdm(total=len(encoded), desc=desc, disable=not progress, unit="seq")
    for lo in range(0, len(order), batch_size):
        idx = order[lo: lo + batch_size]
        batch = [encoded[i] for i in idx]
        ids, mask = pad_sequences([b.input_ids for b in batch], pad_id, "right", device)
        rmask = response_mask([b.response_start for b in batch], [len(b.input_ids) for b in batch],
                              ids.shape[1], device)
        sums = batch_response_logprobs(model, ids, mask, rmask).tolist()
        for i, v in zip(idx, sums):
            results[i] = v
        bar.update(len(idx))
    bar.close()
    if return_lengths:
        return results, [e.n_response for e in encoded]
    return results


@torch.no_grad()
def reference_response_logprob(model, tokenizer, prompt: str, response: str,
                               add_special_tokens: bool | str = "auto") -> float:
    """The plain computation, one sequence at a time with a full log-softmax: the yardstick for tests
    and benchmarks, not for real use."""
    enc = encode_prompt_response(tokenizer, prompt, response, add_special_tokens)
    device = next(model.parameters()).device
    ids = torch.tensor([enc.input_ids], device=device)
    logp = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)[0]
    total = 0.0
    for t in range(enc.response_start, len(enc.input_ids)):
        total += logp[t - 1, enc.input_ids[t]].item()
    return total
