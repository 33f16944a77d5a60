"""Storage of one level's b-bit codebook indices: fixed-width bit packing or range coding.

A VQAD level holds ``rows`` indices in ``[0, K = 2**b)``. :func:`encode_indices` writes them in
whichever of two codings is smaller (ties go to ``"packed"``), and the caller records the name
of the coding next to the bytes:

* ``"packed"``: ``ceil(rows * b / 8)`` bytes. Index ``r`` occupies stream bits
  ``r*b .. r*b + b - 1``, least significant bit first; stream bit ``j`` is bit ``j % 8``
  (value ``1 << (j % 8)``) of byte ``j // 8`` (little-endian bit order, numpy's
  ``packbits(..., bitorder="little")``). Unused high bits of the last byte are zero.
* ``"range"``: the integer coding table of the level's own index histogram
  (:func:`~nerfcompress.entropy.coder.pack_tables`, one channel covering ``lo .. lo + S - 1 < K``,
  ``S >= 2``, its count total chosen by :func:`~nerfcompress.entropy.coder.cheapest_counts`),
  then the range-coded indices (the constriction recipe of STYLE.md, via
  :mod:`nerfcompress.entropy.coder`), uint32 little-endian words.

Example:
    >>> coding, data = encode_indices(indices, bits=4)       # indices: uint8 [rows]
    >>> assert (decode_indices(coding, data, len(indices), 4) == indices).all()
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from nerfcompress.entropy.coder import (
    ChannelTables,
    cheapest_counts,
    check_stream,
    decode_latents,
    encode_latents,
    pack_tables,
    unpack_tables,
)
from nerfcompress.errors import BitstreamError

CODINGS = ("packed", "range")
"""Names of the two index codings, as recorded in the file header."""

MAX_BITS = 8


def _check(indices: np.ndarray, bits: int) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= MAX_BITS:
        raise ValueError(f"bits must be an int in 1..{MAX_BITS}, found {bits!r}")
    if not (isinstance(indices, np.ndarray) and indices.dtype == np.uint8 and indices.ndim == 1):
        raise ValueError(f"indices must be a uint8 [rows] array, found {getattr(indices, 'dtype', type(indices))}")
    if indices.size and int(indices.max()) >= 1 << bits:
        raise ValueError(f"indices must lie in [0, {1 << bits}), found max {int(indices.max())}")


def packed_bytes(num_rows: int, bits: int) -> int:
    """Bytes of a ``"packed"`` level: ``ceil(rows * b / 8)``."""
    return (num_rows * bits + 7) // 8


def pack_indices(indices: np.ndarray, bits: int) -> bytes:
    """Fixed-width little-endian bit packing (see the module docstring).

    Args:
        indices: uint8 ``[rows]`` in ``[0, 2**bits)``.
        bits: index width ``b`` in 1..8.

    Returns:
        ``ceil(rows * b / 8)`` bytes.

    Raises:
        ValueError: on a wrong dtype or shape, or an index that needs more than ``b`` bits.
    """
    _check(indices, bits)
    planes = np.unpackbits(indices[:, None], axis=1, bitorder="little")[:, :bits]  # uint8 [rows, b]
    return np.packbits(planes.reshape(-1), bitorder="little").tobytes()


def unpack_indices(data: bytes, num_rows: int, bits: int) -> np.ndarray:
    """Inverse of :func:`pack_indices`.

    Returns:
        uint8 ``[rows]``.

    Raises:
        BitstreamError: if ``data`` is not exactly ``ceil(rows * b / 8)`` bytes or its padding
            bits are not zero.
    """
    expected = packed_bytes(num_rows, bits)
    if len(data) != expected:
        raise BitstreamError(
            f"packed indices hold {len(data)} bytes, expected {expected} for {num_rows} rows of {bits} bits; "
            "the file is truncated or corrupt"
        )
    stream = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")  # uint8 [8 * bytes]
    if stream[num_rows * bits :].any():
        raise BitstreamError("packed indices have non-zero padding bits; the file is corrupt")
    planes = stream[: num_rows * bits].reshape(num_rows, bits)
    return (planes.astype(np.uint8) << np.arange(bits, dtype=np.uint8)).sum(axis=1, dtype=np.uint8)


def _histogram_tables(indices: np.ndarray, bits: int) -> ChannelTables:
    """The cheapest table of the level's histogram, covering at least two of its ``2**bits`` indices."""
    codebook_size = 1 << bits
    histogram = np.bincount(indices, minlength=codebook_size).astype(np.float64)  # [K]
    lo = min(int(indices.min()), codebook_size - 2)
    hi = max(int(indices.max()), lo + 1)
    counts = cheapest_counts(histogram[lo : hi + 1], histogram[lo : hi + 1])
    return ChannelTables(lo=np.array([lo], np.int32), freq=(counts,))


