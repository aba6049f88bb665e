"""The curriculum stages: composition from level sizes and fractions, seeded shuffles, --epochs."""

import pytest

from aligner.train.curriculum import CurriculumSchedule, parse_fractions


def test_study_stages_follow_the_level_sizes():
    sizes = [40, 30, 50]
    sch = CurriculumSchedule(sizes, "1.0,0.5,0.6", seed=1)
    assert sch.n_stages == 4
    # Stage composition computed independently: floor(fraction * size) of each introduced level.
    expected = {1: [40, 0, 0], 2: [40, 15, 0], 3: [40, 15, 30], 4: [40, 30, 50]}
    for stage, counts in expected.items():
        assert sch.level_counts(stage) == counts
        items = sch.stage_items(stage)
        for level, n in enumerate(counts):
            assert sorted(i for lv, i in items if lv == level) == list(range(n))  # the first n of the level
    # Another data size, other counts ("data-size aware").
    assert CurriculumSchedule([10, 7, 11]).level_counts(3) == [10, 3, 6]


def test_stage_order_is_a_seeded_shuffle():
    sch = CurriculumSchedule([20, 20, 20], seed=3)
    a, b = sch.stage_order(3), CurriculumSchedule([20, 20, 20], seed=3).stage_order(3)
    assert a == b
    assert sorted(a) == sorted(sch.stage_items(3)) and a != sch.stage_items(3)
    assert CurriculumSchedule([20, 20, 20], seed=4).stage_order(3) != a
    assert sch.stage_order(2) != sch.stage_order(3)[: len(sch.stage_order(2))]


def test_epochs_select_the_first_stages():
    sch = CurriculumSchedule([5, 5, 5])
    assert sch.stages(3) == [1, 2, 3]
    assert sch.stages(4, start=3) == [3, 4]
    # Beyond the last stage the full data repeats with a new shuffle.
    assert sch.level_counts(5) == [5, 5, 5] and sch.stage_order(5) != sch.stage_order(4)
    with pytest.raises(ValueError):
        sch.stages(0)
    with pytest.raises(ValueError):
        sch.stages(2, start=3)


def test_single_level_is_one_stage_and_small_levels_still_contribute():
    one = CurriculumSchedule([9])
    assert one.n_stages == 1 and one.level_counts(1) == [9]
    tiny = CurriculumSchedule([4, 1, 1], [1.0, 0.5, 0.6])
    assert tiny.level_counts(3) == [4, 1, 1]  # floor(0.5) would drop the only medium pair
    assert CurriculumSchedule([4, 0, 3]).level_counts(2) == [4, 0, 0]


def test_bad_fractions_and_sizes():
    assert parse_fractions("1.0, 0.5,0.6") == [1.0, 0.5, 0.6]
    for bad in ("1.0,0,0.6", "1.5", ""):
        with pytest.raises(ValueError):
            parse_fractions(bad)
    with pytest.raises(ValueError, match="fraction"):
        CurriculumSchedule([1, 2, 3, 4], [1.0, 0.5, 0.6])
    with pytest.raises(ValueError):
        CurriculumSchedule([3, -1])


# --- --leftover wrap|drop and --schedule per_stage (issue 14, T2 and T8) --------------------------------------

