import pytest

from nerfcompress.bitstream.container import read_container_index, write_container
from nerfcompress.bitstream.levels import (
    decodable_levels,
    entry_level_rows,
    grid_level_counts,
    level_prefix_bytes,
    order_sections,
)
from nerfcompress.errors import BitstreamError

GRIDS = [{"name": "a", "rows": 6, "level_rows": [2, 4]}, {"name": "b", "rows": 3, "level_rows": [1, 1, 1]}]


def test_order_puts_per_grid_parts_first_then_levels_coarse_first_across_grids():
    given = [("a.l1", b""), ("a.cdf", b""), ("a.l0", b""), ("b.l2", b""), ("b.x", b""), ("b.l0", b""), ("b.l1", b"")]
    assert [name for name, _ in order_sections(given)] == ["a.cdf", "b.x", "a.l0", "b.l0", "a.l1", "b.l1", "b.l2"]


def test_level_counts_and_decodable_levels_of_grids_with_different_depths():
    assert grid_level_counts(GRIDS) == {"a": 2, "b": 3}
    assert decodable_levels(GRIDS, ["a.l0", "b.l0", "a.l1", "b.l1", "b.l2"]) == 3
    assert decodable_levels(GRIDS, ["a.l0", "b.l0", "a.l1", "b.l2"]) == 1
    assert decodable_levels(GRIDS, ["a.l0", "b.l1"]) == 0


def test_level_prefix_bytes_of_a_file():
    sections = order_sections([(f"{g}.l{i}", bytes(10 * (i + 1))) for g, n in (("a", 2), ("b", 3)) for i in range(n)])
    data = write_container({"grids": GRIDS}, [("cameras", b"c" * 7), *sections])
    header, index = read_container_index(data)
    ends = {e.name: e.offset + e.length for e in index}
    assert level_prefix_bytes(header["grids"], index) == [ends["b.l0"], ends["b.l1"], len(data)]
    with pytest.raises(BitstreamError, match="'b.l2' is missing"):
        level_prefix_bytes(header["grids"], index[:-1])


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "a", "rows": 6, "level_rows": [2, 3]},
        {"name": "a", "rows": 6, "level_rows": [6, 0]},
        {"name": "a", "rows": 6, "level_rows": []},
        {"name": "a", "rows": 6, "level_rows": [True, 5]},
        {"name": "a", "rows": 6, "level_rows": None},
        {"name": "a", "rows": 65, "level_rows": [1] * 65},
        {"rows": 6, "level_rows": [6]},
        [6],
    ],
)
def test_malformed_level_rows_are_a_bitstream_error(entry):
    with pytest.raises(BitstreamError):
        entry_level_rows(entry)
    with pytest.raises(BitstreamError):
        decodable_levels([entry], [])
