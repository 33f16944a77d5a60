"""Unsigned LEB128 integers: the variable-length integers of the file format.

A value is written 7 bits at a time, least significant group first; every byte but the last
has its high bit set. Only the shortest form is accepted (no trailing ``0x80 0x00`` groups),
so one value has one encoding and a file decodes to one set of values. Signed values are
zigzag-mapped first (``0, -1, 1, -2, ...`` -> ``0, 1, 2, 3, ...``).

Example:
    >>> data = encode_uvarints([1, 300, 65536])
    >>> values, end = read_uvarints(memoryview(data), 0, 3, max_bytes=3, what="counts")
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

from nerfcompress.errors import BitstreamError


def zigzag(value: int) -> int:
    """``0, -1, 1, -2, ...`` -> ``0, 1, 2, 3, ...``."""
    return 2 * value if value >= 0 else -2 * value - 1


def unzigzag(value: int) -> int:
    """Inverse of :func:`zigzag`."""
    return value // 2 if value % 2 == 0 else -(value + 1) // 2


def encode_uvarints(values: Sequence[int]) -> bytes:
    """The LEB128 bytes of non-negative integers, back to back.

    Raises:
        ValueError: on a negative value.
    """
    out = bytearray()
    for value in values:
        value = int(value)
        if value < 0:
            raise ValueError(f"LEB128 holds non-negative integers, got {value}")
        while value >= 0x80:
            out.append(value & 0x7F | 0x80)
            value >>= 7
        out.append(value)
    return bytes(out)


def read_uvarints(data: memoryview, offset: int, count: int, max_bytes: int, what: str) -> Tuple[np.ndarray, int]:
    """``count`` LEB128 integers from ``data[offset:]`` (untrusted), each at most ``max_bytes`` long.

    Nothing is allocated beyond the bytes that hold the values: the ends are found among the
    bytes that remain, so a count the data cannot hold is refused first.

    Args:
        data: the bytes.
        offset: where the first value starts.
        count: how many values to read (``>= 0``).
        max_bytes: longest accepted encoding (``1 .. 9``: the values fit int64).
        what: what the values are, for messages.

    Returns:
        ``(values int64 [count], offset after the last value)``.

    Raises:
        BitstreamError: if the data ends first, a value is longer than ``max_bytes``, or is
            not in its shortest form.
    """
    if not 1 <= max_bytes <= 9 or count < 0:
        raise ValueError(f"read_uvarints needs 1 <= max_bytes <= 9 and count >= 0, got {max_bytes}, {count}")
    if count == 0:
        return np.zeros(0, np.int64), offset
    window = np.frombuffer(data, dtype=np.uint8, count=min(len(data) - offset, count * max_bytes), offset=offset)
    ends = np.flatnonzero(window < 0x80)[:count]
    if len(ends) < count:
        raise BitstreamError(
            f"{what}: {count} variable-length integers of at most {max_bytes} bytes declared, {len(ends)} found in the "
            "data; the file is truncated or corrupt"
        )
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > max_bytes:
        raise BitstreamError(f"{what}: an integer {int(lengths.max())} bytes long, at most {max_bytes}; corrupt file")
    if ((window[ends] == 0) & (lengths > 1)).any():
        raise BitstreamError(f"{what}: an integer is not in its shortest form; the file is corrupt")
    values = np.zeros(count, np.int64)
    for group in range(int(lengths.max())):
        has = lengths > group
        values[has] |= (window[starts[has] + group].astype(np.int64) & 0x7F) << (7 * group)
    return values, offset + int(ends[-1]) + 1