def test_leftover_drop_leaves_the_partial_step_out_as_the_study():
    from aligner.train.curriculum import plan_stages

    sch = CurriculumSchedule([13, 10, 9], seed=5)  # stages of 13, 13 + 5, 13 + 5 + 5, 32 pairs
    wrap = plan_stages(sch, 4, 8, leftover="wrap")
    drop = plan_stages(sch, 4, 8, leftover="drop")
    sizes = [13, 18, 23, 32]
    # The study's first recipe: floor(N / 8) optimizer steps per stage (train_dpop.py:278, :360).
    assert [drop.steps[s] for s in (1, 2, 3, 4)] == [n // 8 for n in sizes] == [1, 2, 2, 4]
    assert [wrap.steps[s] for s in (1, 2, 3, 4)] == [-(-n // 8) for n in sizes] == [2, 3, 3, 4]
    for s, n in zip((1, 2, 3, 4), sizes):
        order = sch.stage_order(s)
        assert drop.orders[s] == order[: (n // 8) * 8]  # the trailing n mod 8 pairs of the order are not trained
        assert wrap.orders[s][:n] == order and wrap.orders[s][n:] == order[: len(wrap.orders[s]) - n]
        d = drop.description[s - 1]
        assert d["dropped_pairs"] == n % 8 and d["wrapped_pairs"] == 0
        assert wrap.description[s - 1]["wrapped_pairs"] == (-n) % 8
    assert plan_stages(CurriculumSchedule([5]), 1, 8, leftover="drop").steps == {1: 0}  # fewer than one step
    with pytest.raises(ValueError, match="leftover"):
        plan_stages(sch, 4, 8, leftover="scaled")


@pytest.mark.parametrize("name,warmup", [("linear", 3), ("cosine", 2), ("linear", 10)])
def test_per_stage_lr_restarts_each_stage_as_a_new_transformers_schedule(name, warmup):
    import torch
    from transformers import get_scheduler

    from aligner.train.curriculum import plan_stages
    from aligner.train.schedule import stage_lr_lambda

    plan = plan_stages(CurriculumSchedule([20, 12, 16], seed=1), 4, 4)  # 5, 7, 10, 12 steps
    lam = stage_lr_lambda(name, warmup, plan)
    got = [lam(k) for k in range(plan.total_steps)]
    want = []
    for s in plan.stages:  # what the study does: a new optimizer and get_scheduler(...) per stage, stepped by hand
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
        sched = get_scheduler(name, optimizer=opt, num_warmup_steps=warmup, num_training_steps=plan.steps[s])
        for _ in range(plan.steps[s]):
            want.append(opt.param_groups[0]["lr"] / 2.0)
            opt.step()
            sched.step()
    assert got == pytest.approx(want, abs=1e-15)
    starts = [sum(plan.steps[t] for t in plan.stages if t < s) for s in plan.stages]
    assert all(got[k] == 0.0 for k in starts)  # every stage starts its warmup at lr 0
    if warmup == 10:  # a 5- and 7-step stage never leave the warmup (no cap at the stage length, as the study)
        assert got[:5] == pytest.approx([k / 10 for k in range(5)])


def test_per_stage_schedule_survives_a_state_dict_round_trip_and_resets_adam():
    import torch

    from aligner.train.curriculum import plan_stages
    from aligner.train.schedule import reset_optimizer_state, stage_lr_lambda

    plan = plan_stages(CurriculumSchedule([8, 8], seed=1), 3, 4)
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([p], lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, stage_lr_lambda("linear", 1, plan))
    p.grad = torch.full((3,), 0.1)
    for _ in range(3):
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2 = torch.optim.AdamW([torch.nn.Parameter(torch.ones(3))], lr=1.0)
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, stage_lr_lambda("cosine", 5, plan))  # other shape, restored
    sched2.load_state_dict(state)
    sched2.step()
    sched.step()
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    # After reset_optimizer_state, a step equals the first step of a newly built AdamW on the same weights/grads.
    p.grad = torch.tensor([0.5, -1.0, 2.0])
    fresh_p = torch.nn.Parameter(p.detach().clone())
    fresh_p.grad = p.grad.clone()
    assert reset_optimizer_state(opt) is True and not opt.state
    fresh = torch.optim.AdamW([fresh_p], lr=opt.param_groups[0]["lr"])
    opt.step()
    fresh.step()
    assert torch.equal(p.detach(), fresh_p.detach())


def test_shuffled_curriculum_order_visits_the_same_pairs_in_one_stage():
    """--curriculum_order shuffled: the ablation of the curriculum: every pair visit of the staged plan, as often,
    in one seeded order (one stage), with the same leftover rule."""
    from collections import Counter

    from aligner.train.curriculum import CurriculumSchedule, plan_stages

    schedule = CurriculumSchedule([40, 30, 20], seed=3)
    staged = plan_stages(schedule, 4, 8, leftover="drop")
    visits = Counter(ref for s in schedule.stages(4) for ref in schedule.stage_items(s))
    flat = plan_stages(schedule, 4, 8, leftover="drop", curriculum_order="shuffled")
    assert flat.stages == [1] and len(staged.stages) == 4
    assert flat.description[0]["n_pairs"] == sum(visits.values()) == sum(d["n_pairs"] for d in staged.description)
    assert flat.steps[1] == sum(visits.values()) // 8
    wrapped = plan_stages(schedule, 4, 8, curriculum_order="shuffled")
    assert Counter(wrapped.orders[1][:sum(visits.values())]) == visits  # the same pairs, as often
    levels_in_a_row = [lv for lv, _ in wrapped.orders[1][:30]]
    assert len(set(levels_in_a_row)) == 3  # not level by level: the hard pairs come early too
    assert wrapped.orders[1] == plan_stages(schedule, 4, 8, curriculum_order="shuffled").orders[1]  # seeded
    assert flat.description[0]["per_level"] == {"easy": 40 * 4, "medium": 15 + 15 + 30, "hard": 12 + 20}
