"""Uniform scalar quantization of float rows: the post-hoc baseline for an uncompressed grid.

One level's rows ``x [rows, F]`` are quantized to ``K = 2**b`` values evenly spaced between
the level's minimum and maximum (one range for all ``F`` channels):

.. math::

    m = \\min x, \\quad s = \\frac{\\max x - m}{K - 1}, \\quad
    q_{rc} = \\operatorname{clip}(\\operatorname{round}((x_{rc} - m) / s), 0, K - 1), \\quad
    \\hat x_{rc} = m + q_{rc} s

so :math:`|x_{rc} - \\hat x_{rc}| \\le s / 2` (up to float32 rounding of :math:`\\hat x`). A
level whose rows are all equal gets ``s = 0`` and ``q = 0``.

Per level rather than per level and channel: on the 800-step demo plain-nerfacto run the two
channels of a level span ranges within 1.45x of each other (most levels within 1.1x), and a
step per channel lowered the mean squared error by a quarter to a third (main grid, 8 and 6
bits) but made the coded rows 5 to 7 % larger, about the trade that more bits per value give
anyway; the single range is simpler and gives the smaller file. The symbols of a level are coded
with one frequency table either way.

Dequantization is float32 arithmetic on the stored float32 ``m`` and ``s``: one multiply and
one add per value, each correctly rounded by numpy, so every machine rebuilds the same bits (no
fused multiply-add, no reduction order).

Example:
    >>> symbols, minimum, step = quantize_uniform(rows, bits=8)   # rows: float32 [rows, F]
    >>> rows_hat = dequantize_uniform(symbols, minimum, step)      # float32 [rows, F]
"""

from __future__ import annotations

from typing import Sequence, Tuple, Union

import numpy as np
import torch

MIN_BITS = 2
MAX_BITS = 8


def check_bits(bits: int) -> int:
    """``bits`` if it is an int in ``MIN_BITS .. MAX_BITS``.

    Raises:
        ValueError: otherwise.
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits must be an int in {MIN_BITS}..{MAX_BITS}, found {bits!r}")
    return bits


def dequantize_uniform(symbols: np.ndarray, minimum: np.float32, step: np.float32) -> np.ndarray:
    """Rows from their symbols: ``minimum + symbols * step`` in float32.

    Args:
        symbols: uint8 ``[rows, F]``.
        minimum: float32 scalar, the level's smallest value.
        step: float32 scalar, the quantization step (``>= 0``).

    Returns:
        float32 ``[rows, F]``; bit-identical on every machine for the same inputs.

    Raises:
        ValueError: on a wrong dtype.
    """
    if not (isinstance(symbols, np.ndarray) and symbols.dtype == np.uint8):
        raise ValueError(f"symbols must be a uint8 array, found {getattr(symbols, 'dtype', type(symbols))}")
    for name, value in (("minimum", minimum), ("step", step)):
        if not isinstance(value, np.float32):
            raise ValueError(f"{name} must be a numpy float32 scalar, found {type(value).__name__}")
    return minimum + symbols.astype(np.float32) * step


def quantize_uniform(rows: Union[np.ndarray, torch.Tensor], bits: int) -> Tuple[np.ndarray, np.float32, np.float32]:
    """Uniform ``bits``-bit quantization of a level's rows between their minimum and maximum.

    Args:
        rows: float ``[rows, F]`` (numpy or torch; taken as float32), at least one value.
        bits: ``b`` in ``MIN_BITS .. MAX_BITS``; ``K = 2**b`` values.

    Returns:
        ``(symbols, minimum, step)``: uint8 ``[rows, F]`` in ``[0, K)`` and two float32
        scalars. ``dequantize_uniform(symbols, minimum, step)`` is within ``step / 2`` of
        ``rows`` (up to float32 rounding).

    Raises:
        ValueError: if ``bits`` is out of range, ``rows`` is empty or not 2-D, holds NaN or
            infinity, or spans a range whose dequantized values overflow float32.
    """
    check_bits(bits)
    if isinstance(rows, torch.Tensor):
        rows = rows.detach().cpu().numpy()
    rows = np.asarray(rows, dtype=np.float32)
    if rows.ndim != 2 or rows.size == 0:
        raise ValueError(f"rows must be a non-empty [rows, F] array, found shape {rows.shape}")
    if not np.isfinite(rows).all():
        raise ValueError("rows hold NaN or infinity")
    top = (1 << bits) - 1
    minimum = rows.min()
    span = float(rows.max()) - float(minimum)  # exact in float64
    with np.errstate(over="ignore"):
        step = np.float32(span / top)
        highest = minimum + np.float32(top) * step
    if not (np.isfinite(step) and np.isfinite(highest)):
        raise ValueError(f"rows span {span:.3g}, too wide for a float32 step")
    if step == 0:  # every value equal
        return np.zeros(rows.shape, np.uint8), minimum, step
    scaled = (rows.astype(np.float64) - float(minimum)) / float(step)  # [rows, F]
    symbols = np.clip(np.rint(scaled), 0, top).astype(np.uint8)
    return symbols, minimum, step


def round_trip_uniform(rows: Union[np.ndarray, torch.Tensor], level_rows: Sequence[int], bits: int) -> np.ndarray:
    """What a grid's rows become when every level is quantized on its own and dequantized: the
    rows a ``plain-uniform`` file decodes to.

    Args:
        rows: float ``[rows, F]``, level 0's rows first.
        level_rows: rows of each level, summing to ``rows``.
        bits: ``b`` in ``MIN_BITS .. MAX_BITS``.

    Returns:
        float32 ``[rows, F]``.

    Raises:
        ValueError: as :func:`quantize_uniform`, or if ``level_rows`` does not sum to ``rows``.
    """
    if isinstance(rows, torch.Tensor):
        rows = rows.detach().cpu().numpy()
    if sum(level_rows) != len(rows) or any(count < 1 for count in level_rows):
        raise ValueError(f"level_rows {list(level_rows)} must be counts >= 1 summing to {len(rows)} rows")
    levels = np.split(np.asarray(rows, dtype=np.float32), np.cumsum(level_rows)[:-1])
    return np.concatenate([dequantize_uniform(*quantize_uniform(level, bits)) for level in levels])


__all__ = ["MAX_BITS", "MIN_BITS", "check_bits", "dequantize_uniform", "quantize_uniform", "round_trip_uniform"]
