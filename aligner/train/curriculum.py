"""The data-size-aware curriculum of the study (Curry-DPO style): difficulty levels are mixed in stage by stage.

With levels (easy, medium, hard) and fractions (1.0, 0.5, 0.6):

    stage 1 = all easy
    stage 2 = easy + first 50% of medium
    stage 3 = easy + first 50% of medium + first 60% of hard
    stage 4 = everything

In general, stage k <= n_levels takes the first ``floor(fraction_j * size_j)`` items (at least one) of every level j < k (the
fractions of the levels already fully introduced stay as they were; the easiest level's fraction is normally
1.0), and stage n_levels + 1 takes every item of every level.  The counts follow the sizes actually loaded
(after invalid or over-long pairs were dropped), which is what "data-size aware" means here.  Each stage is one
pass in an order shuffled with ``seed + stage``, so a run is reproducible and a resumed run sees the same order.
``epochs`` beyond the last stage repeat the full stage with a fresh shuffle.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from aligner.core.paths import LEVELS

logger = logging.getLogger(__name__)

DEFAULT_FRACTIONS = (1.0, 0.5, 0.6)
LEFTOVER_MODES = ("wrap", "drop")

PairRef = tuple[int, int]  # (level, index within the level)


def parse_fractions(text: str | Sequence[float]) -> list[float]:
    """``"1.0,0.5,0.6"`` -> [1.0, 0.5, 0.6]; every fraction must lie in (0, 1]."""
    values = [float(x) for x in text.split(",") if x.strip()] if isinstance(text, str) else [float(x) for x in text]
    if not values:
        raise ValueError("--stage_fractions needs at least one value")
    bad = [v for v in values if not 0.0 < v <= 1.0]
    if bad:
        raise ValueError(f"stage fractions must be in (0, 1], got {bad}")
    return values


def n_stages_for(n_levels: int) -> int:
    """Distinct stages of a curriculum over ``n_levels`` levels: one per level plus the final 'everything' stage
    (one stage for a single level)."""
    return n_levels + 1 if n_levels > 1 else 1


@dataclass
class CurriculumSchedule:
    level_sizes: Sequence[int]
    fractions: Sequence[float] = DEFAULT_FRACTIONS
    seed: int = 42
    level_names: Sequence[str] = field(default_factory=lambda: list(LEVELS))

    def __post_init__(self):
        self.level_sizes = [int(n) for n in self.level_sizes]
        self.fractions = parse_fractions(self.fractions)
        if not self.level_sizes:
            raise ValueError("a curriculum needs at least one level")
        if any(n < 0 for n in self.level_sizes):
            raise ValueError(f"level sizes must be >= 0, got {self.level_sizes}")
        if len(self.fractions) < len(self.level_sizes):
            raise ValueError(f"{len(self.level_sizes)} levels but only {len(self.fractions)} stage fractions "
                             f"({self.fractions}); give one fraction per level")
        names = list(self.level_names)
        self.level_names = names[: len(self.level_sizes)] + [f"level{i + 1}" for i in range(len(names),
                                                                                            len(self.level_sizes))]

    @property
    def n_levels(self) -> int:
        return len(self.level_sizes)

    @property
    def n_stages(self) -> int:
        """Distinct stages: one per level plus the final 'everything' stage (one stage for a single level)."""
        return n_stages_for(self.n_levels)

    def level_counts(self, stage: int) -> list[int]:
        """How many items of each level stage ``stage`` (1-based) uses."""
        if stage < 1:
            raise ValueError(f"stages are numbered from 1, got {stage}")
        if stage >= self.n_stages:
            return list(self.level_sizes)
        counts = []
        for j, n in enumerate(self.level_sizes):
            if j >= stage:
                counts.append(0)
                continue
            c = int(self.fractions[j] * n + 1e-9)  # floor, as the study's int(n * 0.5)
            counts.append(min(n, max(c, 1 if n > 0 else 0)))  # a non-empty level contributes at least one item
        return counts

    def stage_items(self, stage: int) -> list[PairRef]:
        """The stage's items in curriculum order (level by level, file order), before shuffling."""
        return [(j, i) for j, c in enumerate(self.level_counts(stage)) for i in range(c)]

    def stage_order(self, stage: int) -> list[PairRef]:
        """The stage's items shuffled with ``seed + stage`` (deterministic across runs and resumes)."""
        items = self.stage_items(stage)
        random.Random(self.seed + stage).shuffle(items)
        return items

    def stages(self, epochs: int, start: int = 1) -> list[int]:
        """Stage numbers run for ``--epochs K`` (first K stages), starting at ``start``."""
        if epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {epochs}")
        if not 1 <= start <= epochs:
            raise ValueError(f"--start-epoch must be between 1 and --epochs ({epochs}), got {start}")
        if epochs > self.n_stages:
            logger.warning("--epochs %d is more than the %d curriculum stages; stages %d..%d repeat the full data",
                           epochs, self.n_stages, self.n_stages + 1, epochs)
        return list(range(start, epochs + 1))

    def describe(self, epochs: int) -> list[dict]:
        """One dict per stage (for logs and run_config.json)."""
        out = []
        for s in range(1, epochs + 1):
            counts = self.level_counts(s)
            out.append({"stage": s, "n_pairs": sum(counts),
                        "per_level": {name: c for name, c in zip(self.level_names, counts)}})
        return out


