"""Offline-safe compatibility shims between nerfstudio 1.1.5 and current torch.

Two problems, one module:

* Checkpoints. torch >= 2.6 loads with ``weights_only=True`` by default, and
  nerfstudio 1.1.5 checkpoints hold ``numpy.float64`` learning rates: nerfstudio's
  ``ExponentialDecayScheduler`` / ``CosineDecayScheduler`` lambdas return numpy scalars
  (``np.exp``, ``np.cos``), ``LambdaLR`` writes ``base_lr * factor`` into each optimizer
  param group's ``"lr"`` and its own ``_last_lr``, and ``Trainer.save_checkpoint`` pickles
  both. ``allow_nerfstudio_checkpoint_globals()`` allowlists exactly the numpy globals those
  pickles reference; the weights-only check stays on.
* LPIPS. nerfacto's ``populate_modules()`` builds torchmetrics' LPIPS eagerly, which
  downloads torchvision's AlexNet weights. ``LazyLPIPS`` builds it on first use and only
  from weights already in the torch hub cache; otherwise LPIPS is skipped with one warning.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from typing import Dict, Iterator, Optional

import numpy as np
import torch
from torch import Tensor

ALEXNET_WEIGHTS_FILENAME = "alexnet-owt-7be5be79.pth"
"""File name of ``torchvision.models.AlexNet_Weights.IMAGENET1K_V1`` in the hub cache."""

ALEXNET_WEIGHTS_URL = f"https://download.pytorch.org/models/{ALEXNET_WEIGHTS_FILENAME}"
"""Where a user can fetch the AlexNet weights on a machine that has internet."""

_lpips_skip_warned = False
"""Whether the 'LPIPS skipped' warning was already issued in this process."""


def allow_nerfstudio_checkpoint_globals() -> None:
    """Allowlist the numpy globals in nerfstudio checkpoints for ``torch.load(weights_only=True)``.

    A pickled ``np.float64`` references the scalar reconstructor by the module name numpy
    had when the checkpoint was written: ``numpy.core.multiarray.scalar`` (numpy 1.x) or
    ``numpy._core.multiarray.scalar`` (numpy 2.x). torch matches a ``GLOBAL`` by that
    written name, so the reconstructor is registered under both names with torch's
    ``(obj, "qualified.name")`` form. ``numpy.dtype`` is called to rebuild the dtype and
    ``numpy.dtypes.Float64DType`` is the type torch checks before restoring the dtype's
    state. Nothing else is allowed and the weights-only check stays on. Idempotent: torch
    keeps the allowlist as a set.
    """
    scalar = np.float64(0.0).__reduce__()[0]  # the reconstructor under this numpy's name
    torch.serialization.add_safe_globals(
        [
            (scalar, "numpy.core.multiarray.scalar"),
            (scalar, "numpy._core.multiarray.scalar"),
            np.dtype,
            type(np.dtype(np.float64)),
        ]
    )


def alexnet_weights_path() -> str:
    """Returns where torchvision looks for the AlexNet weights that LPIPS needs.

    Returns:
        ``<torch hub dir>/checkpoints/alexnet-owt-7be5be79.pth`` (honours ``TORCH_HOME``).
    """
    return os.path.join(torch.hub.get_dir(), "checkpoints", ALEXNET_WEIGHTS_FILENAME)


def _warn_lpips_skipped(weights_path: str) -> None:
    """Warns once per process that LPIPS is skipped for lack of AlexNet weights."""
    global _lpips_skip_warned
    if _lpips_skip_warned:
        return
    _lpips_skip_warned = True
    warnings.warn(
        "LPIPS is skipped (reported as NaN and left out of the metrics) because torchvision's "
        f"AlexNet weights are not in the torch hub cache: expected {weights_path}. To enable LPIPS "
        f"offline, copy {ALEXNET_WEIGHTS_FILENAME} (from {ALEXNET_WEIGHTS_URL}) to that path.",
        stacklevel=3,
    )


class LazyLPIPS:
    """LPIPS (AlexNet) that is built on first use, only from weights already on disk.

    A plain callable, not an ``nn.Module``: nothing of it enters checkpoints or
    ``Model.state_dict()``. It never downloads. When the AlexNet weights file is missing from
    the torch hub cache it returns NaN and warns once per process.

    Args:
        normalize: Inputs are in ``[0, 1]`` (``True``, nerfacto's choice) or ``[-1, 1]``.
    """

    def __init__(self, normalize: bool = True) -> None:
        self.normalize = normalize
        self._metric: Optional[torch.nn.Module] = None
        self._available: Optional[bool] = None  # decided on the first call

    def __call__(self, preds: Tensor, target: Tensor) -> Tensor:
        """Computes LPIPS between two image batches.

        Args:
            preds: Images ``[B, 3, H, W]``.
            target: Images ``[B, 3, H, W]``.

        Returns:
            Scalar LPIPS on the inputs' device, or a NaN scalar when the weights are missing.
        """
        if self._available is None:
            weights_path = alexnet_weights_path()
            self._available = os.path.isfile(weights_path)
            if self._available:
                from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

                metric = LearnedPerceptualImagePatchSimilarity(normalize=self.normalize)
                self._metric = metric.to(preds.device)
            else:
                _warn_lpips_skipped(weights_path)
        if self._metric is None:
            return torch.tensor(float("nan"), device=preds.device)
        return self._metric(preds, target)


@contextlib.contextmanager
def lazy_lpips_in_nerfacto() -> Iterator[None]:
    """Makes nerfacto's ``populate_modules()`` build a ``LazyLPIPS`` instead of downloading.

    ``NerfactoModel.populate_modules()`` imports ``LearnedPerceptualImagePatchSimilarity``
    inside the method (``from torchmetrics.image.lpip import ...``), so the name is replaced
    in ``torchmetrics.image.lpip`` for the duration of the block and restored afterwards.

    Example:
        >>> with lazy_lpips_in_nerfacto():
        ...     super().populate_modules()
    """
    from unittest import mock

    import torchmetrics.image.lpip as lpip_module

    with mock.patch.object(lpip_module, "LearnedPerceptualImagePatchSimilarity", LazyLPIPS):
        yield


def drop_unavailable_lpips(metrics_dict: Dict[str, float]) -> Dict[str, float]:
    """Removes a NaN ``"lpips"`` entry (LPIPS skipped) from image metrics.

    Args:
        metrics_dict: Metrics from ``get_image_metrics_and_images()``.

    Returns:
        A new dict without ``"lpips"`` when its value is NaN; otherwise an equal copy.
    """
    return {k: v for k, v in metrics_dict.items() if not (k == "lpips" and math.isnan(float(v)))}
