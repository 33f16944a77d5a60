"""Coarse-to-fine training: how many levels a training step keeps, as a pure function of the step.

Each step keeps a random prefix of the levels (the finer ones output zeros), so the network learns
to render from every prefix and a prefix of the grid is a usable lower level of detail (the
variable-bitrate streaming of VQAD; NGLOD trains its levels jointly the same way).
"""

from __future__ import annotations

import torch


def coarse_to_fine_levels(step: int, min_levels: int, num_levels: int) -> int:
    """Number of levels active at training ``step``, uniform in ``[min_levels, num_levels]``.

    Drawn from a generator seeded with ``step`` alone, so the same step always gives the same
    count (resumed runs repeat it exactly) and no global random state is touched.

    Raises:
        ValueError: ``step < 0`` or ``min_levels`` outside ``1..num_levels``.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if not 1 <= min_levels <= num_levels:
        raise ValueError(f"min_levels must be in 1..num_levels={num_levels}, got {min_levels}")
    generator = torch.Generator().manual_seed(step)
    return int(torch.randint(min_levels, num_levels + 1, (), generator=generator))
