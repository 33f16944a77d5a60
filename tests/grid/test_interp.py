"""Tests for nerfcompress.grid.interp."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nerfcompress.grid.interp import grid_corner_indices, interp_torch
from nerfcompress.grid.layout import GridLayout

PRIMES = (1, 2654435761, 805459861)
# GridLayout(num_dims, num_levels, features_per_level, hashmap_size, base_resolution, per_level_scale)

TINY_2D = GridLayout(2, 2, 2, 16, 4, 2.0)
# 3D: levels 0-1 dense (4**3 = 64, 8**3 = 512 rows), level 2 hashed (16**3 > 256).
SMALL_3D = GridLayout(3, 3, 2, 256, 4, 2.0)
NERFACTO = GridLayout.from_resolution_range(3, 16, 16, 2048, 19, 2)


def _tcnn_rows(layout, x):
    """Corner rows [N, L, C] per tcnn's kernel, in plain Python ints and numpy float32."""
    out = np.zeros((x.shape[0], layout.num_levels, 2**layout.num_dims), dtype=np.int64)
    for n, point in enumerate(x.astype(np.float64)):
        for level in range(layout.num_levels):
            scale = np.float64(np.float32(layout.level_scales[level]))
            pos = np.float32(point * scale + 0.5)  # fmaf: the float64 product is exact
            pos_grid = [int(p) for p in np.floor(pos)]
            res, rows = layout.level_resolutions[level], layout.level_rows[level]
            for corner in range(2**layout.num_dims):
                local = [g + (corner >> d & 1) for d, g in enumerate(pos_grid)]
                if layout.level_is_hashed[level]:
                    index = 0
                    for d, g in enumerate(local):
                        index ^= (g * PRIMES[d]) % 2**32
                else:
                    index = sum(g * res**d for d, g in enumerate(local))
                out[n, level, corner] = index % rows + layout.level_offsets[level]
    return out


def test_hand_computed_rows_2d():
    # x = (0.5, 0.25).
    # Level 0 (dense, scale 3, resolution 4): pos = (2.0, 1.25), pos_grid = (2, 1), frac = (0, 0.25);
    #   corners (2,1) (3,1) (2,2) (3,2) -> rows 2+4*1 = 6, 7, 10, 11; weights .75, 0, .25, 0.
    # Level 1 (hashed, scale 7, T = 16, offset 16): pos = (4.0, 2.25), pos_grid = (4, 2);
    #   (4,2): 4 ^ (2 * 2654435761 mod 2**32 = 1013904226) = 1013904230, % 16 = 6 -> row 22;
    #   (5,2): 5 ^ 1013904226 = 1013904231 -> 7 -> row 23;
    #   (4,3): 4 ^ (3 * 2654435761 mod 2**32 = 3668339987) = 3668339991 -> 7 -> row 23;
    #   (5,3): 5 ^ 3668339987 = 3668339990 -> 6 -> row 22.
    rows, weights = grid_corner_indices(TINY_2D, torch.tensor([[0.5, 0.25]]))
    assert rows.dtype == torch.int64
    assert rows.tolist() == [[[6, 7, 10, 11], [22, 23, 23, 22]]]
    assert weights.tolist() == [[[0.75, 0.0, 0.25, 0.0], [0.75, 0.0, 0.25, 0.0]]]


@pytest.mark.parametrize("layout", [TINY_2D, SMALL_3D, NERFACTO], ids=["tiny2d", "small3d", "nerfacto"])
def test_rows_match_tcnn_formula(layout):
    x = torch.rand(64, layout.num_dims, generator=torch.Generator().manual_seed(0))
    x[0] = 0.0
    x[1] = 1.0
    rows, _ = grid_corner_indices(layout, x)
    np.testing.assert_array_equal(rows.numpy(), _tcnn_rows(layout, x.numpy()))


