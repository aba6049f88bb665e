"""Preference losses as pure functions of summed response log-probabilities, and their registry (``--loss``).

Every loss takes (B,) tensors: the policy's summed response log-probs of the chosen and rejected answers ``pc``,
``pr``, the reference's ``rc``, ``rr`` (None for a reference-free loss) and the answers' response token counts
``nc``, ``nr``; it returns the per-pair loss (B,) and its own metrics, detached (B,) tensors keyed by TRL's names.
With s(y) = sum_t log pi(y_t | x, y_<t) over the response tokens, the log-ratios c = s_theta(y_w) - s_ref(y_w) and
r = s_theta(y_l) - s_ref(y_l):

    dpop      -log sigmoid(beta (c - r)) + lambda max(0, -c)           the study's DPO-Positive (Pal et al. 2024)
    sigmoid   -log sigmoid(beta (c - r))                               DPO (Rafailov et al. 2023)
    ipo       (c / nc - r / nr - 1 / (2 beta))^2                       IPO (Azar et al. 2023), per-token as TRL
    hinge     max(0, 1 - beta (c - r))                                 SLiC-HF hinge (Zhao et al. 2023)
    apo_zero  (1 - sigmoid(beta c)) + sigmoid(beta r)                  APO-zero (D'Oosterlinck et al. 2024)
    simpo     -log sigmoid(beta (s_theta(y_w) / nc - s_theta(y_l) / nr) - gamma)   SimPO (Meng et al. 2024), no ref

Each equals TRL 1.16's ``DPOTrainer`` ``loss_type`` of the same name (SimPO: its paper's formula, which is TRL's
``CPOTrainer(loss_type="simpo")``); at zero log-ratios (step 1 of a LoRA run: B = 0, the policy is the reference)
sigmoid and dpop give ln 2, ipo 1 / (4 beta^2), hinge and apo_zero 1.

DPOP here is the study's form: the penalty added outside the sigmoid, unscaled by beta (the DPOP paper puts
``- lambda max(0, ...)`` inside the sigmoid's argument, where it is scaled by beta and saturates; the additive form
is much stronger at lambda = 50, whose gradient on s_theta(y_w) is lambda against at most beta for the DPO term).
``logit_clamp`` C clamps beta (c - r) to [-C, C] inside the log-sigmoid of dpop and sigmoid (the study's latest
recipe, C = 50; zero gradient outside); the positive term is never clamped.

``rpo_alpha`` (alpha, any loss) adds the RPO / "DPO + NLL" term (Pang et al. 2024): the policy's per-token NLL of
the chosen answers pooled over the micro-batch, NLL = -sum_i s_theta(y_w,i) / sum_i nc_i, TRL's "sft" term
(``loss_type=[name, "sft"], loss_weights=[1, alpha]``: ``-chosen_per_token_logps[chosen_mask].mean()``).  The
micro-batch loss is ``mean_i loss_i + alpha NLL`` (``preference_loss``); the packed layout, whose micro-batches
need not be the padded ones, adds the same sum pair by pair with each pair's share of its padded micro-batch
(``weighted_preference_loss``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
LossOut = tuple[Tensor, dict[str, Tensor]]


def _reward_metrics(pc: Tensor, pr: Tensor, rc: Tensor, rr: Tensor, beta: float) -> dict[str, Tensor]:
    """TRL's reward and log-prob metrics: rewards = beta x log-ratio."""
    chosen, rejected = beta * (pc - rc).detach(), beta * (pr - rr).detach()
    return {"rewards/chosen": chosen, "rewards/rejected": rejected, "rewards/margins": chosen - rejected,
            "rewards/accuracies": (chosen > rejected).float(), "logps/chosen": pc.detach(),
            "logps/rejected": pr.detach(), "logps/ref_chosen": rc.detach(), "logps/ref_rejected": rr.detach()}


def _dpo_term(pc, pr, rc, rr, beta, logit_clamp):
    arg = beta * ((pc - rc) - (pr - rr))
    if logit_clamp is not None:
        arg = arg.clamp(min=-logit_clamp, max=logit_clamp)
    return -F.logsigmoid(arg)


def dpop_pair_loss(pc, pr, rc, rr, nc=None, nr=None, *, beta: float, lam: float, logit_clamp: float | None = None,
                   **_) -> LossOut:
    dpo = _dpo_term(pc, pr, rc, rr, beta, logit_clamp)
    # max(0, s_ref(y_w) - s_theta(y_w)): zero while the policy keeps the chosen answer at least as likely.
    positive = lam * torch.clamp(rc - pc, min=0.0)
    return dpo + positive, {**_reward_metrics(pc, pr, rc, rr, beta), "loss/dpo": dpo.detach(),
                            "loss/positive": positive.detach()}


def sigmoid_pair_loss(pc, pr, rc, rr, nc=None, nr=None, *, beta: float, logit_clamp: float | None = None,
                      **_) -> LossOut:
    dpo = _dpo_term(pc, pr, rc, rr, beta, logit_clamp)
    return dpo, {**_reward_metrics(pc, pr, rc, rr, beta), "loss/sigmoid": dpo.detach()}


