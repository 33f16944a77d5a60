"""Which interpolation backend runs: one setting (``grid_backend``), resolved once per model.

``torch`` (:func:`~nerfcompress.grid.interp.interp_torch`) runs everywhere; ``triton``
(:func:`~nerfcompress.grid.interp_triton.interp_triton`) needs a CUDA device and Triton, or
Triton's CPU interpreter (``TRITON_INTERPRET=1``, for tests); ``tcnn``
(:func:`~nerfcompress.grid.interp_tcnn.interp_tcnn`) needs a CUDA device and ``tinycudann`` and
must pass its start-up self-check. ``auto`` never fails: Triton on CUDA when it imports, else
tcnn on CUDA when it imports and passes the check, else torch. The native modules are imported
only when chosen, so CPU paths never import tinycudann (nor define Triton kernels).
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from nerfcompress.grid.interp import interp_torch
from nerfcompress.grid.layout import GridLayout

GRID_BACKENDS = ("auto", "torch", "triton", "tcnn")
"""Values of the ``grid_backend`` setting."""

Interpolate = Callable[..., torch.Tensor]
"""``(layout, table, x, num_active_levels=None) -> [*bs, L * F]``, the signature of every backend."""


class GridBackendUnavailable(ValueError):
    """The backend named by ``grid_backend`` cannot run on this machine."""


@dataclass(frozen=True)
class GridBackend:
    """A resolved backend: its name, its function and why it was chosen (for the log)."""

    name: str
    interpolate: Interpolate
    reason: str


def triton_interpreter_on() -> bool:
    """Whether Triton kernels run in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _cuda_missing(device: torch.device) -> Optional[str]:
    if device.type != "cuda":
        return f"a CUDA device (this model runs on {device})"
    if not torch.cuda.is_available():
        return "a CUDA device (torch.cuda.is_available() is False)"
    return None


def missing_for_triton(device: torch.device) -> Optional[str]:
    """What the Triton backend lacks on ``device``; None if it can run."""
    if importlib.util.find_spec("triton") is None:
        return "the triton package (pip install triton)"
    if triton_interpreter_on():
        return None
    return _cuda_missing(device)


def missing_for_tcnn(device: torch.device) -> Optional[str]:
    """What the tcnn backend lacks on ``device`` (the self-check aside); None if it can run."""
    if importlib.util.find_spec("tinycudann") is None:
        return "the tinycudann package (tiny-cuda-nn's PyTorch bindings, built from its repository)"
    return _cuda_missing(device)


def missing_package(requested: str) -> Optional[str]:
    """The package ``requested`` needs that is not installed; None if there is none to lack.

    Device-independent, so a config can check it when it is built.

    Raises:
        ValueError: ``requested`` is not one of :data:`GRID_BACKENDS`.
    """
    if requested not in GRID_BACKENDS:
        raise ValueError(f"grid_backend must be one of {', '.join(GRID_BACKENDS)}, found {requested!r}")
    package = {"triton": "triton", "tcnn": "tinycudann"}.get(requested)
    if package is None or importlib.util.find_spec(package) is not None:
        return None
    return package


def _triton() -> Interpolate:
    from nerfcompress.grid.interp_triton import interp_triton

    return interp_triton


def _checked_tcnn(layouts: Sequence[GridLayout], device: torch.device) -> tuple[Optional[Interpolate], str]:
    """``(interp_tcnn, "")`` if tcnn passes its self-check, else ``(None, what differs)``."""
    from nerfcompress.grid.interp_tcnn import interp_tcnn, tcnn_mismatch

    mismatch = tcnn_mismatch(layouts, device)
    return (interp_tcnn, "") if mismatch is None else (None, mismatch)


def select_grid_backend(requested: str, device: torch.device | str, layouts: Sequence[GridLayout]) -> GridBackend:
    """Resolves the ``grid_backend`` setting for a model on ``device``.

    Args:
        requested: one of :data:`GRID_BACKENDS`.
        device: where the model runs.
        layouts: the model's grid layouts (for tcnn's self-check).

    Returns:
        The backend to use. ``tcnn`` that fails its self-check falls back (Triton if it can run,
        else torch) with one warning naming the mismatch.

    Raises:
        GridBackendUnavailable: ``triton`` or ``tcnn`` was asked for and what it needs is missing;
            the message names the setting and what is missing. ``auto`` never raises.
        ValueError: ``requested`` is not one of :data:`GRID_BACKENDS`.
    """
    missing_package(requested)  # validates the name
    device = torch.device(device)
    if requested == "torch":
        return GridBackend("torch", interp_torch, "grid_backend=torch")
    if requested in ("triton", "tcnn"):
        missing = missing_for_triton(device) if requested == "triton" else missing_for_tcnn(device)
        if missing is not None:
            raise GridBackendUnavailable(
                f"grid_backend={requested} needs {missing}; set grid_backend to auto (picks what this machine has) "
                "or torch (--pipeline.model.grid-backend auto)"
            )
    if requested == "triton":
        where = "Triton's CPU interpreter" if device.type != "cuda" else str(device)
        return GridBackend("triton", _triton(), f"grid_backend=triton on {where}")
    triton_runs = device.type == "cuda" and missing_for_triton(device) is None
    if requested == "auto" and triton_runs:
        return GridBackend("triton", _triton(), f"grid_backend=auto: Triton on {device}")
    if requested == "tcnn" or missing_for_tcnn(device) is None:
        interpolate, mismatch = _checked_tcnn(layouts, device)
        if interpolate is not None:
            return GridBackend("tcnn", interpolate, f"grid_backend={requested}: tiny-cuda-nn passed its self-check")
        fallback = GridBackend("triton", _triton(), "") if triton_runs else GridBackend("torch", interp_torch, "")
        warnings.warn(
            f"grid_backend={requested}: tiny-cuda-nn does not match interp_torch ({mismatch}); "
            f"falling back to {fallback.name}",
            stacklevel=2,
        )
        return GridBackend(fallback.name, fallback.interpolate, f"grid_backend={requested}: tcnn failed its self-check")
    return GridBackend("torch", interp_torch, f"grid_backend=auto: no CUDA device with Triton or tcnn ({device})")