@pytest.mark.parametrize("layout", [TINY_2D, SMALL_3D, NERFACTO], ids=["tiny2d", "small3d", "nerfacto"])
def test_rows_stay_in_their_level(layout):
    x = torch.rand(4096, layout.num_dims, generator=torch.Generator().manual_seed(1)) * 2.0 - 0.5
    x[:8] = torch.tensor([0.0, 1.0, -1e-7, 1.0 + 1e-7, -1e9, 1e9, 0.5, 0.999999]).view(8, 1)
    rows, weights = grid_corner_indices(layout, x)
    lo = torch.tensor(layout.level_offsets).view(1, -1, 1)
    hi = lo + torch.tensor(layout.level_rows).view(1, -1, 1)
    assert bool(((rows >= lo) & (rows < hi)).all())
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
    assert bool((weights >= 0).all())


@pytest.mark.parametrize("num_dims", [2, 3])
def test_dense_levels_reproduce_linear_function(num_dims):
    # Levels: scale 3 and 7 (resolutions 4 and 8), both dense for T = 2**12.
    layout = GridLayout(num_dims, 2, 2, 2**12, 4, 2.0)
    assert not any(layout.level_is_hashed)
    coeffs = torch.randn(2, num_dims, dtype=torch.float64)  # [F, D]
    bias = torch.randn(2, dtype=torch.float64)
    table = torch.zeros(layout.num_rows, 2, dtype=torch.float64)
    for res, offset in zip(layout.level_resolutions, layout.level_offsets):
        axes = torch.meshgrid(*[torch.arange(res, dtype=torch.float64)] * num_dims, indexing="ij")
        # vertex (i0, i1, ...) lives at dense row i0 + i1 * res + ...: flatten with dim 0 fastest.
        coords = torch.stack([a.permute(*reversed(range(num_dims))).reshape(-1) for a in axes], -1)
        table[offset : offset + res**num_dims] = coords @ coeffs.T + bias
    # Stay inside the grid: the upper corner must not pass the last vertex, i.e.
    # x * scale + 0.5 < resolution - 1 = scale, x < 1 - 0.5 / scale = 0.833 for scale 3.
    x = torch.rand(500, num_dims, dtype=torch.float64) * 0.8
    features = interp_torch(layout, table, x).view(-1, 2, 2)
    for level, scale in enumerate(layout.level_scales):
        expected = (x * scale + 0.5) @ coeffs.T + bias
        torch.testing.assert_close(features[:, level], expected)


def _points_off_cell_boundaries(layout, n, seed, margin=1e-3):
    x = torch.rand(4 * n, layout.num_dims, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    x = x * 0.9 + 0.05
    pos = x.unsqueeze(1) * torch.tensor(layout.level_scales, dtype=torch.float64).view(1, -1, 1) + 0.5
    frac = pos - pos.floor()
    keep = ((frac > margin) & (frac < 1 - margin)).flatten(1).all(1)
    return x[keep][:n]


@pytest.mark.parametrize("layout", [TINY_2D, SMALL_3D], ids=["tiny2d", "small3d"])
def test_gradcheck_table_and_points(layout):
    table = torch.randn(layout.num_rows, layout.features_per_level, dtype=torch.float64, requires_grad=True)
    x = _points_off_cell_boundaries(layout, 6, seed=2).requires_grad_()
    assert x.shape[0] == 6
    assert torch.autograd.gradcheck(lambda t, p: interp_torch(layout, t, p), (table, x))


def test_float32_gradients_reach_points():
    x = torch.rand(32, 3, requires_grad=True)
    table = torch.randn(NERFACTO.num_rows, 2, requires_grad=True)
    interp_torch(NERFACTO, table, x).sum().backward()
    assert x.grad is not None and bool(x.grad.abs().sum() > 0)
    assert int((table.grad != 0).any(-1).sum()) > 0


def test_num_active_levels_zeroes_and_blocks_gradients():
    layout = SMALL_3D
    table = torch.randn(layout.num_rows, 2, dtype=torch.float64, requires_grad=True)
    x = torch.rand(200, 3, dtype=torch.float64)
    full = interp_torch(layout, table, x)
    prefix = interp_torch(layout, table, x, num_active_levels=2)
    torch.testing.assert_close(prefix[:, :4], full[:, :4])
    assert bool((prefix[:, 4:] == 0).all())
    prefix.sum().backward()
    level_of_row = torch.repeat_interleave(torch.arange(3), torch.tensor(layout.level_rows))
    touched = (table.grad != 0).any(-1)
    assert bool(touched[level_of_row < 2].any())
    assert not bool(touched[level_of_row == 2].any())
    assert bool((interp_torch(layout, table, x, num_active_levels=0) == 0).all())


def test_output_shape_dtype_and_batch_dims():
    table = torch.randn(SMALL_3D.num_rows, 2, dtype=torch.float64)
    x = torch.rand(4, 5, 3)
    out = interp_torch(SMALL_3D, table, x)
    assert out.shape == (4, 5, SMALL_3D.output_dim)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out.view(20, -1), interp_torch(SMALL_3D, table, x.view(20, 3)))
    assert interp_torch(SMALL_3D, table, torch.rand(0, 3)).shape == (0, SMALL_3D.output_dim)