def range_code_indices(indices: np.ndarray, bits: int) -> bytes:
    """The ``"range"`` coding of a level (table then stream; see the module docstring).

    Raises:
        ValueError: as :func:`pack_indices`, or if ``indices`` is empty.
    """
    _check(indices, bits)
    if indices.size == 0:
        raise ValueError("cannot range-code an empty level")
    tables = _histogram_tables(indices, bits)
    return pack_tables(tables) + encode_latents(indices.astype(np.int32)[:, None], tables)


def _range_tables(data: bytes, bits: int) -> Tuple[ChannelTables, int]:
    """The stored table at the start of a ``"range"`` level, checked, and the bytes it takes."""
    tables, used = unpack_tables(memoryview(data), 0, 1, "index table")
    lo, support = int(tables.lo[0]), tables.support[0]
    if lo < 0 or lo + support > 1 << bits:
        raise BitstreamError(
            f"index table covers {lo} .. {lo + support - 1}, outside [0, {1 << bits}); the file is corrupt"
        )
    return tables, used


def range_decode_indices(data: bytes, num_rows: int, bits: int) -> np.ndarray:
    """Inverse of :func:`range_code_indices`; every length is checked before it is used.

    Returns:
        uint8 ``[rows]``.

    Raises:
        BitstreamError: on a table that leaves ``[0, 2**b)``, bad counts, or a damaged stream.
    """
    tables, used = _range_tables(data, bits)
    symbols = decode_latents(data[used:], num_rows, tables, max_rows=num_rows)
    return symbols[:, 0].astype(np.uint8)


def encode_indices(indices: np.ndarray, bits: int) -> Tuple[str, bytes]:
    """The smaller of the two codings of one level (``"packed"`` on a tie or an empty level).

    Args:
        indices: uint8 ``[rows]`` in ``[0, 2**bits)``.
        bits: index width ``b`` in 1..8.

    Returns:
        ``(coding, data)`` with ``coding`` one of :data:`CODINGS`.

    Raises:
        ValueError: as :func:`pack_indices`.
    """
    packed = pack_indices(indices, bits)
    if indices.size == 0:
        return "packed", packed
    coded = range_code_indices(indices, bits)
    return ("range", coded) if len(coded) < len(packed) else ("packed", packed)


def decode_indices(coding: str, data: bytes, num_rows: int, bits: int) -> np.ndarray:
    """Inverse of :func:`encode_indices`.

    Args:
        coding: the recorded coding (untrusted).
        data: the level's index bytes.
        num_rows: rows of the level (from the rebuilt model's layout).
        bits: index width ``b``.

    Returns:
        uint8 ``[rows]`` in ``[0, 2**bits)``.

    Raises:
        BitstreamError: on an unknown coding or damaged data.
        ValueError: if ``bits`` or ``num_rows`` is invalid.
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= MAX_BITS:
        raise ValueError(f"bits must be an int in 1..{MAX_BITS}, found {bits!r}")
    if num_rows < 0:
        raise ValueError(f"num_rows must be >= 0, found {num_rows}")
    if coding == "packed":
        return unpack_indices(data, num_rows, bits)
    if coding == "range":
        return range_decode_indices(data, num_rows, bits)
    raise BitstreamError(f"index coding {coding!r:.40} is unknown (expected one of {CODINGS}); the file is corrupt")


def check_indices(coding: str, data: bytes, num_rows: int, bits: int) -> None:
    """The checks :func:`decode_indices` makes before it allocates anything.

    Raises:
        BitstreamError: on an unknown coding, a packed level of the wrong length, a bad range
            table, or more rows than the range-coded stream can hold.
    """
    if coding == "packed":
        expected = packed_bytes(num_rows, bits)
        if len(data) != expected:
            raise BitstreamError(
                f"packed indices hold {len(data)} bytes, expected {expected} for {num_rows} rows of {bits} bits; "
                "the file is truncated or corrupt"
            )
    elif coding == "range":
        tables, used = _range_tables(data, bits)
        check_stream(data[used:], num_rows, tables, max_rows=num_rows)
    else:
        raise BitstreamError(f"index coding {coding!r:.40} is unknown (expected one of {CODINGS}); the file is corrupt")


__all__ = [
    "CODINGS",
    "check_indices",
    "decode_indices",
    "encode_indices",
    "pack_indices",
    "packed_bytes",
    "range_code_indices",
    "range_decode_indices",
    "unpack_indices",
]