def ipo_pair_loss(pc, pr, rc, rr, nc, nr, *, beta: float, **_) -> LossOut:
    # TRL divides each log-ratio by its answer's token count (IPO's authors' normalisation; at least 1 token).
    delta = (pc - rc) / nc.to(pc.dtype).clamp(min=1.0) - (pr - rr) / nr.to(pr.dtype).clamp(min=1.0)
    loss = (delta - 1.0 / (2.0 * beta)) ** 2
    return loss, {**_reward_metrics(pc, pr, rc, rr, beta), "loss/ipo": loss.detach()}


def hinge_pair_loss(pc, pr, rc, rr, nc=None, nr=None, *, beta: float, **_) -> LossOut:
    loss = torch.relu(1.0 - beta * ((pc - rc) - (pr - rr)))
    return loss, {**_reward_metrics(pc, pr, rc, rr, beta), "loss/hinge": loss.detach()}


def apo_zero_pair_loss(pc, pr, rc, rr, nc=None, nr=None, *, beta: float, **_) -> LossOut:
    chosen = 1.0 - torch.sigmoid(beta * (pc - rc))  # raise the chosen answer's likelihood
    rejected = torch.sigmoid(beta * (pr - rr))        # and lower the rejected one's
    return chosen + rejected, {**_reward_metrics(pc, pr, rc, rr, beta), "loss/apo_chosen": chosen.detach(),
                               "loss/apo_rejected": rejected.detach()}


def simpo_pair_loss(pc, pr, rc, rr, nc, nr, *, beta: float, simpo_gamma: float, **_) -> LossOut:
    """Reference-free (``rc``, ``rr`` are ignored and may be None), length-normalised; rewards are
    beta x the mean token log-prob, as SimPO defines them (and TRL's CPOTrainer logs)."""
    avg_c = pc / nc.to(pc.dtype).clamp(min=1.0)
    avg_r = pr / nr.to(pr.dtype).clamp(min=1.0)
    loss = -F.logsigmoid(beta * (avg_c - avg_r) - simpo_gamma)
    chosen, rejected = beta * avg_c.detach(), beta * avg_r.detach()
    return loss, {"rewards/chosen": chosen, "rewards/rejected": rejected, "rewards/margins": chosen - rejected,
                  "rewards/accuracies": (chosen > rejected).float(), "logps/chosen": pc.detach(),
                  "logps/rejected": pr.detach(), "loss/simpo": loss.detach()}


@dataclass(frozen=True)
class LossSpec:
    name: str
    pair_loss: Callable[..., LossOut]
    needs_reference: bool
    summary: str
    uses: tuple[str, ...] = ("beta",)   # the settings of ``LossSettings`` the loss reads


#: the settings a loss may not read (the trainer says so when one is set away from its default)
OPTIONAL_SETTINGS = ("lam", "logit_clamp", "simpo_gamma")


LOSSES: dict[str, LossSpec] = {spec.name: spec for spec in (
    LossSpec("dpop", dpop_pair_loss, True, "DPO-Positive, the study's (--beta, --lam, --logit_clamp)",
             ("beta", "lam", "logit_clamp")),
    LossSpec("sigmoid", sigmoid_pair_loss, True, "DPO (--beta, --logit_clamp)", ("beta", "logit_clamp")),
    LossSpec("ipo", ipo_pair_loss, True, "IPO, per-token log-ratios as TRL (--beta is tau)"),
    LossSpec("hinge", hinge_pair_loss, True, "SLiC hinge (--beta)"),
    LossSpec("apo_zero", apo_zero_pair_loss, True, "APO-zero (--beta)"),
    LossSpec("simpo", simpo_pair_loss, False, "SimPO, reference-free and length-normalised (--beta, --simpo_gamma)",
             ("beta", "simpo_gamma")),
)}
LOSS_NAMES = tuple(LOSSES)


@dataclass(frozen=True)
class LossSettings:
    """The loss hyper-parameters; each loss reads the ones it uses."""
    beta: float = 0.3
    lam: float = 50.0
    logit_clamp: float | None = None
    simpo_gamma: float = 0.5
    rpo_alpha: float = 0.0

    @classmethod
    def from_config(cls, cfg) -> LossSettings:
        return cls(beta=cfg.beta, lam=cfg.lam, logit_clamp=cfg.logit_clamp, simpo_gamma=cfg.simpo_gamma,
                   rpo_alpha=cfg.rpo_alpha)


def loss_spec(name: str) -> LossSpec:
    if name not in LOSSES:
        raise ValueError(f"--loss must be one of {', '.join(LOSS_NAMES)}, not {name!r}")
    return LOSSES[name]