def test_level_major_concatenation():
    table = torch.randn(SMALL_3D.num_rows, 2)
    x = torch.rand(10, 3)
    rows, weights = grid_corner_indices(SMALL_3D, x)
    expected = (weights.unsqueeze(-1) * table[rows]).sum(-2).reshape(10, -1)  # [N, L * F]
    torch.testing.assert_close(interp_torch(SMALL_3D, table, x), expected)


def test_invalid_arguments():
    table = torch.randn(SMALL_3D.num_rows, 2)
    with pytest.raises(ValueError, match=r"x must have shape \[\*bs, 3\]"):
        interp_torch(SMALL_3D, table, torch.rand(5, 2))
    with pytest.raises(ValueError, match="floating point"):
        grid_corner_indices(SMALL_3D, torch.zeros(5, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"table must have shape \[num_rows, F\]"):
        interp_torch(SMALL_3D, table[:-1], torch.rand(5, 3))
    with pytest.raises(ValueError, match="num_active_levels"):
        interp_torch(SMALL_3D, table, torch.rand(5, 3), num_active_levels=4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    layout = NERFACTO
    table = torch.randn(layout.num_rows, 2, requires_grad=True)
    x = torch.rand(4096, 3, requires_grad=True)
    rows_cpu, weights_cpu = grid_corner_indices(layout, x.detach())
    rows_gpu, weights_gpu = grid_corner_indices(layout, x.detach().cuda())
    assert torch.equal(rows_gpu.cpu(), rows_cpu)
    torch.testing.assert_close(weights_gpu.cpu(), weights_cpu)

    table_gpu = table.detach().cuda().requires_grad_()
    x_gpu = x.detach().cuda().requires_grad_()
    out_cpu = interp_torch(layout, table, x, num_active_levels=12)
    out_gpu = interp_torch(layout, table_gpu, x_gpu, num_active_levels=12)
    torch.testing.assert_close(out_gpu.cpu(), out_cpu)
    grad = torch.randn_like(out_cpu)
    out_cpu.backward(grad)
    out_gpu.backward(grad.cuda())
    torch.testing.assert_close(table_gpu.grad.cpu(), table.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(x_gpu.grad.cpu(), x.grad, rtol=1e-4, atol=1e-4)


def test_grid_core_does_not_import_nerfstudio():
    code = "import sys, nerfcompress.grid; assert 'nerfstudio' not in sys.modules, 'nerfstudio imported'"
    repo_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo_root, os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_interpolation_accumulates_in_float32_under_bfloat16_autocast():
    table = torch.randn(SMALL_3D.num_rows, 2)
    x = torch.rand(64, 3)
    expected = interp_torch(SMALL_3D, table, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (table @ table.t()).dtype == torch.bfloat16  # autocast is on
        found = interp_torch(SMALL_3D, table, x)
    assert found.dtype == torch.float32 and torch.equal(found, expected)
