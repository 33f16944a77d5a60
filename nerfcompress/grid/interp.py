"""Multi-level n-linear interpolation from a decoded table, in pure torch (tcnn-compatible).

For each level ``l`` and point ``x`` in [0, 1]^num_dims, exactly as tcnn's ``kernel_grid``::

    pos      = x * scale_l + 0.5          (float32 fma, emulated in float64 and rounded once)
    pos_grid = floor(pos);  frac = pos - pos_grid
    corner c = pos_grid + bits(c),        weight_c = prod_d (frac_d if bit_d(c) else 1 - frac_d)
    dense  index = sum_d corner_d * resolution_l ** d
    hashed index = XOR_d (corner_d * prime_d mod 2**32),  primes (1, 2654435761, 805459861)
    row = index % rows_l + offset_l

Like tcnn, the upper corner of a cell at the far border can be ``resolution_l`` (one past the
last vertex); dense levels then alias into the next row, and the modulo keeps rows in range.

Levels are processed one at a time on slices of the table (``table.split(level_rows)``): on CPU
this measured ~2.5x faster than one vectorised pass over ``[N, L, C]`` for nerfacto's grid
(smaller working sets, and the backward accumulates into per-level slices).

Mixed precision: the interpolation runs with autocast off and accumulates in float32 (float64
for a float64 table) whatever the table's dtype; the output has the table's dtype.

:func:`interp_torch` is the reference twin of the native backends (``interp_triton``,
``interp_tcnn``): same signature, same result, compared by one test suite.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import torch
from torch import Tensor

from nerfcompress.grid.layout import GridLayout

_PRIMES = (1, 2654435761, 805459861)


class _LevelTensors(NamedTuple):
    strides: Tensor  # int64 [L, D], dense strides resolution_l ** d
    corner_strides: Tensor  # int64 [L, C], dense index of each corner relative to corner 0
    primes: Tensor  # int64 [D, 1]
    bits: Tensor  # int64 [2], lower and upper corner along one dimension


@lru_cache(maxsize=64)
def _level_tensors(layout: GridLayout, device: torch.device) -> _LevelTensors:
    """Per-level constants on ``device``, built once per (layout, device) so calls never copy."""
    num_dims = layout.num_dims
    strides = [[res**d for d in range(num_dims)] for res in layout.level_resolutions]
    corner_strides = [
        [sum(stride[d] for d in range(num_dims) if corner >> d & 1) for corner in range(2**num_dims)]
        for stride in strides
    ]
    return _LevelTensors(
        strides=torch.tensor(strides, dtype=torch.int64, device=device),
        corner_strides=torch.tensor(corner_strides, dtype=torch.int64, device=device),
        primes=torch.tensor(_PRIMES[:num_dims], dtype=torch.int64, device=device).view(-1, 1),
        bits=torch.arange(2, dtype=torch.int64, device=device),
    )


def _check_points(layout: GridLayout, x: Tensor) -> None:
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating point tensor, found dtype {x.dtype}")
    if x.dim() < 1 or x.shape[-1] != layout.num_dims:
        raise ValueError(f"x must have shape [*bs, {layout.num_dims}] (num_dims), found {list(x.shape)}")


def clamp_unit(x: Tensor) -> Tensor:
    """``x`` clamped to [0, 1], with a gradient only where ``0 < x < 1`` strictly.

    Spelled out rather than ``x.clamp(0, 1)`` so that the gradient at exactly 0 and 1 does not
    depend on the torch version; every backend follows this rule.
    """
    return torch.where((x > 0.0) & (x < 1.0), x, x.detach().clamp(0.0, 1.0))


def _flat_points(layout: GridLayout, x: Tensor) -> Tensor:
    """Checks ``x [*bs, D]`` and returns it as ``[N, D]`` clamped to [0, 1] (:func:`clamp_unit`)."""
    _check_points(layout, x)
    return clamp_unit(x.reshape(-1, layout.num_dims))


def _outer(per_dim: Tensor, op) -> Tensor:
    """Combines per-dimension corner values ``[N, D, 2]`` into ``[N, C]`` with ``op``.

    Corner ``c`` takes entry ``bit_d(c)`` of dimension ``d`` (tcnn's corner order).
    """
    out = per_dim[:, 0]
    for d in range(1, per_dim.shape[1]):
        out = op(per_dim[:, d].unsqueeze(-1), out.unsqueeze(-2)).flatten(-2)
    return out


def _level_corners(layout: GridLayout, points: Tensor, level: int) -> tuple[Tensor, Tensor]:
    """Rows within the level, int64 ``[N, C]``, and weights ``[N, C]`` of one level's corners.

    ``points [N, D]`` lie in [0, 1]. Weights are float64 for float64 points, float32 otherwise,
    and differentiable w.r.t. the points.
    """
    consts = _level_tensors(layout, points.device)
    scale = layout.level_scales[level]
    if points.dtype == torch.float64:
        pos = points * scale + 0.5  # [N, D]
    else:
        # float32 positions exactly as tcnn's fmaf(scale, x, 0.5f): the float64 product is exact.
        pos = (points.to(torch.float64) * scale + 0.5).to(torch.float32)
    pos_floor = torch.floor(pos).detach()
    frac = pos - pos_floor  # [N, D]
    weights = _outer(torch.stack((1.0 - frac, frac), dim=-1), torch.mul)  # [N, C]
    pos_grid = pos_floor.to(torch.int64)  # int64 [N, D]
    if layout.level_is_hashed[level]:
        corner_grid = pos_grid.unsqueeze(-1) + consts.bits  # int64 [N, D, 2]
        # rows_l = T divides 2**32, so "mod 2**32 % T" is "& (T - 1)", applied to each term before the XOR.
        terms = (corner_grid * consts.primes) & (layout.hashmap_size - 1)
        rows = _outer(terms, torch.bitwise_xor)
    else:
        first_corner = (pos_grid * consts.strides[level]).sum(-1, keepdim=True)  # int64 [N, 1]
        rows = (first_corner + consts.corner_strides[level]) % layout.level_rows[level]
    return rows, weights


def grid_corner_indices(layout: GridLayout, x: Tensor) -> tuple[Tensor, Tensor]:
    """Table rows and n-linear weights of the ``C = 2**num_dims`` corners of every level.

    Points are clamped to [0, 1] first (nerfstudio's contracted positions already are; the clamp
    only keeps stray points inside the grid). Corner ``c`` has bit ``d`` of ``c`` set when it is
    the upper vertex along dimension ``d``, as in tcnn.

    Args:
        layout: the grid layout.
        x: points ``[*bs, num_dims]`` in [0, 1].

    Returns:
        rows: int64 ``[*bs, L, C]``, already offset into the concatenated table; level ``l``'s
            rows lie in ``[level_offsets[l], level_offsets[l] + level_rows[l])``.
        weights: ``[*bs, L, C]``, summing to 1 over ``C``; float64 for float64 ``x``, else
            float32; differentiable w.r.t. ``x``.

    Raises:
        ValueError: ``x`` is not floating point or its last dim is not ``num_dims``.
    """
    points = _flat_points(layout, x)
    corners = [_level_corners(layout, points, level) for level in range(layout.num_levels)]
    rows = torch.stack([r + offset for (r, _), offset in zip(corners, layout.level_offsets)], dim=1)
    weights = torch.stack([w for _, w in corners], dim=1)
    return rows.view(*x.shape[:-1], *rows.shape[1:]), weights.view(*x.shape[:-1], *weights.shape[1:])


def check_interp_arguments(layout: GridLayout, table: Tensor, x: Tensor, num_active_levels: int | None) -> int:
    """Checks the arguments every interpolation backend takes and returns the active level count.

    Raises:
        ValueError: ``x`` is not floating point or not ``[*bs, num_dims]``, ``table`` is not
            ``[num_rows, F]``, or ``num_active_levels`` is not None or an int in ``0..L``.
    """
    _check_points(layout, x)
    num_features = layout.features_per_level
    if tuple(table.shape) != (layout.num_rows, num_features):
        raise ValueError(
            f"table must have shape [num_rows, F] = [{layout.num_rows}, {num_features}], found {list(table.shape)}"
        )
    num_levels = layout.num_levels if num_active_levels is None else num_active_levels
    valid = isinstance(num_levels, int) and not isinstance(num_levels, bool)
    if not valid or not 0 <= num_levels <= layout.num_levels:
        raise ValueError(
            f"num_active_levels must be None or an int in 0..{layout.num_levels}, found {num_active_levels!r}"
        )
    return num_levels


def accumulation_dtype(table: Tensor) -> torch.dtype:
    """float64 for a float64 table, else float32: what every backend accumulates in."""
    return torch.float64 if table.dtype == torch.float64 else torch.float32


def interp_torch(layout: GridLayout, table: Tensor, x: Tensor, num_active_levels: int | None = None) -> Tensor:
    """Interpolates multi-level features from the decoded table, like tcnn's HashGrid.

    .. math:: y_{l} = \\sum_{c} w_{l,c}(x)\\, Z[\\mathrm{row}_{l,c}(x)]

    Points are clamped to [0, 1] (see :func:`grid_corner_indices`). Gradients flow to ``table``
    and to ``x`` (zero outside the open interval (0, 1), :func:`clamp_unit`).

    Args:
        layout: the grid layout.
        table: decoded table ``[num_rows, F]``; sets the output dtype.
        x: points ``[*bs, num_dims]`` in [0, 1].
        num_active_levels: levels ``>= num_active_levels`` output zeros and receive no
            gradient (coarse-to-fine training, level-of-detail prefixes); None means all.

    Returns:
        Features ``[*bs, L * F]``, level-major (level 0's ``F`` features first).

    Raises:
        ValueError: bad ``x`` or ``table`` shape, or ``num_active_levels`` outside ``0..L``.
    """
    num_levels = check_interp_arguments(layout, table, x, num_active_levels)
    points = _flat_points(layout, x)
    num_features = layout.features_per_level
    accumulate = accumulation_dtype(table)
    with torch.autocast(points.device.type, enabled=False):
        level_tables = table.split(layout.level_rows)  # [rows_l, F] views; backward fills one gradient
        features = []
        for level in range(num_levels):
            rows, weights = _level_corners(layout, points, level)  # [N, C]
            corners = level_tables[level].index_select(0, rows.view(-1)).view(*rows.shape, num_features)
            level_features = weights.to(accumulate).unsqueeze(-2) @ corners.to(accumulate)  # [N, 1, F]
            features.append(level_features.squeeze(-2).to(table.dtype))  # [N, F]
        features += [table.new_zeros(points.shape[0], num_features)] * (layout.num_levels - num_levels)
    return torch.stack(features, dim=1).view(*x.shape[:-1], layout.output_dim)
