import pytest

from nerfcompress.grid import coarse_to_fine_levels


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
