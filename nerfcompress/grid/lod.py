"""Coarse-to-fine training: how many levels a training step keeps, as a pure function of the step.

Each step keeps a random prefix of the levels (the finer ones output zeros), so the network learns
to render from every prefix and a prefix of the grid is a usable lower level of detail (the
variable-bitrate streaming of VQAD; NGLOD trains its levels jointly the same way).
"""

from __future__ import annotations

from typing import Optional

import torch


def coarse_to_fine_levels(
    step: int, min_levels: int, num_levels: int, full_fraction: float = 0.0, last_step: Optional[int] = None
) -> int:
    """Number of levels active at training ``step``: all of them with probability ``full_fraction``,
    otherwise uniform in ``[min_levels, num_levels]``; all of them after ``last_step`` (None: never).

    Uniform counts alone train the finest level on only ``1 / (num_levels - min_levels + 1)`` of the
    steps; ``full_fraction`` gives the whole grid (the full file's quality) a share of its own.

    Drawn from a generator seeded with ``step`` alone, so the same step always gives the same
    count (resumed runs repeat it exactly) and no global random state is touched.

    Raises:
        ValueError: ``step < 0``, ``min_levels`` outside ``1..num_levels`` or ``full_fraction``
            outside ``[0, 1]``.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if not 1 <= min_levels <= num_levels:
        raise ValueError(f"min_levels must be in 1..num_levels={num_levels}, got {min_levels}")
    if not 0.0 <= full_fraction <= 1.0:
        raise ValueError(f"full_fraction must be in [0, 1], got {full_fraction}")
    if last_step is not None and step > last_step:
        return num_levels
    generator = torch.Generator().manual_seed(step)
    levels = int(torch.randint(min_levels, num_levels + 1, (), generator=generator))
    if full_fraction > 0.0 and float(torch.rand((), generator=generator)) < full_fraction:
        return num_levels
    return levels


def joint_prefix_levels(step: int, min_levels: int, num_levels: int, last_step: Optional[int] = None) -> Optional[int]:
    """Level count of the coarser prefix that joint coarse-to-fine renders beside the whole grid at
    training ``step``: uniform in ``[min_levels, num_levels - 1]``, drawn like
    :func:`coarse_to_fine_levels` (seeded with ``step``); None after ``last_step`` (None: never).

    Raises:
        ValueError: ``step < 0`` or ``min_levels`` outside ``1..num_levels - 1`` (no coarser prefix).
    """
    if not 1 <= min_levels < num_levels:
        raise ValueError(
            f"min_levels must be in 1..num_levels - 1 = {num_levels - 1} (a coarser prefix), got {min_levels}"
        )
    if last_step is not None and step > last_step >= 0:
        return None
    return coarse_to_fine_levels(step, min_levels, num_levels - 1)  # it refuses step < 0
