import zlib

import numpy as np
import pytest

from nerfcompress.bitstream.occupancy import decode_occupancy, encode_occupancy
from nerfcompress.errors import BitstreamError


def _ball(levels: int = 2, resolution: int = 32) -> np.ndarray:
    axis = np.arange(resolution) - resolution / 2
    inside = (axis[:, None, None] ** 2 + axis[None, :, None] ** 2 + axis[None, None, :] ** 2) < (resolution / 4) ** 2
    return np.stack([inside, np.zeros_like(inside)][:levels])


def test_round_trip_is_exact_and_coherent_space_is_small():
    cells = _ball()
    data = encode_occupancy(cells)
    decoded = decode_occupancy(data, cells.shape)
    assert decoded.dtype == np.bool_ and np.array_equal(decoded, cells)
    assert len(data) < cells.size / 8 / 10  # far below one bit per cell
    odd = np.random.default_rng(0).random((1, 3, 5, 7)) < 0.5  # 105 cells: not a multiple of 8
    assert np.array_equal(decode_occupancy(encode_occupancy(odd), odd.shape), odd)


def test_corrupt_truncated_or_oversized_payloads_raise_without_inflating_them():
    cells = _ball()
    data = encode_occupancy(cells)
    for payload in (b"not zlib", data[:-5], data[: len(data) // 2]):
        with pytest.raises(BitstreamError, match="occupancy section"):
            decode_occupancy(payload, cells.shape)
    bomb = zlib.compress(bytes(1 << 26))  # 64 MiB of zeros in ~65 KB
    with pytest.raises(BitstreamError, match=r"does not inflate to exactly 8192 bytes"):
        decode_occupancy(bomb, cells.shape)
    with pytest.raises(BitstreamError, match="does not inflate to exactly"):
        decode_occupancy(zlib.compress(bytes(100)), cells.shape)
    with pytest.raises(ValueError, match="boolean"):
        encode_occupancy(cells.astype(np.uint8))