def _check(pc, pr, rc, rr, nc, nr, spec: LossSpec, settings: LossSettings) -> None:
    if spec.needs_reference and (rc is None or rr is None):
        raise ValueError(f"--loss {spec.name} needs the reference log-probs")
    tensors = [pc, pr, *((rc, rr) if spec.needs_reference else ()), *(n for n in (nc, nr) if n is not None)]
    if len({t.shape for t in tensors}) != 1:
        raise ValueError(f"the log-prob and length tensors must have one shape, got "
                         f"{sorted({tuple(t.shape) for t in tensors})}")
    if spec.name in ("ipo", "simpo") and (nc is None or nr is None):
        raise ValueError(f"--loss {spec.name} needs the response token counts of both answers")
    if settings.rpo_alpha and nc is None:
        raise ValueError("rpo_alpha needs chosen_lengths (the chosen answers' response token counts)")
    if settings.logit_clamp is not None and settings.logit_clamp <= 0:
        raise ValueError(f"logit_clamp must be > 0 (or None: no clamp), got {settings.logit_clamp}")


def chosen_nll(policy_chosen_logps: Tensor, chosen_lengths: Tensor) -> Tensor:
    """Per-token NLL of the chosen responses pooled over the batch: ``-sum(s) / sum(n)`` (a 0-d tensor).

    ``policy_chosen_logps``: (B,) summed log-probs; ``chosen_lengths``: (B,) response token counts (an answer cut
    to zero tokens contributes nothing; an all-empty batch gives 0)."""
    if policy_chosen_logps.shape != chosen_lengths.shape:
        raise ValueError(f"chosen log-probs {tuple(policy_chosen_logps.shape)} and lengths "
                         f"{tuple(chosen_lengths.shape)} must have one shape")
    n_tokens = chosen_lengths.to(policy_chosen_logps.dtype).sum().clamp(min=1.0)
    return -policy_chosen_logps.sum() / n_tokens


def preference_loss(name: str, pc: Tensor, pr: Tensor, rc: Tensor | None, rr: Tensor | None,
                    nc: Tensor | None = None, nr: Tensor | None = None,
                    settings: LossSettings = LossSettings()) -> LossOut:
    """The micro-batch loss (0-d): the batch mean of loss ``name``'s per-pair values, plus ``rpo_alpha`` times the
    pooled chosen NLL; and the metrics, (B,) each (``loss/nll``, one value per batch, repeated B times; reported
    whenever ``nc`` is given)."""
    spec = loss_spec(name)
    _check(pc, pr, rc, rr, nc, nr, spec, settings)
    per_pair, metrics = spec.pair_loss(pc, pr, rc, rr, nc, nr, **vars(settings))
    loss = per_pair.mean()
    if nc is not None:
        nll = chosen_nll(pc, nc)
        if settings.rpo_alpha:
            loss = loss + settings.rpo_alpha * nll
        metrics["loss/nll"] = nll.detach().expand(pc.shape[0]).clone()
    return loss, metrics


def weighted_preference_loss(name: str, pc: Tensor, pr: Tensor, rc: Tensor | None, rr: Tensor | None,
                             nc: Tensor, nr: Tensor, settings: LossSettings, group_sizes: Tensor,
                             group_chosen_tokens: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """The same loss added pair by pair: pair i belongs to a micro-batch of ``group_sizes[i]`` pairs holding
    ``group_chosen_tokens[i]`` chosen tokens (all (B,)), so summing this over every pair of that micro-batch, in
    any number of pieces, gives ``preference_loss`` of it.  Returns (the 0-d sum, each pair's share of its
    micro-batch's loss x its size (B,), whose mean over the micro-batch is that loss, the metrics; ``loss/nll`` per
    pair likewise)."""
    spec = loss_spec(name)
    _check(pc, pr, rc, rr, nc, nr, spec, settings)
    per_pair, metrics = spec.pair_loss(pc, pr, rc, rr, nc, nr, **vars(settings))
    sizes = group_sizes.to(per_pair.dtype)
    nll_share = -pc * sizes / group_chosen_tokens.to(pc.dtype).clamp(min=1.0)
    total = per_pair + settings.rpo_alpha * nll_share if settings.rpo_alpha else per_pair
    metrics["loss/nll"] = nll_share.detach()
    return (total / sizes).sum(), total.detach(), metrics


def dpop_loss(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, ref_chosen_logps: Tensor,
              ref_rejected_logps: Tensor, beta: float = 0.3, lam: float = 50.0, *, rpo_alpha: float = 0.0,
              chosen_lengths: Tensor | None = None, logit_clamp: float | None = None) -> LossOut:
    """The study's loss with its earlier signature: ``preference_loss("dpop", ...)``."""
    return preference_loss("dpop", policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
                           chosen_lengths, None, LossSettings(beta=beta, lam=lam, logit_clamp=logit_clamp,
                                                              rpo_alpha=rpo_alpha))


def mean_metrics(metrics: dict[str, Tensor]) -> dict[str, float]:
    """Average per-pair metric tensors into plain floats (what goes into the training log)."""
    return {k: float(v.double().mean().item()) for k, v in metrics.items()}
