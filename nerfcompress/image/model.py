"""The image model: a 2D multi-resolution grid over FeatureTables and a small synthesis MLP.

Rows are the stored rows of :class:`~nerfcompress.image.raster.RasterGrid` (those some pixel
reads), level 0 first. SHACIRA keeps one :class:`ShaciraTable` per level (its own decoder and
learned prior) or one for all levels (``per_level_prior=False``, the reference's choice); VQAD
keeps one :class:`VqadTable` with a codebook per level. With ``context_hidden`` set, one
:class:`~nerfcompress.entropy.context.ContextModel`, fitted after training, codes every dense
level's latents. The MLP maps a pixel's ``L * F``
interpolated features to its ``C`` channels in [0, 1].
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from nerfcompress.entropy.context import ContextModel
from nerfcompress.grid.interp import interp_torch
from nerfcompress.image.config import MAX_TABLE_ROWS, ImageModelConfig
from nerfcompress.image.raster import LevelPlan, RasterGrid, interp_raster, pixel_points
from nerfcompress.tables import FeatureTable, RoundingSchedule, ShaciraTable, VqadTable

IMAGE_DECODER_NORM_FLOOR = 0.01
"""Floor of a SHACIRA decoder's norm in the latents' learning-rate scale (at most x100). With
the table's default floor a level that the rate switched off (decoder weight 6e-5 after 500 of
1,200 steps, chelsea, lambda 0.03) learned at x10,000 and wrote 27 KB of noise: 1.75 bpp at
26.6 dB against 0.13 bpp at 26.6 dB with this floor (BENCHMARKS.md, "Images")."""


class Synthesis(nn.Module):
    """Per-pixel MLP ``[N, in] -> [N, C]``: ReLU hidden layers, linear output around 0.5.

    Args:
        in_features: ``L * F``.
        hidden: hidden widths.
        out_channels: ``C``.
    """

    def __init__(self, in_features: int, hidden: Sequence[int], out_channels: int) -> None:
        super().__init__()
        widths = [in_features, *hidden, out_channels]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        nn.init.constant_(self.layers[-1].bias, 0.5)

    def forward(self, features: Tensor) -> Tensor:
        for layer in self.layers[:-1]:
            features = torch.relu(layer(features))
        return self.layers[-1](features)

    def planes(self, features: Tensor) -> Tensor:
        """The same map on channel planes ``[in, N] -> [C, N]``: a raster's features arrive so
        (``[L * F, h, W]``), and ``weight @ planes`` forward and backward costs about half of
        :meth:`forward` on the transposed view (measured, 512 x 512 pixels, MLP 16-16, one CPU thread:
        0.069 against 0.131 s)."""
        for layer in self.layers[:-1]:
            features = torch.relu(torch.addmm(layer.bias[:, None], layer.weight, features))
        last = self.layers[-1]
        return torch.addmm(last.bias[:, None], last.weight, features)


def _build_tables(config: ImageModelConfig, grid: RasterGrid, schedule: RoundingSchedule) -> List[FeatureTable]:
    features, level_rows = config.features_per_level, grid.level_rows
    if config.method == "vqad":
        return [VqadTable(level_rows, features, bits=config.bits)]
    widths = grid.level_raster_widths if config.context_hidden else (None,) * len(level_rows)
    make = lambda rows, level_widths, base: ShaciraTable(  # noqa: E731
        sum(rows),
        features,
        latent_dim=config.latent_dim,
        latent_init_scale=0.0,
        decoder=config.decoder,
        decoder_init_scale=0.05,
        schedule=schedule,
        level_rows=rows,
        min_decoder_norm=IMAGE_DECODER_NORM_FLOOR,
        level_widths=level_widths,
        context_level_base=base,
    )
    if config.per_level_prior:
        return [make([rows], [width], level) for level, (rows, width) in enumerate(zip(level_rows, widths))]
    return [make(list(level_rows), widths, 0)]


def checked_grid(config: ImageModelConfig, height: int, width: int) -> RasterGrid:
    """The picture's grid.

    Raises:
        ValueError: the layout is out of range, or the grid would store more than
            ``MAX_TABLE_ROWS`` rows.
    """
    grid = RasterGrid(config.layout(height, width), height, width)
    if sum(grid.level_rows) > MAX_TABLE_ROWS:
        raise ValueError(
            f"the grid would hold {sum(grid.level_rows):,} rows, more than {MAX_TABLE_ROWS:,}; "
            "use fewer levels, a larger finest stride or a smaller hashmap"
        )
    return grid


class ImageModel(nn.Module):
    """Grid + tables + synthesis for one ``height x width x channels`` picture.

    Args:
        config: the model settings.
        height: picture rows ``H``.
        width: picture columns ``W``.
        channels: ``C`` in 1..4.
        schedule: SHACIRA's soft-rounding schedule (training only).

    Raises:
        ValueError: the grid is too large (more than ``MAX_TABLE_ROWS`` rows) or out of range.
    """

    def __init__(
        self,
        config: ImageModelConfig,
        height: int,
        width: int,
        channels: int,
        schedule: Optional[RoundingSchedule] = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.height, self.width, self.channels = int(height), int(width), int(channels)
        self.grid = checked_grid(config, self.height, self.width)
        self.tables = nn.ModuleList(_build_tables(config, self.grid, schedule or RoundingSchedule()))
        self.synthesis = Synthesis(self.grid.layout.output_dim, config.hidden, channels)
        self.context: Optional[ContextModel] = None
        if config.context_hidden:  # drawn from its own RNG state: training is the same with or without it
            with torch.random.fork_rng(devices=[]):
                self.context = ContextModel(config.context_hidden, config.num_levels)

    @property
    def num_pixels(self) -> int:
        return self.height * self.width

    def table(self) -> Tensor:
        """The decoded stored rows ``[rows, F]``, all tables concatenated."""
        parts = [table() for table in self.tables]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def set_step(self, step: int) -> None:
        for table in self.tables:
            table.set_step(step)

    def rate_bits(self) -> Tensor:
        """Differentiable rate of the grid's latents in bits under the tables' learned priors
        (zero for VQAD): what training weighs."""
        return sum(table.rate_bits() for table in self.tables)

    def without_context(self) -> "ImageModel":
        """A copy whose dense levels are coded under their own frequency tables, without the
        context model (the settings it records say so)."""
        plain = copy.deepcopy(self)
        plain.config = replace(self.config, context_hidden=())
        plain.context = None
        for table in plain.tables:
            if isinstance(table, ShaciraTable):
                table.level_widths = (None,) * len(table.level_rows)
        return plain

    def context_levels(self) -> List[Tuple[Tensor, int, int]]:
        """``(rounded latents [rows_l], raster width, context level)`` of every context-coded level."""
        return [level for table in self.tables for level in table.context_levels()]

    def context_bits(
        self,
        sample_latents: Optional[int] = None,
        seed: Optional[int] = None,
        levels: Optional[List[Tuple[Tensor, int, int]]] = None,
    ) -> Tensor:
        """The context model's code length of every context-coded level in bits, differentiable
        in the context model (zero without one); an estimate from about ``sample_latents`` latents
        drawn at random (the same ones for the same ``seed``) when there are more. ``levels``:
        :meth:`context_levels`, when the caller has them (they change only with the latents)."""
        levels = self.context_levels() if levels is None else levels
        bits = torch.zeros(())
        if self.context is None or not levels:
            return bits
        total = sum(len(values) for values, _, _ in levels)
        fraction = 1.0 if sample_latents is None or total <= sample_latents else sample_latents / total
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        for values, width, level in levels:
            positions = None
            if fraction < 1:
                positions = torch.randint(len(values), (max(1, round(len(values) * fraction)),), generator=generator)
            bits = bits + self.context.rate_bits(values, width, level, positions)
        return bits

    def render_raster(self, plan: List[LevelPlan], table: Optional[Tensor] = None) -> Tensor:
        """Channel planes ``[C, h * W]`` of the pixels a raster plan covers (row-major)."""
        table = self.table() if table is None else table
        features = interp_raster(table, plan)  # [1, L * F, h, W]
        return self.synthesis.planes(features.flatten(2)[0])

    def render_pixels(self, flat_indices: Tensor, table: Optional[Tensor] = None) -> Tensor:
        """Channels ``[N, C]`` of pixels at row-major indices ``int64 [N]`` (random batches)."""
        table = self.table() if table is None else table
        points = pixel_points(self.height, self.width, flat_indices).to(table.device)
        return self.synthesis(interp_torch(self.grid.layout, self.grid.layout_table(table), points))
