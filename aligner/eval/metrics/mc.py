"""Multiple-choice metrics as pure functions of the choices' log-likelihoods (MC1, MC2)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def mc1_hit(scores: Sequence[float], labels: Sequence[int]) -> bool:
    """Whether the highest-scoring choice (the first one on a tie) is labelled true."""
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    return labels[best] == 1


def mc2_mass(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Softmax mass of the true choices, computed stably."""
    m = max(scores)
    w = [math.exp(s - m) for s in scores]
    return sum(x for x, lab in zip(w, labels) if lab == 1) / sum(w)
