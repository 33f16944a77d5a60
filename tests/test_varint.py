import numpy as np
import pytest

from nerfcompress.errors import BitstreamError
from nerfcompress.varint import encode_uvarints, read_uvarints, unzigzag, zigzag


def test_values_round_trip_and_small_ones_take_a_byte():
    values = [0, 1, 127, 128, 300, 2**24, 2**40]
    data = encode_uvarints(values)
    assert len(encode_uvarints([127])) == 1 and len(encode_uvarints([128])) == 2
    decoded, end = read_uvarints(memoryview(data + b"tail"), 0, len(values), max_bytes=9, what="x")
    assert decoded.tolist() == values and end == len(data)
    assert [unzigzag(zigzag(v)) for v in (-3, -1, 0, 1, 5)] == [-3, -1, 0, 1, 5]
    assert [zigzag(v) for v in (0, -1, 1, -2)] == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "data, count, max_bytes, message",
    [
        (b"\x81\x82", 1, 4, "truncated"),  # the data ends inside a value
        (b"\x01", 2, 4, "truncated"),  # fewer values than declared
        (b"\xff\xff\xff\xff\x01", 1, 4, "at most 4 bytes"),
        (b"\x01\xff\xff\xff\xff\x01", 2, 4, "5 bytes long"),
        (b"\x81\x00", 1, 4, "shortest form"),
    ],
)
def test_damaged_values_are_refused(data, count, max_bytes, message):
    with pytest.raises(BitstreamError, match=message):
        read_uvarints(memoryview(data), 0, count, max_bytes=max_bytes, what="x")


def test_a_huge_declared_count_reads_no_more_than_the_data():
    with pytest.raises(BitstreamError, match="truncated"):
        read_uvarints(memoryview(b"\x01" * 10), 0, 10**12, max_bytes=4, what="x")
    values, end = read_uvarints(memoryview(b"\x05\x06"), 1, 1, max_bytes=1, what="x")
    assert values.dtype == np.int64 and values.tolist() == [6] and end == 2
    with pytest.raises(ValueError):
        encode_uvarints([-1])
