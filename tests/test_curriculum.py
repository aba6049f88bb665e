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