def shuffled_mix(item_lists: Sequence[Sequence], seed: int) -> list:
    """All items of several lists in one list, shuffled with ``seed`` (the further_improvement recipe's mix)."""
    items = [x for lst in item_lists for x in lst]
    random.Random(seed).shuffle(items)
    return items


@dataclass
class StagePlan:
    """Which pairs each optimizer step of each stage trains on: the whole run, fixed before training starts."""

    stages: list[int]
    pairs_per_step: int
    orders: dict[int, list[PairRef]]     # stage -> pairs in training order, a whole number of steps long
    steps: dict[int, int]                # stage -> optimizer steps
    description: list[dict]              # per stage: pairs per level, steps, pairs wrapped round (for logs)

    @property
    def total_steps(self) -> int:
        return sum(self.steps.values())

    def step_pairs(self, stage: int, step_in_stage: int) -> list[PairRef]:
        """The pairs of one optimizer step (all processes, all micro-batches)."""
        lo = step_in_stage * self.pairs_per_step
        return self.orders[stage][lo: lo + self.pairs_per_step]

    def signature(self) -> dict:
        """What a checkpoint must agree on to be resumed by this plan."""
        return {"pairs_per_step": self.pairs_per_step, "stage_steps": {str(k): v for k, v in self.steps.items()}}


CURRICULUM_ORDERS = ("staged", "shuffled")


def flattened_order(schedule: CurriculumSchedule, n_stages: int) -> list[PairRef]:
    """Every pair visit of the first ``n_stages`` curriculum stages (the same pairs, as often), in one order shuffled
    with the schedule's seed: the curriculum ablation, which differs from the curriculum in the order alone."""
    visits = [ref for s in schedule.stages(n_stages) for ref in schedule.stage_items(s)]
    random.Random(schedule.seed).shuffle(visits)
    return visits


def plan_stages(schedule: CurriculumSchedule, n_stages: int, pairs_per_step: int,
                leftover: str = "wrap", curriculum_order: str = "staged") -> StagePlan:
    """Cut each stage's shuffled order into optimizer steps of ``pairs_per_step`` pairs.

    The last, partial step of a stage (``N mod pairs_per_step`` pairs): ``wrap`` fills it by wrapping round to the
    stage's first pairs (as ``DistributedSampler`` does), so every pair trains and every step has the same size
    and every process the same number of micro-batches (``ceil(N / pairs_per_step)`` steps); ``drop`` leaves those
    pairs out (``floor(N / pairs_per_step)`` steps), which is what the study's code amounts to: its first recipe
    never steps the optimizer for them and discards their gradient at the next stage's ``zero_grad``, its latest
    recipe steps it at the schedule's end, where the LR is 0."""
    if pairs_per_step < 1:
        raise ValueError(f"pairs per optimizer step must be >= 1, got {pairs_per_step}")
    if leftover not in LEFTOVER_MODES:
        raise ValueError(f"leftover must be one of {LEFTOVER_MODES}, not {leftover!r}")
    if curriculum_order not in CURRICULUM_ORDERS:
        raise ValueError(f"curriculum order must be one of {CURRICULUM_ORDERS}, not {curriculum_order!r}")
    flat = curriculum_order == "shuffled"  # one stage holding every stage's visits, shuffled
    stages = [1] if flat else schedule.stages(n_stages)
    orders, steps = {}, {}
    for s in stages:
        order = flattened_order(schedule, n_stages) if flat else schedule.stage_order(s)
        if not order:
            logger.warning("stage %d has no pairs (its levels are empty); it is skipped", s)
        if leftover == "drop":
            n_steps = len(order) // pairs_per_step
            if order and n_steps == 0:
                logger.warning("stage %d has %d pairs, fewer than one optimizer step of %d: with --leftover drop it "
                               "trains nothing", s, len(order), pairs_per_step)
            orders[s] = order[: n_steps * pairs_per_step]
        else:
            n_steps = math.ceil(len(order) / pairs_per_step)
            pad = n_steps * pairs_per_step - len(order)
            orders[s] = order + [order[i % len(order)] for i in range(pad)]
        steps[s] = n_steps
    description = [_flat_description(schedule, n_stages)] if flat else schedule.describe(n_stages)
    for d in description:
        d["optimizer_steps"] = steps[d["stage"]]
        trained = d["optimizer_steps"] * pairs_per_step
        d["wrapped_pairs"] = max(0, trained - d["n_pairs"])
        d["dropped_pairs"] = max(0, d["n_pairs"] - trained)
    return StagePlan(stages, pairs_per_step, orders, steps, description)


def _flat_description(schedule: CurriculumSchedule, n_stages: int) -> dict:
    """The one stage of ``--curriculum_order shuffled``: the visits of every curriculum stage, per level."""
    per_stage = schedule.describe(n_stages)
    per_level = {name: sum(d["per_level"][name] for d in per_stage) for name in schedule.level_names}
    return {"stage": 1, "n_pairs": sum(per_level.values()), "per_level": per_level,
            "flattened_stages": len(per_stage)}
