"""The optimizer and the LR schedule of a DPOP run (``--schedule per_stage|global``).

* ``per_stage`` (the study's runnable first recipe, first_improvement/training/train_dpop.py:274-284): every
  curriculum stage gets a new AdamW (moments and step counts reset) and its own ``--lr_scheduler`` schedule with
  ``--warmup_steps`` warmup over that stage's optimizer steps.  The warmup is not capped at the stage length (a
  stage shorter than its warmup never leaves it, as in the study).  Implemented as one ``LambdaLR`` over the global
  optimizer step whose multiplier restarts at each stage boundary, so checkpoints and the study-style
  ``--start-epoch/--resume-step`` (which advance the scheduler by global steps) place it right.
* ``global``: one AdamW and one schedule over the run's total steps (warmup capped at the total).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from aligner.train.curriculum import StagePlan

logger = logging.getLogger(__name__)


def build_optimizer(params, cfg, plan: StagePlan):
    """(AdamW, LR scheduler) for ``cfg`` (a ``DPOPTrainingConfig``) and ``plan``."""
    from transformers import get_scheduler

    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.schedule == "per_stage":
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, stage_lr_lambda(cfg.lr_scheduler, cfg.warmup_steps,
                                                                                 plan))
    else:
        scheduler = get_scheduler(cfg.lr_scheduler, optimizer=optimizer,
                                  num_warmup_steps=min(cfg.warmup_steps, plan.total_steps),
                                  num_training_steps=plan.total_steps)
    return optimizer, scheduler


def reset_optimizer_state(optimizer) -> bool:
    """Clear the moments and step counts of the torch optimizer inside accelerate's (or DeepSpeed's) wrappers, so
    that it continues as a newly built one would; returns whether there was state to clear."""
    while hasattr(optimizer, "optimizer"):
        optimizer = optimizer.optimizer
    had = bool(optimizer.state)
    optimizer.state.clear()
    return had



_STAGE_LAMBDAS: dict[tuple, object] = {}


def _stage_lambda(name: str, warmup: int, n_steps: int):
    """transformers' LR multiplier of scheduler ``name`` with ``warmup`` warmup steps over ``n_steps`` steps, as a
    function of the step (built once per shape on a throw-away optimizer)."""
    key = (name, warmup, n_steps)
    if key not in _STAGE_LAMBDAS:
        import torch
        from transformers import get_scheduler

        dummy = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = get_scheduler(name, optimizer=dummy, num_warmup_steps=warmup, num_training_steps=max(1, n_steps))
        if not getattr(sched, "lr_lambdas", None):
            raise ValueError(f"--schedule per_stage needs a LambdaLR-based scheduler (linear, cosine, "
                             f"constant_with_warmup, ...), not {name!r}")
        _STAGE_LAMBDAS[key] = sched.lr_lambdas[0]
    return _STAGE_LAMBDAS[key]


class StageLRLambda:
    """The LR multiplier at a global optimizer step when every stage restarts its own schedule: the stage's
    ``warmup`` steps then its decay over that stage's steps (no cap of the warmup at the stage length, as the
    study's first recipe: a stage shorter than its warmup never leaves it).  Holds plain data only, so a
    ``LambdaLR`` state dict (``__dict__``) saves and restores it."""

    def __init__(self, name: str, warmup: int, stage_steps: Sequence[int]):
        self.name, self.warmup, self.stage_steps = name, int(warmup), [int(n) for n in stage_steps]

    def __call__(self, step: int) -> float:
        start = 0
        for n in self.stage_steps:
            if step < start + n:
                return _stage_lambda(self.name, self.warmup, n)(step - start)
            start += n
        return 0.0  # past the end (not reached by training)


def stage_lr_lambda(name: str, warmup: int, plan: StagePlan) -> StageLRLambda:
    """The per-stage LR multiplier for ``plan`` (stages in run order; stages with no step take none)."""
    return StageLRLambda(name, warmup, [plan.steps[s] for s in plan.stages])
