import pytest

from nerfcompress.grid import coarse_to_fine_levels, joint_prefix_levels


def test_levels_are_a_deterministic_function_of_the_step_covering_the_range():
    counts = [coarse_to_fine_levels(step, 3, 6) for step in range(200)]
    assert counts == [coarse_to_fine_levels(step, 3, 6) for step in range(200)]
    assert set(counts) == {3, 4, 5, 6}
    assert coarse_to_fine_levels(7, 6, 6) == 6


@pytest.mark.parametrize(
    "step, min_levels, num_levels, name", [(-1, 1, 4, "step"), (0, 0, 4, "min_levels"), (0, 5, 4, "min_levels")]
)
def test_rejects_out_of_range_arguments(step, min_levels, num_levels, name):
    with pytest.raises(ValueError, match=name):
        coarse_to_fine_levels(step, min_levels, num_levels)


def test_full_fraction_keeps_every_level_on_that_share_of_the_steps_and_zero_changes_nothing():
    steps = range(2000)
    uniform = [coarse_to_fine_levels(step, 1, 8) for step in steps]
    assert uniform == [coarse_to_fine_levels(step, 1, 8, 0.0) for step in steps]
    mixed = [coarse_to_fine_levels(step, 1, 8, 0.5) for step in steps]
    full_share = sum(levels == 8 for levels in mixed) / len(mixed)
    assert abs(full_share - (0.5 + 0.5 / 8)) < 0.04
    assert set(mixed) == set(range(1, 9))  # every prefix is still trained
    assert all(m in (u, 8) for m, u in zip(mixed, uniform))
    assert all(levels == 8 for levels in (coarse_to_fine_levels(step, 1, 8, 1.0) for step in range(50)))


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_rejects_a_full_fraction_outside_zero_one(fraction):
    with pytest.raises(ValueError, match="full_fraction"):
        coarse_to_fine_levels(0, 1, 4, fraction)


def test_no_step_after_the_last_one_truncates_and_the_steps_before_it_are_unchanged():
    before = [coarse_to_fine_levels(step, 1, 8, 0.5) for step in range(200)]
    cut = [coarse_to_fine_levels(step, 1, 8, 0.5, last_step=99) for step in range(200)]
    assert cut[:100] == before[:100] and min(before[100:]) < 8
    assert set(cut[100:]) == {8}


def test_a_joint_prefix_is_always_coarser_than_the_whole_grid_and_ends_after_the_last_step():
    counts = [joint_prefix_levels(step, 2, 6) for step in range(300)]
    assert counts == [joint_prefix_levels(step, 2, 6) for step in range(300)]
    assert set(counts) == {2, 3, 4, 5}  # never the whole grid, which every step renders anyway
    assert joint_prefix_levels(7, 3, 4) == 3
    cut = [joint_prefix_levels(step, 2, 6, last_step=99) for step in range(200)]
    assert cut[:100] == counts[:100] and set(cut[100:]) == {None}


@pytest.mark.parametrize(
    "step, min_levels, num_levels, name", [(-1, 1, 4, "step"), (0, 0, 4, "min_levels"), (0, 4, 4, "min_levels")]
)
def test_a_joint_prefix_rejects_out_of_range_arguments(step, min_levels, num_levels, name):
    with pytest.raises(ValueError, match=name):
        joint_prefix_levels(step, min_levels, num_levels)
