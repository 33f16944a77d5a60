"""nerfstudio Encoding adapter: a multi-resolution grid whose rows come from a FeatureTable."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import torch
from jaxtyping import Float
from nerfstudio.field_components.encodings import Encoding
from torch import Tensor

from nerfcompress.grid import GridLayout, interp_torch
from nerfcompress.grid.backends import Interpolate, triton_interpreter_on
from nerfcompress.tables import FeatureTable


class GridEncoding(Encoding):
    """Drop-in replacement for nerfstudio's ``HashEncoding`` on the tiny-cuda-nn layout.

    The table is decoded once per forward (once per training step, since nerfacto calls each
    grid once per step) and cached in evaluation, then interpolated for all points by
    ``interpolate``, the backend the model selected (``grid_backend``; ``interp_torch`` until
    then). CPU points always go through ``interp_torch``, the twin of the CUDA backends, unless
    Triton's CPU interpreter is on.

    Args:
        layout: grid layout (levels, resolutions, rows per level).
        table: what the rows hold; ``table.num_rows`` must equal ``layout.num_rows``.
    """

    def __init__(self, layout: GridLayout, table: FeatureTable) -> None:
        super().__init__(in_dim=layout.num_dims)
        if table.num_rows != layout.num_rows or table.num_features != layout.features_per_level:
            raise ValueError(
                f"table is [{table.num_rows}, {table.num_features}] but the layout needs "
                f"[{layout.num_rows}, {layout.features_per_level}]"
            )
        self.layout = layout
        self.table = table
        self.num_active_levels: Optional[int] = None  # None: all levels (coarse-to-fine sets fewer)
        self.received_gradients = False  # whether the last forward ran with autograd on
        self.interpolate: Interpolate = interp_torch
        self.keeps_rows = False  # whether a forward keeps its rows for coarse_prefix_of_last_forward
        self._last_rows: Optional[Tensor] = None  # [num_rows, F], what the last forward decoded
        self._reused_rows: Optional[Tensor] = None  # set inside coarse_prefix_of_last_forward

    def get_out_dim(self) -> int:
        return self.layout.output_dim

    def forward(self, in_tensor: Float[Tensor, "*bs input_dim"]) -> Float[Tensor, "*bs output_dim"]:
        self.received_gradients = torch.is_grad_enabled()
        flat = in_tensor.reshape(-1, self.layout.num_dims)
        interpolate = self.interpolate
        if not flat.is_cuda and not triton_interpreter_on():
            interpolate = interp_torch
        rows = self._reused_rows if self._reused_rows is not None else self.table()
        if self.keeps_rows and self._reused_rows is None:
            self._last_rows = rows
        features = interpolate(self.layout, rows, flat, self.num_active_levels)
        return features.reshape(*in_tensor.shape[:-1], self.layout.output_dim)

    @contextmanager
    def coarse_prefix_of_last_forward(self, num_levels: int) -> Iterator[None]:
        """Within the block, forwards render only the coarsest ``num_levels`` levels (the finer ones
        output zeros), from the rows the last forward decoded: a second render in one training step
        (joint coarse-to-fine) neither decodes the table again nor gives its rows a second graph.
        The rows are released on exit.

        Raises:
            RuntimeError: if no forward kept its rows since the last block (``keeps_rows`` off).
        """
        if self._last_rows is None:
            raise RuntimeError(
                "coarse_prefix_of_last_forward reuses the rows of the last forward: set keeps_rows and run one first"
            )
        saved = self.num_active_levels
        self.num_active_levels, self._reused_rows = num_levels, self._last_rows
        try:
            yield
        finally:
            self.num_active_levels, self._reused_rows, self._last_rows = saved, None, None
