"""interp_triton against its twin interp_torch (in Triton's CPU interpreter without a GPU).

The interpreter runs every program through numpy, so sizes stay small: ~100 points, a few
levels. tests/conftest.py sets TRITON_INTERPRET=1 when no CUDA device is present.
"""

import pytest
import torch

from nerfcompress.grid.interp import interp_torch
from nerfcompress.grid.interp_triton import interp_triton
from nerfcompress.grid.layout import GridLayout

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# GridLayout(num_dims, num_levels, features_per_level, hashmap_size, base_resolution, per_level_scale)
LAYOUTS = {
    "2d-f1-dense": GridLayout(2, 2, 1, 2**10, 4, 2.0),
    "2d-f8-hashed": GridLayout(2, 3, 8, 16, 4, 1.8),
    "3d-f2-dense+hashed": GridLayout(3, 3, 2, 256, 4, 2.0),
    "3d-f4-hashed": GridLayout(3, 2, 4, 16, 3, 1.5),
}


def _rel(found: torch.Tensor, expected: torch.Tensor) -> float:
    """Largest error relative to the largest magnitude of the reference."""
    return float((found - expected).abs().max() / expected.abs().max().clamp_min(1e-30))


def _points(layout: GridLayout, n: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    """Points in [-0.25, 1.25]^D (a third outside the grid) plus the corners 0 and 1 exactly."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, layout.num_dims, generator=g, dtype=dtype) * 1.5 - 0.25
    x[0], x[1], x[2, 0], x[3, -1] = 0.0, 1.0, 0.0, 1.0
    return x.to(DEVICE)


def _run(interpolate, layout, table, x, grad_out, **kwargs):
    table = table.clone().requires_grad_()
    x = x.clone().requires_grad_()
    out = interpolate(layout, table, x, **kwargs)
    out.backward(grad_out)
    return out.detach(), table.grad, x.grad


@pytest.mark.parametrize("name", list(LAYOUTS))
@pytest.mark.parametrize("block, num_active_levels", [(16, None), (64, 1)])
def test_forward_and_gradients_equal_interp_torch(name, block, num_active_levels):
    layout = LAYOUTS[name]
    assert any(layout.level_is_hashed) or name.endswith("dense")
    g = torch.Generator().manual_seed(1)
    table = torch.randn(layout.num_rows, layout.features_per_level, generator=g).to(DEVICE)
    x = _points(layout, 40, seed=2)
    grad_out = torch.randn(40, layout.output_dim, generator=g).to(DEVICE)
    expected = _run(interp_torch, layout, table, x, grad_out, num_active_levels=num_active_levels)
    found = _run(interp_triton, layout, table, x, grad_out, num_active_levels=num_active_levels, block=block)
    for part, ours, theirs in zip(("forward", "table gradient", "position gradient"), found, expected):
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, part
        assert _rel(ours, theirs) <= 1e-5, part
    if num_active_levels is not None:
        assert bool((found[0][:, num_active_levels * layout.features_per_level :] == 0).all())
    outside = ((x < 0) | (x > 1) | (x == 0) | (x == 1)).cpu()
    assert bool((found[2].cpu()[outside] == 0).all())  # the clamp blocks gradients, as in the twin


def test_float64_matches_the_twin_to_rounding_and_gradchecks_in_the_positions():
    layout = LAYOUTS["3d-f2-dense+hashed"]
    g = torch.Generator().manual_seed(3)
    table = torch.randn(layout.num_rows, 2, generator=g, dtype=torch.float64).to(DEVICE)
    x = _points(layout, 40, seed=4, dtype=torch.float64)
    grad_out = torch.randn(40, layout.output_dim, generator=g, dtype=torch.float64).to(DEVICE)
    for ours, theirs in zip(
        _run(interp_triton, layout, table, x, grad_out), _run(interp_torch, layout, table, x, grad_out)
    ):
        assert ours.dtype == torch.float64 and _rel(ours, theirs) <= 1e-12
    inside = (torch.rand(2, 3, generator=g, dtype=torch.float64) * 0.8 + 0.1).to(DEVICE).requires_grad_()
    assert torch.autograd.gradcheck(lambda p: interp_triton(layout, table, p, block=16), (inside,))


def test_positions_get_no_gradient_unless_they_require_it():
    layout = LAYOUTS["2d-f1-dense"]
    table = torch.randn(layout.num_rows, 1).to(DEVICE).requires_grad_()
    frozen = torch.rand(8, 2).to(DEVICE)
    interp_triton(layout, table, frozen).sum().backward()
    assert frozen.grad is None and table.grad is not None and bool(table.grad.abs().sum() > 0)


def test_half_precision_tables_accumulate_in_float32():
    layout = LAYOUTS["3d-f2-dense+hashed"]
    g = torch.Generator().manual_seed(4)
    table = torch.randn(layout.num_rows, 2, generator=g).to(DEVICE)
    x = _points(layout, 40, seed=5)
    reference = interp_torch(layout, table, x)
    for dtype in (torch.float16, torch.bfloat16):
        found = interp_triton(layout, table.to(dtype), x)
        assert found.dtype == dtype
        exact = interp_torch(layout, table.to(dtype).float(), x)  # the same rows, float32 sums
        assert _rel(found.float(), exact) <= torch.finfo(dtype).eps  # rounded once, at the end
        assert _rel(found.float(), reference) < 0.02


def test_batch_dims_empty_input_and_bad_arguments():
    layout = LAYOUTS["2d-f1-dense"]
    table = torch.randn(layout.num_rows, 1).to(DEVICE)
    x = torch.rand(2, 3, 2).to(DEVICE)
    out = interp_triton(layout, table, x)
    assert out.shape == (2, 3, layout.output_dim)
    assert _rel(out, interp_torch(layout, table, x)) <= 1e-6
    assert interp_triton(layout, table, torch.rand(0, 2).to(DEVICE)).shape == (0, layout.output_dim)
    with pytest.raises(ValueError, match=r"x must have shape \[\*bs, 2\]"):
        interp_triton(layout, table, torch.rand(5, 3).to(DEVICE))
    with pytest.raises(ValueError, match="num_active_levels"):
        interp_triton(layout, table, x, num_active_levels=3)
    with pytest.raises(ValueError, match="block must be a power of two"):
        interp_triton(layout, table, x, block=48)
    with pytest.raises(ValueError, match="float32 or float64 points"):
        interp_triton(layout, table, x.half())
