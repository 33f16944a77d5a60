"""Multi-level interpolation with tiny-cuda-nn's HashGrid fed our decoded table (CUDA only).

tcnn's ``Grid``/``Hash`` encoding has our layout row for row (``nerfcompress.grid.layout``), so
its parameters can simply be our decoded ``Z [rows, F]``, flattened. We call its autograd function
``tinycudann.modules._module_function`` directly with ``Z`` as the parameters (fp32, loss scale
1): the gradient reaches ``Z`` (and the positions) through torch's autograd as for the other
backends. The ``tinycudann.Encoding`` objects are cached here, outside every ``nn.Module``, so
their own (unused) parameters never reach a model's ``state_dict`` or an optimizer.

``tinycudann`` is imported on the first call only, never on CPU paths. :func:`tcnn_mismatch`
is the start-up self-check against :func:`~nerfcompress.grid.interp.interp_torch`.
"""

from __future__ import annotations

import contextlib
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

from nerfcompress.grid.interp import check_interp_arguments, clamp_unit, interp_torch
from nerfcompress.grid.layout import GridLayout

SELF_CHECK_POINTS = 4096
"""Points of the start-up comparison with ``interp_torch``."""

SELF_CHECK_TOLERANCE = 1e-4
"""Largest accepted error of the forward and of the table gradient, relative to the largest
magnitude of ``interp_torch``'s (tcnn accumulates in float32 in its own order)."""

_ENCODINGS: Dict[Tuple[GridLayout, str], object] = {}  # (layout, device) -> tinycudann.Encoding


def tcnn_encoding_config(layout: GridLayout) -> dict:
    """tcnn's encoding config for ``layout`` (``"Grid"``, ``"Hash"``, linear interpolation)."""
    return {
        "otype": "Grid",
        "type": "Hash",
        "n_levels": layout.num_levels,
        "n_features_per_level": layout.features_per_level,
        "log2_hashmap_size": layout.hashmap_size.bit_length() - 1,
        "base_resolution": layout.base_resolution,
        "per_level_scale": layout.per_level_scale,
        "interpolation": "Linear",
    }


def _encoding(layout: GridLayout, device: torch.device):
    import tinycudann

    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    key = (layout, str(device))
    if key not in _ENCODINGS:
        with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
            _ENCODINGS[key] = tinycudann.Encoding(layout.num_dims, tcnn_encoding_config(layout), dtype=torch.float32)
    return _ENCODINGS[key]


def interp_tcnn(layout: GridLayout, table: Tensor, x: Tensor, num_active_levels: Optional[int] = None) -> Tensor:
    """Interpolates multi-level features with tiny-cuda-nn's HashGrid, our table as its parameters.

    Same contract as :func:`~nerfcompress.grid.interp.interp_torch` (points clamped by
    ``clamp_unit``; levels ``>= num_active_levels`` are zeroed, so they get no gradient).
    tcnn computes in float32 whatever the table's dtype; the output has the table's dtype.

    Args:
        layout: the grid layout.
        table: decoded table ``[num_rows, F]`` on a CUDA device (tcnn's kernels are CUDA-only).
        x: points ``[*bs, num_dims]`` on the table's device.
        num_active_levels: levels in use; None means all.

    Returns:
        Features ``[*bs, L * F]``, level-major.

    Raises:
        ValueError: as ``interp_torch``, or for points and table on different devices.
        ImportError: tinycudann is not installed.
    """
    num_levels = check_interp_arguments(layout, table, x, num_active_levels)
    if table.device != x.device:
        raise ValueError(f"table is on {table.device} but the points are on {x.device}")
    from tinycudann.modules import _C, _module_function

    encoding = _encoding(layout, x.device)
    points = clamp_unit(x.reshape(-1, layout.num_dims).float())
    count = points.shape[0]
    granularity = int(_C.batch_size_granularity())
    padded = -(-count // granularity) * granularity
    if padded != count:
        points = torch.nn.functional.pad(points, [0, 0, 0, padded - count])
    params = table.float().contiguous().view(-1)
    out = _module_function.apply(encoding.native_tcnn_module, points.contiguous(), params, 1.0)
    out = out[:count, : layout.output_dim]
    if num_levels < layout.num_levels:
        keep = torch.arange(layout.output_dim, device=x.device) < num_levels * layout.features_per_level
        out = out * keep
    return out.to(table.dtype).view(*x.shape[:-1], layout.output_dim)


def tcnn_mismatch(layouts: Sequence[GridLayout], device: torch.device) -> Optional[str]:
    """Start-up self-check: ``interp_tcnn`` against ``interp_torch`` on every layout.

    Random points and a random table (seeded) go through both, forward and table gradient.

    Args:
        layouts: the layouts the model uses.
        device: the CUDA device to check on.

    Returns:
        None if tcnn agrees within :data:`SELF_CHECK_TOLERANCE`, else what differs (the first
        failing layout, which part, and the relative error) or why tcnn could not run.
    """
    generator = torch.Generator(device=device).manual_seed(0)
    for layout in dict.fromkeys(layouts):
        try:
            import tinycudann  # noqa: F401  (its absence is reported, not raised)

            expected_rows = layout.num_rows * layout.features_per_level
            found_rows = _encoding(layout, device).native_tcnn_module.n_params()
            if found_rows != expected_rows:
                return f"{layout}: tcnn has {found_rows} parameters, our layout {expected_rows}"
            table = torch.randn(layout.num_rows, layout.features_per_level, device=device, generator=generator)
            x = torch.rand(SELF_CHECK_POINTS, layout.num_dims, device=device, generator=generator)
            upstream = torch.randn(SELF_CHECK_POINTS, layout.output_dim, device=device, generator=generator)
            results = []
            for interpolate in (interp_torch, interp_tcnn):
                leaf = table.clone().requires_grad_()
                out = interpolate(layout, leaf, x)
                (grad,) = torch.autograd.grad(out, leaf, upstream)
                results.append((out.detach(), grad))
        except Exception as exc:  # any failure of the optional library is a reason to fall back
            return f"{layout}: tiny-cuda-nn failed ({type(exc).__name__}: {exc})"
        for part, (reference, found) in zip(("forward", "table gradient"), zip(*results)):
            error = float((found - reference).abs().max() / reference.abs().max().clamp_min(1e-12))
            if not error <= SELF_CHECK_TOLERANCE:
                tolerance = SELF_CHECK_TOLERANCE
                return f"{layout}: {part} differs from interp_torch by {error:.2e} (relative; tolerance {tolerance})"
    return None
