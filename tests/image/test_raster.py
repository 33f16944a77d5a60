"""Tests for nerfcompress.image.raster: the raster twin of interp_torch and the stored rows."""

import numpy as np
import pytest
import torch

from nerfcompress.grid import GridLayout, grid_corner_indices, interp_torch
from nerfcompress.image.raster import RasterGrid, interp_raster, pixel_points, raster_plan, referenced_rows

# (H, W, layout): dense levels only; dense and hashed; a level finer than the pixels; features 1..4.
CASES = [
    (37, 53, GridLayout(2, 5, 2, 2**8, 3, 1.7)),
    (64, 40, GridLayout(2, 6, 4, 2**10, 4, 1.9)),
    (20, 30, GridLayout(2, 3, 1, 2**12, 40, 2.0)),
    (33, 33, GridLayout(2, 4, 1, 2**20, 2, 2.0)),
]


@pytest.mark.parametrize("height, width, layout", CASES)
def test_raster_matches_interp_torch_values_and_gradients(height, width, layout):
    grid = RasterGrid(layout, height, width)
    torch.manual_seed(0)
    table = torch.randn(sum(grid.level_rows), layout.features_per_level, requires_grad=True)
    start = 3
    raster = interp_raster(table, raster_plan(grid, start, height))[0].permute(1, 2, 0)  # [h, W, L F]
    points = pixel_points(height, width, torch.arange(start * width, height * width))
    reference = interp_torch(layout, grid.layout_table(table), points).view(height - start, width, -1)
    assert torch.allclose(raster, reference, atol=1e-4)  # positions recomputed in float32
    (grad_raster,) = torch.autograd.grad(raster.square().sum(), table)
    (grad_reference,) = torch.autograd.grad(reference.square().sum(), table)
    assert torch.allclose(grad_raster, grad_reference, atol=2e-4, rtol=1e-4)


def test_cases_cover_both_interpolations():
    """The cases above reach the two-matmul path (coarse levels) and grid_sample (fine levels)."""
    kinds = {plan.row_weights is not None for h, w, layout in CASES for plan in raster_plan(RasterGrid(layout, h, w))}
    assert kinds == {True, False}


@pytest.mark.parametrize("height, width, layout", CASES)
def test_stored_rows_are_exactly_the_rows_pixels_read(height, width, layout):
    points = pixel_points(height, width, torch.arange(height * width))
    rows, _ = grid_corner_indices(layout, points)  # [N, L, C], offset into the layout
    for level, stored in enumerate(referenced_rows(layout, height, width)):
        read = np.unique(rows[:, level].numpy()) - layout.level_offsets[level]
        if layout.level_is_hashed[level]:
            assert len(stored) == layout.level_rows[level]  # hashed levels keep every row
            assert np.isin(read, stored).all()
        else:
            assert np.array_equal(read, stored)


def test_wide_picture_stores_only_the_rows_it_covers():
    layout = GridLayout(2, 4, 1, 2**20, 8, 2.0)
    wide, square = RasterGrid(layout, 16, 64), RasterGrid(layout, 64, 64)
    assert sum(wide.level_rows) < 0.4 * sum(square.level_rows)


def test_plan_rejects_bad_rows():
    grid = RasterGrid(GridLayout(2, 2, 1, 2**8, 4, 2.0), 10, 10)
    with pytest.raises(ValueError, match="rows must satisfy"):
        raster_plan(grid, 5, 5)
    with pytest.raises(ValueError, match="rows must satisfy"):
        raster_plan(grid, 0, 11)


@pytest.mark.parametrize("height, width", [(300, 451), (451, 300), (64, 64), (100, 37)])
def test_raster_widths_put_each_stored_row_beside_its_grid_neighbours(height, width):
    """A dense level's stored rows, row-major in rows of its raster width, have the vertex to the
    right one position on (within a raster row) and the vertex below one raster row on."""
    from nerfcompress.image.config import ImageModelConfig

    grid = RasterGrid(ImageModelConfig(num_levels=7).layout(height, width), height, width)
    widths = grid.level_raster_widths
    assert all(w is not None for w in widths[-4:])  # the levels that hold most latents are context-coded
    for level, (stored, w) in enumerate(zip(grid.stored_rows, widths)):
        if w is None:
            assert grid.layout.level_is_hashed[level] or len(stored) < 2_000
            continue
        resolution = grid.layout.level_resolutions[level]
        positions = np.arange(len(stored))
        right = (positions[:-1] % w) != w - 1
        assert (np.diff(stored)[right] == 1).all()
        assert (stored[w:] - stored[:-w] == resolution).all()
