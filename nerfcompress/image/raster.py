"""A picture on a 2D grid: pixel coordinates, the rows its pixels read, and fast raster interpolation.

Pixel ``(row i, col j)`` of an ``H x W`` picture sits at the grid point
``x = ((j + 0.5) / S, (i + 0.5) / S)`` with ``S = max(H, W)``: the picture keeps its aspect
ratio inside the unit square, so a level of a wide picture uses only ``H / S`` of its vertex
rows. The rows no pixel reads are never stored (:func:`referenced_rows`).

:func:`interp_raster` is a twin of :func:`~nerfcompress.grid.interp.interp_torch` for the
pixel centres of a horizontal strip. n-linear weights are products of per-axis weights and a
corner's row is a function of its two axis indices (dense: ``x + y * resolution``; hashed:
``(x * 1) XOR (y * 2654435761)`` modulo ``T``), so each level needs only the vertices
``[Y, X]`` spanned by the strip, gathered once, and two 1D interpolations
(``[Y, X] -> [h, X] -> [h, W]``) instead of four gathers and weights per pixel. The positions,
weights and rows are tcnn's, computed exactly as ``interp_torch`` computes them; only the order
of the float sums differs (tests compare the two).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from nerfcompress.grid.layout import GridLayout

_Y_PRIME = 2654435761  # tcnn's prime of dimension 1 (dimension 0's is 1)


def pixel_axis(count: int, side: int, start: int = 0, stop: int | None = None) -> np.ndarray:
    """float32 grid coordinates ``(k + 0.5) / side`` of pixels ``start .. stop - 1`` along one axis."""
    stop = count if stop is None else stop
    return ((np.arange(start, stop, dtype=np.float64) + 0.5) / side).astype(np.float32)


def pixel_points(height: int, width: int, flat_indices: Tensor) -> Tensor:
    """Grid points ``[N, 2]`` (x = column, y = row) of row-major pixel indices ``int64 [N]``."""
    side = max(height, width)
    rows = torch.div(flat_indices, width, rounding_mode="floor")
    cols = flat_indices - rows * width
    return torch.stack(((cols.double() + 0.5) / side, (rows.double() + 0.5) / side), dim=-1).float()


def axis_corners(coords: np.ndarray, scale: float) -> Tuple[np.ndarray, np.ndarray]:
    """Lower corner ``int64 [n]`` and fraction float32 ``[n]`` along one axis of one level.

    ``pos = fp32(x * scale + 0.5)`` (tcnn's fmaf: the float64 product is exact), as
    ``interp_torch`` computes it."""
    pos = (coords.astype(np.float64) * scale + 0.5).astype(np.float32)
    lower = np.floor(pos)
    return lower.astype(np.int64), (pos - lower).astype(np.float32)


def corner_rows(layout: GridLayout, level: int, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Level-local rows ``int64 [len(ys), len(xs)]`` of the vertices ``(xs[b], ys[a])``."""
    rows = layout.level_rows[level]
    if layout.level_is_hashed[level]:
        mask = layout.hashmap_size - 1  # rows_l = T divides 2**32: the modulo is a mask
        return ((xs & mask)[None, :]) ^ (((ys * _Y_PRIME) & mask)[:, None])
    return (xs[None, :] + ys[:, None] * layout.level_resolutions[level]) % rows


def _axis_vertices(lower: np.ndarray) -> np.ndarray:
    """Sorted distinct vertices ``int64 [V]`` that corners ``lower`` and ``lower + 1`` touch."""
    return np.union1d(lower, lower + 1)


def level_vertices(layout: GridLayout, level: int, height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(xs, ys)``: the sorted vertex indices ``int64`` along each axis of level ``level`` that
    an ``height x width`` picture's pixel centres touch."""
    side, scale = max(height, width), layout.level_scales[level]
    xs = _axis_vertices(axis_corners(pixel_axis(width, side), scale)[0])
    ys = _axis_vertices(axis_corners(pixel_axis(height, side), scale)[0])
    return xs, ys


def referenced_rows(layout: GridLayout, height: int, width: int) -> List[np.ndarray]:
    """Per level, the sorted level-local rows that some pixel reads, ``int64 [n_l]``.

    Dense levels: the vertices the picture's pixel centres touch (a product of per-axis sets).
    Hashed levels: every row (a hashed level's rows are shared by the whole picture)."""
    out = []
    for level in range(layout.num_levels):
        if layout.level_is_hashed[level]:
            out.append(np.arange(layout.level_rows[level], dtype=np.int64))
            continue
        out.append(np.unique(corner_rows(layout, level, *level_vertices(layout, level, height, width))))
    return out


@dataclass(frozen=True)
class RasterGrid:
    """A picture's grid: the layout, the rows each level stores, and their place in the layout.

    Args:
        layout: a 2D grid layout.
        height: picture rows ``H``.
        width: picture columns ``W``.
    """

    layout: GridLayout
    height: int
    width: int

    @cached_property
    def stored_rows(self) -> List[np.ndarray]:
        """Per level, the level-local layout rows stored (read by some pixel), ``int64 [n_l]``."""
        return referenced_rows(self.layout, self.height, self.width)

    @cached_property
    def level_raster_widths(self) -> Tuple[Optional[int], ...]:
        """Per level, the width of the raster whose row-major order the level's stored rows follow
        (the last raster row may be short), or None (a hashed level).

        A dense level's layout row of vertex ``(x, y)`` is ``x + y * resolution``. When the
        picture's vertices stop short of the resolution along x (a tall picture), the stored rows
        are the vertices' rectangle, ``len(xs)`` wide; when they reach it, vertex ``(resolution,
        y)`` is the same row as ``(0, y + 1)`` and the stored rows are a contiguous run, laid out
        ``resolution`` wide (the layout's own arrangement)."""
        widths: List[Optional[int]] = []
        for level, stored in enumerate(self.stored_rows):
            if self.layout.level_is_hashed[level]:
                widths.append(None)
                continue
            xs, ys = level_vertices(self.layout, level, self.height, self.width)
            resolution = self.layout.level_resolutions[level]
            if xs[-1] < resolution:  # the vertices' rectangle, row-major
                ys = ys[ys < resolution]  # vertex row ``resolution`` wraps onto row 0
                rectangle = np.array_equal(stored, corner_rows(self.layout, level, xs, ys).reshape(-1))
                widths.append(len(xs) if rectangle else None)
            else:  # a contiguous run of rows, ``resolution`` to a raster row
                widths.append(resolution if bool(np.all(np.diff(stored) == 1)) else None)
        return tuple(widths)

    @cached_property
    def level_rows(self) -> Tuple[int, ...]:
        """Stored rows of each level: the row counts of the picture's table."""
        return tuple(len(rows) for rows in self.stored_rows)

    @cached_property
    def layout_to_stored(self) -> Tensor:
        """int64 ``[layout.num_rows]``: the stored (table) row of every layout row; rows no pixel
        reads map to the level's first stored row (their value never matters)."""
        parts, offset = [], 0
        for level, rows in enumerate(self.stored_rows):
            mapping = np.zeros(self.layout.level_rows[level], dtype=np.int64)
            mapping[rows] = np.arange(len(rows)) + offset
            parts.append(mapping)
            offset += len(rows)
        return torch.from_numpy(np.concatenate(parts))

    def layout_table(self, table: Tensor) -> Tensor:
        """The layout's table ``[layout.num_rows, F]`` from the stored rows ``[sum(n_l), F]``,
        for :func:`~nerfcompress.grid.interp.interp_torch` (differentiable)."""
        return table.index_select(0, self.layout_to_stored.to(table.device))

    def stored_index(self, level: int, local_rows: np.ndarray) -> np.ndarray:
        """Table rows ``int64`` (any shape) of level-local layout rows that pixels read."""
        rows = self.stored_rows[level]
        offset = int(sum(self.level_rows[:level]))
        return np.searchsorted(rows, local_rows) + offset


SEPARABLE_MACS_PER_PIXEL = 64
"""A level whose two 1D interpolation matrices cost at most this many multiply-adds per pixel
(``Y * X / W + X``) is interpolated as ``Wy @ V @ Wx^T`` (two matmuls) rather than by
``grid_sample``, whose forward and backward cost the same at every level (5.5 ms per level on
512 x 512 pixels, one CPU thread): the coarse levels cost almost nothing."""


@dataclass(frozen=True)
class LevelPlan:
    """What one level of :func:`interp_raster` reads for a strip of pixel rows."""

    index: Tensor  # int64 [Y * X], table rows of the vertices spanned by the strip
    shape: Tuple[int, int]  # (Y, X)
    sample_grid: Optional[Tensor] = None  # [1, h, W, 2], each pixel's position in the [Y, X] vertices, in [-1, 1]
    row_weights: Optional[Tensor] = None  # [h, Y] linear weights of each pixel row (separable levels)
    column_weights: Optional[Tensor] = None  # [X, W] linear weights of each pixel column (separable levels)
    """A separable level holds the two weight matrices, any other its ``sample_grid``."""


def _contiguous_vertices(lower: np.ndarray) -> np.ndarray:
    return np.arange(int(lower.min()), int(lower.max()) + 2, dtype=np.int64)


def _normalized(pos: np.ndarray, first: int, count: int) -> np.ndarray:
    """grid_sample's ``align_corners=True`` coordinate of vertex position ``pos``."""
    return (2.0 * (pos.astype(np.float64) - first) / (count - 1) - 1.0).astype(np.float32)


def raster_plan(grid: RasterGrid, row_start: int = 0, row_end: int | None = None) -> List[LevelPlan]:
    """What :func:`interp_raster` reads for rows ``row_start .. row_end - 1`` (CPU tensors);
    build it once and pass it to every call that covers the same rows.

    Raises:
        ValueError: the rows are not a non-empty range inside the picture.
    """
    layout = grid.layout
    row_end = grid.height if row_end is None else row_end
    if not 0 <= row_start < row_end <= grid.height:
        raise ValueError(f"rows must satisfy 0 <= start < end <= {grid.height}, found {row_start}, {row_end}")
    side = max(grid.height, grid.width)
    xs_all = pixel_axis(grid.width, side)
    ys_all = pixel_axis(grid.height, side, row_start, row_end)
    plans = []
    for level in range(layout.num_levels):
        scale = layout.level_scales[level]
        cx, fx = axis_corners(xs_all, scale)
        cy, fy = axis_corners(ys_all, scale)
        xv, yv = _contiguous_vertices(cx), _contiguous_vertices(cy)
        local_rows = corner_rows(layout, level, xv, yv)  # [Y, X]; vertices no pixel reads get any stored row
        index = np.minimum(grid.stored_index(level, local_rows), int(sum(grid.level_rows[: level + 1])) - 1)
        level_plan = LevelPlan(index=torch.from_numpy(index.reshape(-1)), shape=(len(yv), len(xv)))
        if len(yv) * len(xv) / grid.width + len(xv) <= SEPARABLE_MACS_PER_PIXEL:
            rows = _linear_weights(cy - int(yv[0]), fy, len(yv))
            columns = _linear_weights(cx - int(xv[0]), fx, len(xv)).t().contiguous()
            plans.append(replace(level_plan, row_weights=rows, column_weights=columns))
            continue
        gx = _normalized(cx + fx.astype(np.float64), int(xv[0]), len(xv))  # [W]
        gy = _normalized(cy + fy.astype(np.float64), int(yv[0]), len(yv))  # [h]
        sample_grid = np.stack(np.broadcast_arrays(gx[None, :], gy[:, None]), axis=-1)  # [h, W, 2]
        plans.append(replace(level_plan, sample_grid=torch.from_numpy(np.ascontiguousarray(sample_grid))[None]))
    return plans


def _linear_weights(lower: np.ndarray, fraction: np.ndarray, count: int) -> Tensor:
    """``[n, count]``: row ``k`` weighs vertex ``lower[k]`` by ``1 - fraction[k]`` and the next by
    ``fraction[k]`` (one axis of bilinear interpolation)."""
    weights = np.zeros((len(lower), count), dtype=np.float32)
    rows = np.arange(len(lower))
    weights[rows, lower] = 1.0 - fraction
    weights[rows, lower + 1] += fraction
    return torch.from_numpy(weights)


def interp_raster(table: Tensor, plan: List[LevelPlan]) -> Tensor:
    """Features at the pixel centres of the rows a :func:`raster_plan` covers, all columns.

    The values of ``interp_torch(grid.layout, grid.layout_table(table), points)`` at those
    pixels' points, with the gradient to ``table``: coarse levels interpolate with two matmuls
    over tcnn's weights (:data:`SEPARABLE_MACS_PER_PIXEL`), finer ones with ``grid_sample``, which
    recomputes each pixel's position from a normalised coordinate in float32 (weights agree to
    about 1e-4).

    Args:
        table: stored rows ``[sum(grid.level_rows), F]``.
        plan: ``raster_plan(grid, row_start, row_end)``.

    Returns:
        ``[1, L * F, h, W]``, level-major like ``interp_torch``.
    """
    device = table.device
    features = []
    for level in plan:
        vertices = table.index_select(0, level.index.to(device)).view(*level.shape, -1)  # [Y, X, F]
        if level.row_weights is not None:  # [F, h, Y] @ [F, Y, X] @ [X, W]
            rows = torch.matmul(level.row_weights.to(table), vertices.permute(2, 0, 1))
            features.append(torch.matmul(rows, level.column_weights.to(table)).unsqueeze(0))
            continue
        features.append(
            F.grid_sample(
                vertices.permute(2, 0, 1).unsqueeze(0),  # [1, F, Y, X]
                level.sample_grid.to(table),
                mode="bilinear",
                padding_mode="border",
                align_corners=True,
            )
        )
    return torch.cat(features, dim=1)
