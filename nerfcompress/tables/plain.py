"""PlainTable: float rows, the uncompressed baseline."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from nerfcompress.tables.base import FeatureTable


class PlainTable(FeatureTable):
    """One float feature vector per grid row, as in instant-NGP / nerfacto.

    Args:
        num_rows: total rows of the grid.
        num_features: features per row ``F``.
        init_scale: rows start uniform in ``[-init_scale, init_scale]`` (tiny-cuda-nn's default).
        level_rows: rows of each level (``GridLayout.level_rows``), summing to ``num_rows``;
            the file stores each level in its own section. None: one level.
    """

    def __init__(
        self, num_rows: int, num_features: int, init_scale: float = 1e-4, level_rows: Optional[Sequence[int]] = None
    ) -> None:
        super().__init__(num_rows, num_features, level_rows)
        if init_scale < 0:
            raise ValueError(f"init_scale must be >= 0, got {init_scale}")
        self.rows = nn.Parameter(torch.empty(num_rows, num_features).uniform_(-init_scale, init_scale))  # [rows, F]

    def decode(self) -> Tensor:
        return self.rows

    def forward(self) -> Tensor:  # no decoding work, nothing to cache
        return self.rows

    def size_estimate_bits(self) -> float:
        """fp16 storage of every row."""
        return 16.0 * self.rows.numel()
