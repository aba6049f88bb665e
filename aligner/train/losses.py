"""DPO-Positive (Pal et al. 2024) as a pure function of summed response log-probabilities.

For a pair (x, y_w, y_l) with s(y) = sum_t log pi(y_t | x, y_<t) over the response tokens:

    d    = beta * [(s_theta(y_w) - s_ref(y_w)) - (s_theta(y_l) - s_ref(y_l))]
    loss = -log sigmoid(d) + lambda * max(0, s_ref(y_w) - s_theta(y_w))      (mean over the batch)

With ``lam = 0`` this is the sigmoid DPO loss of Rafailov et al. (TRL's ``loss_type="sigmoid"``, no label
smoothing).  The positive term is what keeps the chosen answer's likelihood from falling below the
reference's, the failure mode DPOP was introduced to fix.

This is the study's form (its training scripts add the penalty outside the sigmoid, unscaled by beta).  The
DPOP paper puts ``- lambda * max(0, ...)`` inside the sigmoid's argument, where it is scaled by beta and
saturates; the additive form here is much stronger at lambda = 50 (its gradient on s_theta(y_w) is lambda,
against at most beta for the DPO term), so the penalty dominates whenever it is active.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# TRL's metric names, plus the two loss terms.
METRIC_NAMES = (
    "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
    "logps/chosen", "logps/rejected", "logps/ref_chosen", "logps/ref_rejected",
    "loss/dpo", "loss/positive",
)


@dataclass
class DPOPConfig:
    beta: float = 0.3   # the study's default (first_improvement)
    lam: float = 50.0   # DPOP lambda; 0 gives plain DPO


def dpop_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
              ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
              beta: float = 0.3, lam: float = 50.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Return (mean loss, metrics); metrics are detached per-pair tensors of shape (B,) keyed by
    ``METRIC_NAMES``, so a caller can gather them across processes before averaging."""
    shapes = {t.shape for t in (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)}
    if len(shapes) != 1:
        raise ValueError(f"the four log-prob tensors must have one shape, got {sorted(map(tuple, shapes))}")
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    dpo_term = -F.logsigmoid(beta * (chosen_logratios - rejected_logratios))
    # max(0, s_ref(y_w) - s_theta(y_w)): zero while the policy keeps the chosen answer at least as likely.
    positive_term = lam * torch.clamp(ref_chosen_logps - policy_chosen_logps, min=0.0)
    losses = dpo_term + positive_term

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
    return losses.mean(), metrics


def mean_metrics(metrics: dict[str, torch.Tensor]) -> dict[str, float]:
    """Average per-pair metric tensors into plain floats (what goes into the training log)."""
    return {k: float(v.double().mean().item()) for k, v in metrics.items()}
