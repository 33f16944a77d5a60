"""Multi-level n-linear interpolation from a decoded table as fused Triton kernels (tcnn layout).

The twin of :func:`nerfcompress.grid.interp.interp_torch`: same signature, same result (tested
against it in Triton's CPU interpreter, ``TRITON_INTERPRET=1``). Each program handles ``BLOCK``
points of one level (grid ``[cdiv(N, BLOCK), L]``) and does, in registers, what the torch twin does
in about a dozen kernels per level::

    pos      = float32(float64(clamp(x, 0, 1)) * scale_l + 0.5)      (the twin's rounding)
    corner c = floor(pos) + bits(c),  w_c = prod_d (frac_d if bit_d(c) else 1 - frac_d)
    row      = dense index % rows_l   or   XOR_d (corner_d * prime_d) & (T - 1),   + offset_l
    out[n, l * F : (l + 1) * F] = sum_c w_c * Z[row_c]                (float32 accumulation)

The backward adds ``w_c * dL/dout`` into the table's gradient with ``tl.atomic_add`` (float32)
and, when the positions need a gradient (a compile-time flag, set when ``x.requires_grad``),
adds ``scale_l * sum_c dw_c/dfrac * <dL/dout, Z[row_c]>`` into ``dL/dx`` (zero outside (0, 1),
the twin's ``clamp_unit`` rule). Levels ``>= num_active_levels`` write zeros and get no gradient.

Set ``TRITON_INTERPRET=1`` before this module is imported to run the kernels on CPU tensors.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple, Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from nerfcompress.grid.interp import accumulation_dtype, check_interp_arguments
from nerfcompress.grid.layout import GridLayout

DEFAULT_BLOCK = 128
"""Points per program; a power of two."""

_TABLE_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_TRITON_DTYPES = {torch.float32: tl.float32, torch.float64: tl.float64}


class _LevelParams(NamedTuple):
    scales: Tensor  # float64 [L], scale_l
    resolutions: Tensor  # int64 [L]
    rows: Tensor  # int64 [L], rows_l (T for hashed levels)
    offsets: Tensor  # int64 [L]
    hashed: Tensor  # int32 [L], 1 for hashed levels


@lru_cache(maxsize=64)
def _level_params(layout: GridLayout, device: torch.device) -> _LevelParams:
    """Per-level constants on ``device``, built once per (layout, device)."""
    return _LevelParams(
        scales=torch.tensor(layout.level_scales, dtype=torch.float64, device=device),
        resolutions=torch.tensor(layout.level_resolutions, dtype=torch.int64, device=device),
        rows=torch.tensor(layout.level_rows, dtype=torch.int64, device=device),
        offsets=torch.tensor(layout.level_offsets, dtype=torch.int64, device=device),
        hashed=torch.tensor(layout.level_is_hashed, dtype=torch.int32, device=device),
    )


@triton.jit
def _axis(x_ptr, points, in_range, dim: tl.constexpr, scale, NUM_DIMS: tl.constexpr, POS_DTYPE: tl.constexpr):
    """Cell coordinate (int64), fraction (POS_DTYPE) and clamp mask of one axis, each ``[BLOCK]``."""
    x = tl.load(x_ptr + points * NUM_DIMS + dim, mask=in_range, other=0.0)
    inside = (x > 0.0) & (x < 1.0)  # clamp_unit's gradient rule
    x = tl.minimum(tl.maximum(x, 0.0), 1.0)
    pos = (x.to(tl.float64) * scale + 0.5).to(POS_DTYPE)
    cell = tl.floor(pos)
    return cell.to(tl.int64), pos - cell, inside


@triton.jit
def _corner(
    cell0,
    cell1,
    cell2,
    frac0,
    frac1,
    frac2,
    corner: tl.constexpr,
    NUM_DIMS: tl.constexpr,
    resolution,
    level_rows,
    hashed,
):
    """Row within the level (int64) and weight of one corner, each ``[BLOCK]``, plus the weight's
    factors along each axis (``w0 * w1 * w2 = weight``; ``w2 = 1`` in 2D)."""
    if corner & 1:
        c0 = cell0 + 1
        w0 = frac0
    else:
        c0 = cell0
        w0 = 1.0 - frac0
    if (corner >> 1) & 1:
        c1 = cell1 + 1
        w1 = frac1
    else:
        c1 = cell1
        w1 = 1.0 - frac1
    dense = c0 + c1 * resolution
    # uint32 products wrap modulo 2**32 as tcnn's; the mask is the modulo by T = 2**k.
    hash_index = c0.to(tl.uint32) ^ (c1.to(tl.uint32) * 2654435761)
    weight = w0 * w1
    w2 = tl.full(w0.shape, 1.0, w0.dtype)
    if NUM_DIMS == 3:
        if (corner >> 2) & 1:
            c2 = cell2 + 1
            w2 = frac2
        else:
            c2 = cell2
            w2 = 1.0 - frac2
        dense += c2 * resolution * resolution
        hash_index = hash_index ^ (c2.to(tl.uint32) * 805459861)
        weight = weight * w2
    hashed_row = (hash_index & (level_rows - 1).to(tl.uint32)).to(tl.int64)
    row = tl.where(hashed != 0, hashed_row, dense % level_rows)
    return row, weight, w0, w1, w2


@triton.jit
def _interp_forward_kernel(
    x_ptr,  # [N, D]
    table_ptr,  # [rows, F]
    out_ptr,  # [N, L * F]
    scales_ptr,
    resolutions_ptr,
    rows_ptr,
    offsets_ptr,
    hashed_ptr,  # [L] each
    num_points,
    num_active_levels,
    NUM_DIMS: tl.constexpr,
    NUM_FEATURES: tl.constexpr,
    NUM_LEVELS: tl.constexpr,
    BLOCK: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
    POS_DTYPE: tl.constexpr,
):
    level = tl.program_id(1)
    points = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    in_range = points < num_points
    features = tl.arange(0, NUM_FEATURES)
    acc = tl.zeros((BLOCK, NUM_FEATURES), dtype=ACC_DTYPE)
    if level < num_active_levels:
        scale = tl.load(scales_ptr + level)
        resolution = tl.load(resolutions_ptr + level)
        level_rows = tl.load(rows_ptr + level)
        offset = tl.load(offsets_ptr + level)
        hashed = tl.load(hashed_ptr + level)
        cell0, frac0, _ = _axis(x_ptr, points, in_range, 0, scale, NUM_DIMS, POS_DTYPE)
        cell1, frac1, _ = _axis(x_ptr, points, in_range, 1, scale, NUM_DIMS, POS_DTYPE)
        cell2, frac2 = cell1, frac1
        if NUM_DIMS == 3:
            cell2, frac2, _ = _axis(x_ptr, points, in_range, 2, scale, NUM_DIMS, POS_DTYPE)
        for corner in tl.static_range(2**NUM_DIMS):
            row, weight, _, _, _ = _corner(
                cell0, cell1, cell2, frac0, frac1, frac2, corner, NUM_DIMS, resolution, level_rows, hashed
            )
            row_ptrs = table_ptr + (offset + row)[:, None] * NUM_FEATURES + features[None, :]
            values = tl.load(row_ptrs, mask=in_range[:, None], other=0.0).to(ACC_DTYPE)
            acc += weight.to(ACC_DTYPE)[:, None] * values
    out_ptrs = out_ptr + points[:, None] * (NUM_LEVELS * NUM_FEATURES) + level * NUM_FEATURES + features[None, :]
    tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=in_range[:, None])


@triton.jit
def _interp_backward_kernel(
    x_ptr,  # [N, D]
    table_ptr,  # [rows, F]
    grad_out_ptr,  # [N, L * F]
    grad_table_ptr,  # [rows, F], ACC_DTYPE
    grad_x_ptr,  # [N, D], ACC_DTYPE
    scales_ptr,
    resolutions_ptr,
    rows_ptr,
    offsets_ptr,
    hashed_ptr,  # [L] each
    num_points,
    num_active_levels,
    NUM_DIMS: tl.constexpr,
    NUM_FEATURES: tl.constexpr,
    NUM_LEVELS: tl.constexpr,
    BLOCK: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
    POS_DTYPE: tl.constexpr,
    TABLE_GRAD: tl.constexpr,
    POSITION_GRAD: tl.constexpr,
):
    level = tl.program_id(1)
    if level < num_active_levels:
        points = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        in_range = points < num_points
        features = tl.arange(0, NUM_FEATURES)
        scale = tl.load(scales_ptr + level)
        resolution = tl.load(resolutions_ptr + level)
        level_rows = tl.load(rows_ptr + level)
        offset = tl.load(offsets_ptr + level)
        hashed = tl.load(hashed_ptr + level)
        grad_ptrs = grad_out_ptr + points[:, None] * (NUM_LEVELS * NUM_FEATURES) + level * NUM_FEATURES
        grad = tl.load(grad_ptrs + features[None, :], mask=in_range[:, None], other=0.0).to(ACC_DTYPE)
        cell0, frac0, inside0 = _axis(x_ptr, points, in_range, 0, scale, NUM_DIMS, POS_DTYPE)
        cell1, frac1, inside1 = _axis(x_ptr, points, in_range, 1, scale, NUM_DIMS, POS_DTYPE)
        cell2, frac2, inside2 = cell1, frac1, inside1
        if NUM_DIMS == 3:
            cell2, frac2, inside2 = _axis(x_ptr, points, in_range, 2, scale, NUM_DIMS, POS_DTYPE)
        grad_frac0 = tl.zeros((BLOCK,), dtype=ACC_DTYPE)
        grad_frac1 = tl.zeros((BLOCK,), dtype=ACC_DTYPE)
        grad_frac2 = tl.zeros((BLOCK,), dtype=ACC_DTYPE)
        for corner in tl.static_range(2**NUM_DIMS):
            row, weight, w0, w1, w2 = _corner(
                cell0, cell1, cell2, frac0, frac1, frac2, corner, NUM_DIMS, resolution, level_rows, hashed
            )
            row_offsets = (offset + row)[:, None] * NUM_FEATURES + features[None, :]
            if TABLE_GRAD:
                contribution = weight.to(ACC_DTYPE)[:, None] * grad
                tl.atomic_add(grad_table_ptr + row_offsets, contribution, mask=in_range[:, None])
            if POSITION_GRAD:
                values = tl.load(table_ptr + row_offsets, mask=in_range[:, None], other=0.0).to(ACC_DTYPE)
                dot = tl.sum(values * grad, axis=1)  # <dL/dout_l, Z[row]>  [BLOCK]
                # d weight / d frac_d = +-(product of the other axes' factors); + for the upper corner.
                grad_frac0 += dot * (((corner & 1) * 2 - 1) * (w1 * w2)).to(ACC_DTYPE)
                grad_frac1 += dot * ((((corner >> 1) & 1) * 2 - 1) * (w0 * w2)).to(ACC_DTYPE)
                if NUM_DIMS == 3:
                    grad_frac2 += dot * ((((corner >> 2) & 1) * 2 - 1) * (w0 * w1)).to(ACC_DTYPE)
        if POSITION_GRAD:
            scale_acc = scale.to(ACC_DTYPE)
            x_grad_ptrs = grad_x_ptr + points * NUM_DIMS
            tl.atomic_add(x_grad_ptrs, tl.where(inside0, grad_frac0 * scale_acc, 0.0), mask=in_range)
            tl.atomic_add(x_grad_ptrs + 1, tl.where(inside1, grad_frac1 * scale_acc, 0.0), mask=in_range)
            if NUM_DIMS == 3:
                tl.atomic_add(x_grad_ptrs + 2, tl.where(inside2, grad_frac2 * scale_acc, 0.0), mask=in_range)


def _launch_constants(layout: GridLayout, table: Tensor, points: Tensor, block: int) -> dict:
    return dict(
        NUM_DIMS=layout.num_dims,
        NUM_FEATURES=layout.features_per_level,
        NUM_LEVELS=layout.num_levels,
        BLOCK=block,
        ACC_DTYPE=_TRITON_DTYPES[accumulation_dtype(table)],
        POS_DTYPE=tl.float64 if points.dtype == torch.float64 else tl.float32,
    )


class _TritonInterp(torch.autograd.Function):
    """``(points [N, D], table [rows, F]) -> [N, L * F]`` with the fused kernels above."""

    @staticmethod
    def forward(ctx, points: Tensor, table: Tensor, layout: GridLayout, num_levels: int, block: int) -> Tensor:
        params = _level_params(layout, points.device)
        out = torch.empty(points.shape[0], layout.output_dim, dtype=table.dtype, device=points.device)
        if points.shape[0] > 0:
            grid = (triton.cdiv(points.shape[0], block), layout.num_levels)
            constants = _launch_constants(layout, table, points, block)
            _interp_forward_kernel[grid](points, table, out, *params, points.shape[0], num_levels, **constants)
        ctx.save_for_backward(points, table)
        ctx.layout, ctx.num_levels, ctx.block = layout, num_levels, block
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        points, table = ctx.saved_tensors
        layout, block = ctx.layout, ctx.block
        position_grad, table_grad = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        accumulate = accumulation_dtype(table)
        grad_table = torch.zeros(table.shape, dtype=accumulate, device=table.device) if table_grad else None
        grad_points = torch.zeros(points.shape, dtype=accumulate, device=points.device) if position_grad else None
        if (table_grad or position_grad) and ctx.num_levels > 0 and points.shape[0] > 0:
            grid = (triton.cdiv(points.shape[0], block), layout.num_levels)
            _interp_backward_kernel[grid](
                points,
                table,
                grad_out.contiguous(),
                grad_table if table_grad else grad_out,  # grad_out: a pointer the kernel never uses
                grad_points if position_grad else grad_out,
                *_level_params(layout, points.device),
                points.shape[0],
                ctx.num_levels,
                TABLE_GRAD=table_grad,
                POSITION_GRAD=position_grad,
                **_launch_constants(layout, table, points, block),
            )
        if grad_table is not None:
            grad_table = grad_table.to(table.dtype)
        if grad_points is not None:
            grad_points = grad_points.to(points.dtype)
        return grad_points, grad_table, None, None, None


def interp_triton(
    layout: GridLayout,
    table: Tensor,
    x: Tensor,
    num_active_levels: Optional[int] = None,
    block: int = DEFAULT_BLOCK,
) -> Tensor:
    """Interpolates multi-level features from the decoded table with fused Triton kernels.

    Same contract as :func:`~nerfcompress.grid.interp.interp_torch`: points are clamped to
    [0, 1], gradients flow to ``table`` and (when ``x`` requires them) to ``x``, levels
    ``>= num_active_levels`` output zeros and get no gradient, accumulation is float32 (float64
    for a float64 table) and the output has the table's dtype. No host synchronisation.

    Args:
        layout: the grid layout.
        table: decoded table ``[num_rows, F]``: float32, float16, bfloat16 or float64, on the
            points' device.
        x: points ``[*bs, num_dims]``, float32 or float64.
        num_active_levels: levels in use; None means all.
        block: points per Triton program, a power of two (a tuning knob; results do not depend
            on it beyond float rounding of the atomics' order).

    Returns:
        Features ``[*bs, L * F]``, level-major.

    Raises:
        ValueError: as ``interp_torch``, or for an unsupported dtype, a table on another device
            or a ``block`` that is not a power of two.
    """
    num_levels = check_interp_arguments(layout, table, x, num_active_levels)
    if x.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"interp_triton needs float32 or float64 points, found {x.dtype}")
    if table.dtype not in _TABLE_DTYPES:
        raise ValueError(f"interp_triton needs a float32, float16, bfloat16 or float64 table, found {table.dtype}")
    if table.device != x.device:
        raise ValueError(f"table is on {table.device} but the points are on {x.device}")
    if isinstance(block, bool) or not isinstance(block, int) or block < 1 or block & (block - 1):
        raise ValueError(f"block must be a power of two, found {block!r}")
    points = x.reshape(-1, layout.num_dims).contiguous()
    out = _TritonInterp.apply(points, table.contiguous(), layout, num_levels, block)
    return out.view(*x.shape[:-1], layout.output_dim)
