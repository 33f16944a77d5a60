"""LevelStream: levels arrive in order, a truncated stream keeps its last good level, damage stops it."""

import pytest

from nerfcompress.bitstream.container import read_container_index, write_container
from nerfcompress.bitstream.level_stream import LevelStream
from nerfcompress.bitstream.levels import level_prefix_bytes, order_sections

GRIDS = [{"name": "a", "rows": 6, "level_rows": [2, 4]}, {"name": "b", "rows": 3, "level_rows": [1, 1, 1]}]


@pytest.fixture(scope="module")
def data() -> bytes:
    levels = [(f"{g}.l{i}", bytes([i]) * (10 * (i + 1))) for g, n in (("a", 2), ("b", 3)) for i in range(n)]
    return write_container({"grids": GRIDS}, [("cameras", b"c" * 7), *order_sections(levels)])


@pytest.fixture(scope="module")
def prefix_bytes(data) -> list:
    header, index = read_container_index(data)
    return level_prefix_bytes(header["grids"], index)


def _feed(stream: LevelStream, data: bytes, chunk: int = 1) -> list:
    arrivals = []
    for start in range(0, len(data), chunk):
        arrival = stream.feed(data[start : start + chunk])
        if arrival is not None:
            arrivals.append(arrival)
    return arrivals


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_levels_arrive_in_order_as_soon_as_their_sections_are_complete(data, prefix_bytes, chunk):
    stream = LevelStream(max_bytes=len(data))
    arrivals = _feed(stream, data, chunk)
    levels = [a.levels for a in arrivals]
    assert levels == sorted(set(levels)) and levels[-1] == 3
    for arrival in arrivals:
        needed = prefix_bytes[arrival.levels - 1]
        assert needed <= arrival.bytes_received < needed + chunk  # reported with the chunk that completed it
        assert arrival.data == data[: arrival.bytes_received] and arrival.most_levels == 3
        assert {"a.l0", "b.l0", "cameras"} <= set(arrival.sections)
    if chunk == 1:
        assert levels == [1, 2, 3]
    assert stream.end() is None and stream.complete and stream.error is None


def test_a_truncated_stream_keeps_its_last_good_level_and_says_so(data, prefix_bytes):
    stream = LevelStream()
    arrivals = _feed(stream, data[: prefix_bytes[1] + 3])  # level 2 in, a few bytes of level 3
    assert [a.levels for a in arrivals] == [1, 2]
    assert stream.end() is None
    assert not stream.complete and stream.levels == 2
    assert "ended after" in stream.error and "showing 2 of 3 levels" in stream.error
    assert stream.feed(data[prefix_bytes[1] + 3 :]) is None and stream.levels == 2  # stopped for good


def test_a_corrupt_section_stops_refining_with_a_message(data, prefix_bytes):
    _, index = read_container_index(data)
    section = next(e for e in index if e.name == "a.l1")  # level 2's first section
    damaged = bytearray(data)
    damaged[section.offset + 2] ^= 0x40
    stream = LevelStream()
    arrivals = _feed(stream, bytes(damaged), chunk=5)
    assert [a.levels for a in arrivals] == [1]
    assert stream.levels == 1 and not stream.complete
    assert "damaged" in stream.error and "'a.l1' fails its CRC32" in stream.error and "keeping 1 levels" in stream.error
    assert stream.end() is None and stream.levels == 1


def test_a_stream_that_never_holds_a_level_reports_why_at_its_end(data, prefix_bytes):
    stream = LevelStream()
    assert _feed(stream, b"JUNK" + data[4:100], chunk=16) == []
    stream.end()
    assert stream.levels == 0 and "without a complete level" in stream.error
    assert "not a nerfcompress file" in stream.error


def test_bytes_after_the_last_section_or_beyond_the_bound_stop_the_stream(data):
    trailing = LevelStream()
    _feed(trailing, data + b"xyz", chunk=len(data))
    assert trailing.levels == 3 and "follow the last section" in trailing.error and not trailing.complete
    bounded = LevelStream(max_bytes=len(data) - 1)
    assert [a.levels for a in _feed(bounded, data, chunk=10)][-1] < 3
    assert "more than" in bounded.error


def test_max_bytes_must_be_positive():
    with pytest.raises(ValueError, match="max_bytes"):
        LevelStream(max_bytes=0)


def test_levels_before_damage_in_the_same_chunk_are_kept():
    levels = [(f"{g}.l{i}", bytes([i]) * (1000 * (i + 1))) for g, n in (("a", 2), ("b", 3)) for i in range(n)]
    data = write_container({"grids": GRIDS}, [("networks", b"n" * 3000), *order_sections(levels)])
    header, index = read_container_index(data)
    section = next(e for e in index if e.name == "b.l2")  # level 3's last section
    damaged = bytearray(data)
    damaged[section.offset] ^= 0x01
    stream = LevelStream()
    arrival = stream.feed(bytes(damaged))  # everything at once
    assert arrival is not None and arrival.levels == 2
    longest_good = section.offset + section.length - 1  # the damaged section is not complete yet
    assert level_prefix_bytes(header["grids"], index)[1] <= arrival.bytes_received == longest_good
    assert "'b.l2' fails its CRC32" in stream.error and "keeping 2 levels" in stream.error
