"""One optimizer step of the preference trainer, in either batch layout.

Both layouts train the same pairs per optimizer step: ``per_device_batch_size x processes x grad_accum_steps``,
process p taking rows p*B..(p+1)*B of each micro-batch slice (``StepPairs``), so the gradient of a step is the same
sum in both:

* padded: ``grad_accum_steps`` micro-batches of B pairs each, one forward each (under ``accelerate.accumulate``);
* packed: the process's B x grad_accum_steps pairs of the step cut into as many forwards as ``max_tokens`` needs
  (``aligner.train.packing.plan_micro_batches``), the same number on every process (``equalize_counts``).  Each
  pair's loss enters with its share of the padded micro-batch it belongs to
  (``aligner.train.losses.weighted_preference_loss``), so the step's loss, gradient and logged values equal the
  padded layout's (RPO's NLL included, pooled over the same micro-batches).  Gradients are reduced across processes
  once, on the step's last forward (the others run under ``no_sync``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from aligner.core.logprobs import batch_response_logprobs
from aligner.core.models import use_adapter
from aligner.train.layouts import collate_pairs, policy_and_reference_logps
from aligner.train.losses import preference_loss, weighted_preference_loss
from aligner.train.packing import (
    build_packed_batch,
    equalize_counts,
    packed_length,
    packed_response_logprobs,
    plan_micro_batches,
)


class LogWindow:
    """The loss values and per-pair metrics since the last logging step, whatever keys the loss reports (the same
    on every process, so they gather in one order)."""

    def __init__(self):
        self.take()

    def add(self, loss: torch.Tensor, metrics: dict[str, torch.Tensor]) -> None:
        """``loss``: (k,) values averaged with equal weight (a padded micro-batch's loss, or a packed forward's
        per-pair shares of theirs); ``metrics``: (B,) per-pair values."""
        self.losses.append(loss.reshape(-1))
        for k, v in metrics.items():
            self.metrics.setdefault(k, []).append(v)

    def take(self) -> tuple[list[torch.Tensor], dict[str, list[torch.Tensor]]]:
        out = (getattr(self, "losses", []), getattr(self, "metrics", {}))
        self.losses: list[torch.Tensor] = []
        self.metrics: dict[str, list[torch.Tensor]] = {}
        return out


@dataclass
class PackedForward:
    """One packed forward of a step: its pairs (level, index), their rows (indices into ``refs``), and per pair the
    size and chosen token count of the padded micro-batch it belongs to."""
    refs: list[tuple[int, int]]
    rows: list[list[int]]
    group_sizes: list[int]
    group_chosen_tokens: list[int]


def packed_forwards(groups_by_process: Sequence[Sequence[Sequence[tuple[int, int]]]], rank: int, tokenized,
                    max_tokens: int, row_tokens: int) -> tuple[list[PackedForward], bool]:
    """Process ``rank``'s forwards of one optimizer step, and whether the processes' plans had to be evened out.
    ``groups_by_process[p]`` are process p's padded micro-batches (lists of (level, index)); every process's plan
    is computed here, so that all run as many forwards without exchanging a message."""
    plans = []
    for groups in groups_by_process:
        refs = [ref for g in groups for ref in g]
        plans.append(plan_micro_batches([packed_length(tokenized[lv][i]) for lv, i in refs], max_tokens, row_tokens))
    count = max(len(p) for p in plans)
    groups = groups_by_process[rank]
    refs, size, tokens = [], [], []
    for g in groups:
        n_chosen = sum(tokenized[lv][i].chosen.n_response for lv, i in g)
        refs += list(g)
        size += [len(g)] * len(g)
        tokens += [n_chosen] * len(g)
    out = []
    for rows in equalize_counts(plans[rank], count):
        idx = [i for row in rows for i in row]
        where = {i: k for k, i in enumerate(idx)}
        out.append(PackedForward([refs[i] for i in idx], [[where[i] for i in row] for row in rows],
                                 [size[i] for i in idx], [tokens[i] for i in idx]))
    return out, len({len(p) for p in plans}) > 1


def keep_graph(policy: torch.Tensor, model) -> torch.Tensor:
    """Every response of the forward was cut away (--truncation right, as the study): zero gradient, but the graph
    must still reach the adapter so that every process takes part in the gradient reduction."""
    if policy.requires_grad:
        return policy
    return policy + 0.0 * sum(p.reshape(-1)[0] for p in model.parameters() if p.requires_grad)


def padded_micro_step(trainer, refs: Sequence[tuple[int, int]]):
    """One padded micro-batch: forward(s), loss, backward; returns (the loss (1,), the metrics)."""
    cfg, acc, model = trainer.cfg, trainer.acc, trainer.model
    pairs = [trainer.tokenized[lv][i] for lv, i in refs]
    ids, attn, rmask = collate_pairs(pairs, trainer.tokenizer.pad_token_id, acc.device)
    if trainer.loss_spec.needs_reference:
        policy, ref = policy_and_reference_logps(model, ids, attn, rmask, trainer.cached_reference(refs),
                                                 unwrapped=acc.unwrap_model(model))
        rc, rr = ref.chunk(2)
    else:
        policy, rc, rr = batch_response_logprobs(model, ids, attn, rmask), None, None
    pc, pr = keep_graph(policy, model).chunk(2)
    nc, nr = rmask.sum(dim=1).chunk(2)
    loss, metrics = preference_loss(cfg.loss, pc, pr, rc, rr, nc, nr, trainer.loss_settings)
    acc.backward(loss)
    trainer.tokens_computed += ids.numel()
    return loss.detach().reshape(1), metrics


def packed_micro_step(trainer, fwd: PackedForward):
    """One packed forward: the pairs' summed log-probs, their weighted loss, backward; returns (each pair's share
    of its padded micro-batch's loss x its size (n,), the metrics)."""
    cfg, acc, model = trainer.cfg, trainer.acc, trainer.model
    batch = build_packed_batch([trainer.tokenized[lv][i] for lv, i in fwd.refs], fwd.rows,
                               trainer.tokenizer.pad_token_id, acc.device)
    rc = rr = None
    if trainer.loss_spec.needs_reference:
        ref = trainer.cached_reference(fwd.refs)
        if ref is None:
            with torch.no_grad(), use_adapter(acc.unwrap_model(model), None):
                ref = packed_response_logprobs(model, batch)
        rc, rr = ref.chunk(2)
    pc, pr = keep_graph(packed_response_logprobs(model, batch), model).chunk(2)
    nc, nr = batch.response_lengths.chunk(2)
    device = pc.device
    loss, shares, metrics = weighted_preference_loss(
        cfg.loss, pc, pr, rc, rr, nc, nr, trainer.loss_settings,
        torch.tensor(fwd.group_sizes, device=device), torch.tensor(fwd.group_chosen_tokens, device=device))
    acc.backward(loss)
    trainer.tokens_computed += batch.tokens
    return shares, metrics


