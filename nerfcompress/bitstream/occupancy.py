"""Occupancy grids (nerfacc's ``OccGridEstimator.binaries``) <-> bytes: bit-packed, then zlib.

An Instant-NGP model skips empty space with a boolean grid ``[levels, X, Y, Z]``; the file
stores it so that a decoded model samples exactly where the trained one did. Empty space is
large and coherent, so zlib (deflate, level 9) of the bit-packed cells is small.
"""

from __future__ import annotations

import math
import zlib
from typing import Sequence

import numpy as np

from nerfcompress.errors import BitstreamError

OCCUPANCY_CODING = "packbits-little+zlib"
"""The ``coding`` value of an occupancy entry: ``np.packbits(bitorder="little")`` of the cells in
C order, then ``zlib.compress(level=9)``."""


def encode_occupancy(cells: np.ndarray) -> bytes:
    """Bytes of a boolean occupancy grid.

    Args:
        cells: bool ``[levels, X, Y, Z]``.

    Raises:
        ValueError: ``cells`` is not a boolean array.
    """
    if not (isinstance(cells, np.ndarray) and cells.dtype == np.bool_):
        raise ValueError(f"cells must be a boolean array, found {getattr(cells, 'dtype', type(cells))}")
    return zlib.compress(np.packbits(cells.reshape(-1), bitorder="little").tobytes(), 9)


def decode_occupancy(payload: bytes, shape: Sequence[int]) -> np.ndarray:
    """The boolean grid of ``shape`` from its bytes; never inflates more than the grid needs.

    Args:
        payload: the section's bytes (untrusted).
        shape: the grid's shape, already checked against the model it is loaded into.

    Returns:
        bool ``shape``.

    Raises:
        BitstreamError: the payload is not a zlib stream of exactly ``ceil(prod(shape) / 8)``
            bytes.
    """
    num_cells = math.prod(int(size) for size in shape)
    expected = -(-num_cells // 8)
    inflater = zlib.decompressobj()
    try:
        packed = inflater.decompress(payload, expected)
        complete = inflater.eof and not inflater.unconsumed_tail and not inflater.unused_data
    except zlib.error as exc:
        raise BitstreamError(f"occupancy section is not a valid zlib stream ({exc}); the file is corrupt") from exc
    if len(packed) != expected or not complete:
        raise BitstreamError(
            f"occupancy section does not inflate to exactly {expected} bytes (a grid of {list(shape)}); "
            "the file is corrupt"
        )
    bits = np.unpackbits(np.frombuffer(packed, dtype=np.uint8), count=num_cells, bitorder="little")
    return bits.astype(np.bool_).reshape(tuple(int(size) for size in shape))
