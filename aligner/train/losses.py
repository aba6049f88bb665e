"""DPO-Positive (Pal et al. 2024) as a pure function of summed response log-probabilities.

For a pair (x, y_w, y_l) with s(y) = sum_t log pi(y_t | x, y_<t) over the response tokens:

    d    = beta * [(s_theta(y_w) - s_ref(y_w)) - (s_theta(y_l) - s_ref(y_l))]
    loss = -log sigmoid(d) + lambda * max(0, s_ref(y_w) - s_theta(y_w))      (mean over the batch)
           + alpha * NLL

With ``lam = 0`` this is the sigmoid DPO loss of Rafailov et al. (TRL's ``loss_type="sigmoid"``, no label
smoothing).  The positive term is what keeps the chosen answer's likelihood from falling below the
reference's, the failure mode DPOP was introduced to fix.

This is the study's form (its training scripts add the penalty outside the sigmoid, unscaled by beta).  The
DPOP paper puts ``- lambda * max(0, ...)`` inside the sigmoid's argument, where it is scaled by beta and
saturates; the additive form here is much stronger at lambda = 50 (its gradient on s_theta(y_w) is lambda,
against at most beta for the DPO term), so the penalty dominates whenever it is active.

``rpo_alpha`` (alpha) adds the RPO / "DPO + NLL" regulariser (Pang et al. 2024): the policy's negative
log-likelihood of the chosen responses per token, pooled over the batch,

    NLL = -sum_i s_theta(y_w,i) / sum_i n_i          (n_i = response tokens of chosen answer i)

which is TRL's definition (TRL 1.16: ``loss_type=["sigmoid", "sft"], loss_weights=[1, alpha]``; its "sft" term is
``-chosen_per_token_logps[chosen_mask].mean()`` over the micro-batch): the mean over every chosen token of the
batch, not a mean of per-answer means.  It is added once (not per pair) to the batch-mean loss.

``logit_clamp`` c clamps beta*Delta to [-c, c] before the log-sigmoid (the study's latest recipe, c = 50; the
gradient of the DPO term is zero outside).  The positive and NLL terms are never clamped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# TRL's metric names, plus the loss terms.  "loss/nll" is the unweighted pooled NLL of the chosen answers (a
# diagnostic even at rpo_alpha = 0); the loss adds rpo_alpha times it.
METRIC_NAMES = (
    "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
    "logps/chosen", "logps/rejected", "logps/ref_chosen", "logps/ref_rejected",
    "loss/dpo", "loss/positive", "loss/nll",
)


def chosen_nll(policy_chosen_logps: torch.Tensor, chosen_lengths: torch.Tensor) -> torch.Tensor:
    """Per-token NLL of the chosen responses pooled over the batch: ``-sum(s) / sum(n)`` (a 0-d tensor).

    ``policy_chosen_logps``: (B,) summed log-probs; ``chosen_lengths``: (B,) response token counts (an answer cut
    to zero tokens contributes nothing; an all-empty batch gives 0)."""
    if policy_chosen_logps.shape != chosen_lengths.shape:
        raise ValueError(f"chosen log-probs {tuple(policy_chosen_logps.shape)} and lengths "
                         f"{tuple(chosen_lengths.shape)} must have one shape")
    n_tokens = chosen_lengths.to(policy_chosen_logps.dtype).sum().clamp(min=1.0)
    return -policy_chosen_logps.sum() / n_tokens


def dpop_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
              ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
              beta: float = 0.3, lam: float = 50.0, *, rpo_alpha: float = 0.0,
              chosen_lengths: torch.Tensor | None = None,
              logit_clamp: float | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Return (loss, metrics).

    Inputs are (B,) tensors of summed response log-probs; ``chosen_lengths`` (B,) holds the chosen answers'
    response token counts, needed for the NLL (required when ``rpo_alpha`` != 0; without it ``loss/nll`` is not
    reported).  The loss is a 0-d tensor: the batch mean of the per-pair DPOP loss, plus ``rpo_alpha`` times the
    pooled NLL.  Metrics are detached per-pair tensors of shape (B,) keyed by ``METRIC_NAMES`` (``loss/nll``, one
    value per batch, is repeated B times), so a caller can gather them across processes before averaging."""
    shapes = {t.shape for t in (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)}
    if len(shapes) != 1:
        raise ValueError(f"the four log-prob tensors must have one shape, got {sorted(map(tuple, shapes))}")
    if rpo_alpha and chosen_lengths is None:
        raise ValueError("rpo_alpha needs chosen_lengths (the chosen answers' response token counts)")
    if logit_clamp is not None and logit_clamp <= 0:
        raise ValueError(f"logit_clamp must be > 0 (or None: no clamp), got {logit_clamp}")
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    dpo_arg = beta * (chosen_logratios - rejected_logratios)
    if logit_clamp is not None:
        dpo_arg = dpo_arg.clamp(min=-logit_clamp, max=logit_clamp)
    dpo_term = -F.logsigmoid(dpo_arg)
    # max(0, s_ref(y_w) - s_theta(y_w)): zero while the policy keeps the chosen answer at least as likely.
    positive_term = lam * torch.clamp(ref_chosen_logps - policy_chosen_logps, min=0.0)
    loss = (dpo_term + positive_term).mean()
    nll = None
    if chosen_lengths is not None:
        nll = chosen_nll(policy_chosen_logps, chosen_lengths)
        if rpo_alpha:
            loss = loss + rpo_alpha * nll

    chosen_rewards = beta * chosen_logratios.detach()
    rejected_rewards = beta * rejected_logratios.detach()
    metrics = {
        "rewards/chosen": chosen_rewards,
        "rewards/rejected": rejected_rewards,
        "rewards/margins": chosen_rewards - rejected_rewards,
        "rewards/accuracies": (chosen_rewards > rejected_rewards).float(),
        "logps/chosen": policy_chosen_logps.detach(),
        "logps/rejected": policy_rejected_logps.detach(),
        "logps/ref_chosen": ref_chosen_logps.detach(),
        "logps/ref_rejected": ref_rejected_logps.detach(),
        "loss/dpo": dpo_term.detach(),
        "loss/positive": positive_term.detach(),
    }
    if nll is not None:
        metrics["loss/nll"] = nll.detach().expand(policy_chosen_logps.shape[0]).clone()
    return loss, metrics


def mean_metrics(metrics: dict[str, torch.Tensor]) -> dict[str, float]:
    """Average per-pair metric tensors into plain floats (what goes into the training log)."""
    return {k: float(v.double().mean().item()) for k, v in metrics.items()}
