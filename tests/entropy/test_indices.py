import numpy as np
import pytest

from nerfcompress.entropy.indices import (
    decode_indices,
    encode_indices,
    pack_indices,
    packed_bytes,
    range_code_indices,
    range_decode_indices,
    unpack_indices,
)
from nerfcompress.errors import BitstreamError


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("num_rows", [1, 7, 9, 1000])
def test_both_codings_round_trip_bit_identically(bits, num_rows):
    rng = np.random.default_rng(bits * 1000 + num_rows)
    indices = rng.integers(0, 2**bits, num_rows).astype(np.uint8)
    indices[0] = 2**bits - 1  # the largest index is representable
    packed = pack_indices(indices, bits)
    assert len(packed) == packed_bytes(num_rows, bits) == -(-num_rows * bits // 8)
    np.testing.assert_array_equal(unpack_indices(packed, num_rows, bits), indices)
    np.testing.assert_array_equal(range_decode_indices(range_code_indices(indices, bits), num_rows, bits), indices)
    coding, data = encode_indices(indices, bits)
    np.testing.assert_array_equal(decode_indices(coding, data, num_rows, bits), indices)


def test_packing_is_little_endian_bit_order():
    # indices 1, 2, 3 at 3 bits: stream bits (LSB first) 100 010 110 -> bytes 0b11010001, 0b00000000
    assert pack_indices(np.array([1, 2, 3], np.uint8), 3) == bytes([0b11010001, 0b0])
    assert pack_indices(np.array([0xAB], np.uint8), 8) == b"\xab"


def test_the_smaller_coding_is_chosen():
    rng = np.random.default_rng(0)
    uniform = rng.integers(0, 16, 5000).astype(np.uint8)
    coding, data = encode_indices(uniform, 4)
    assert coding == "packed" and len(data) == 2500  # tables and coder overhead make range larger
    assert len(range_code_indices(uniform, 4)) > 2500
    skewed = np.clip(np.round(rng.laplace(8, 0.7, 5000)), 0, 15).astype(np.uint8)
    coding, data = encode_indices(skewed, 4)
    assert coding == "range" and len(data) == len(range_code_indices(skewed, 4)) < 0.7 * 2500
    constant = np.full(100_000, 5, np.uint8)
    coding, data = encode_indices(constant, 4)
    assert coding == "range" and len(data) < 64
    np.testing.assert_array_equal(decode_indices(coding, data, 100_000, 4), constant)
    assert encode_indices(np.array([3], np.uint8), 2)[0] == "packed"  # one row: 1 byte packed


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="bits"):
        pack_indices(np.zeros(4, np.uint8), 9)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        pack_indices(np.array([4], np.uint8), 2)
    with pytest.raises(ValueError, match="uint8"):
        encode_indices(np.zeros(4, np.int64), 2)


def test_corrupt_data_raises_bitstream_error():
    rng = np.random.default_rng(1)
    indices = np.clip(np.round(rng.laplace(8, 1.0, 3000)), 0, 15).astype(np.uint8)
    coded = range_code_indices(indices, 4)
    packed = pack_indices(indices[:5], 3 + 1)
    bad = [
        ("packed", packed[:-1], 5),
        ("packed", packed + b"\0", 5),
        ("packed", packed[:-1] + b"\xf0", 5),  # padding bits set (5 rows x 4 bits = 2.5 bytes)
        ("range", coded[:1], 3000),
        ("range", bytes([15, 1]) + coded[2:], 3000),  # table leaves [0, 16)
        ("range", coded[:2] + b"\0\0" + coded[4:], 3000),  # a zero count
        ("range", coded[: 2 + 2 * (coded[1] + 1)], 3000),  # no stream
        ("range", coded[:-1], 3000),  # not whole words
        ("range", coded, 10**9),  # more rows than the stream can hold
        ("huffman", coded, 3000),
        (["packed"], packed, 5),
    ]
    for coding, data, rows in bad:
        with pytest.raises(BitstreamError):
            decode_indices(coding, data, rows, 4)