def run_padded_step(trainer, stage: int):
    """``grad_accum_steps`` padded micro-batches; returns the pre-clip gradient norm."""
    acc, grad_norm = trainer.acc, None
    for micro in range(trainer.cfg.grad_accum_steps):
        with acc.accumulate(trainer.model):
            loss, metrics = padded_micro_step(trainer, trainer.micro_batch(stage, trainer.state.step_in_stage, micro))
            if acc.sync_gradients:  # DeepSpeed clips inside its engine and returns the pre-clip norm here
                grad_norm = trainer.clip_gradients()
            trainer.optimizer.step()
            trainer.optimizer.zero_grad(set_to_none=True)
        trainer.window.add(loss, metrics)
    return grad_norm


def run_packed_step(trainer, stage: int):
    """The step's packed forwards, gradients reduced on the last; returns the pre-clip gradient norm."""
    acc, cfg = trainer.acc, trainer.cfg
    step = trainer.state.step_in_stage
    groups = [[trainer.micro_batch(stage, step, m, process=p) for m in range(cfg.grad_accum_steps)]
              for p in range(acc.num_processes)]
    forwards, evened = packed_forwards(groups, acc.process_index, trainer.tokenized, trainer.max_tokens,
                                       trainer.row_tokens)
    trainer.packing_counts["forwards"] += len(forwards)
    trainer.packing_counts["steps_evened_out"] += int(evened)
    for k, fwd in enumerate(forwards):
        last = k == len(forwards) - 1
        acc.sync_gradients = last
        with contextlib.nullcontext() if last else acc.no_sync(trainer.model):
            shares, metrics = packed_micro_step(trainer, fwd)
        trainer.window.add(shares, metrics)
    grad_norm = trainer.clip_gradients()
    trainer.optimizer.step()
    trainer.optimizer.zero_grad(set_to_none=True)
    return grad_norm
