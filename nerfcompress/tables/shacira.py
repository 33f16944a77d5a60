"""ShaciraTable: quantised integer latents per row, one shared linear decoder, a learned prior.

SHACIRA (Girish et al., ICCV 2023). Each grid row stores ``D`` latents that are integers in the
exported file; a decoder ``R^D -> R^F`` shared by all levels turns them into features; a learned
factorised density per latent channel gives a differentiable rate that the loss penalises.
"""

from __future__ import annotations

import warnings
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from nerfcompress.entropy.coder import ChannelTables, empirical_tables
from nerfcompress.entropy.factorized import FactorizedPrior, knot_span_bound
from nerfcompress.tables.base import FeatureTable
from nerfcompress.tables.decoders import DecoderKind, build_decoder
from nerfcompress.tables.host_values import LaggedHostCopy, host_randint
from nerfcompress.tables.rounding import RoundingSchedule, hard_round_ste, soft_round_gumbel
from nerfcompress.tables.symbols import (
    CodingTablesPart,
    ContextPart,
    FloatPart,
    RangePart,
    SymbolLayout,
    TableSymbols,
    level_suffix,
)

MIN_DECODER_NORM = 1e-4
"""Default floor of the decoder norm in :meth:`ShaciraTable.learning_rate_scales` (no division by 0)."""

RATE_WINDOW_MARGIN = 4.0
"""Latent units the training rate's knot window extends past the latents' range as last read on
the host (one step late on CUDA, :class:`~nerfcompress.tables.host_values.LaggedHostCopy`). A latent
moves by about its learning rate per Adam step (under 0.2 at the defaults)."""


class ShaciraTable(FeatureTable):
    """Latent table with annealed soft rounding and a learned entropy model.

    Stored form (kind ``"shacira"``, setting ``latent_dim``): level ``l``'s section holds the
    level's decoder parameters (fp16) if the decoder is per level, its integer coding tables (one
    per channel, :meth:`coding_tables`), then its integer latents ``[rows_l, D]`` range-coded under
    them; a shared decoder's fp16 parameters are the shared section ``decoder``. So a level's
    section is all its level needs. The prior itself is not stored. A level given a raster
    width (``level_widths``, an image's dense level) stores its latents as a
    :class:`~nerfcompress.tables.symbols.ContextPart` instead, coded under the file's context
    model (fitted to the trained latents, :meth:`context_levels`); the training rate stays the prior's.

    Args:
        num_rows: total rows of the grid.
        num_features: decoded features per row ``F``.
        latent_dim: latents per row ``D`` (1 or 2 in the paper).
        latent_init_scale: latents start uniform in ``[-s, s]``.
        decoder: ``"shared"`` (one linear ``D -> F`` map for all levels, the paper's) or
            ``"per-level"`` (a diagonal affine map per level, ``D == F``); see
            :mod:`nerfcompress.tables.decoders`.
        decoder_init_scale: the shared decoder's weights start uniform in ``[-s, s]``; the
            per-level decoder's scales start at ``s``; biases and shifts at zero.
        prior_filters: hidden widths of the factorised density (Ballé et al. 2018).
        schedule: soft-rounding temperature schedule applied by :meth:`set_step` (default: the
            default :class:`RoundingSchedule`).
        level_rows: rows of each level (``GridLayout.level_rows``), summing to ``num_rows``;
            the file codes each level's latents as its own stream. None: one level.
        rate_row_stride: ``k >= 1``. In training, the rate is taken over every ``k``-th row from
            a random offset and multiplied by ``k``: an unbiased estimate of the full rate at
            ``1/k`` of its cost. 1: every row. Evaluation always counts every row.
        rounded_rate: in the hard-rounding phase, the training rate is that of the rounded
            latents (straight-through) instead of the noisy ones (see :meth:`rate_bits`).
        min_decoder_norm: floor of the decoder norm that divides the latents' learning rate, so
            the scale stays at most ``1 / min_decoder_norm`` when the rate term shrinks a decoder
            towards zero (see :meth:`learning_rate_scales`).
        level_widths: per level, the raster width of a dense 2D level whose latents the file's
            context model codes (its rows are row-major in rows of that width), or None for a
            level coded under its own tables. Needs ``latent_dim == 1``.
            None: no level is context-coded.
        context_level_base: the context model's index of this table's level 0 (level ``l`` is
            ``base + l``): its per-level offsets.
        per_level_prior: one density per level and latent channel (the prior's groups are the
            levels), as the file codes each level under tables of its own; False: one density per
            channel for all levels (the paper's).
    """

    def __init__(
        self,
        num_rows: int,
        num_features: int,
        latent_dim: int = 2,
        latent_init_scale: float = 0.5,
        decoder: DecoderKind = "shared",
        decoder_init_scale: float = 0.05,
        prior_filters: Sequence[int] = (3, 3, 3),
        schedule: Optional[RoundingSchedule] = None,
        level_rows: Optional[Sequence[int]] = None,
        rate_row_stride: int = 1,
        rounded_rate: bool = False,
        min_decoder_norm: float = MIN_DECODER_NORM,
        level_widths: Optional[Sequence[Optional[int]]] = None,
        context_level_base: int = 0,
        per_level_prior: bool = False,
    ) -> None:
        super().__init__(num_rows, num_features, level_rows)
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        if latent_init_scale < 0:
            raise ValueError(f"latent_init_scale must be >= 0, got {latent_init_scale}")
        if not 1 <= rate_row_stride <= num_rows:
            raise ValueError(f"rate_row_stride must be in [1, num_rows={num_rows}], got {rate_row_stride}")
        if not min_decoder_norm > 0:
            raise ValueError(f"min_decoder_norm must be > 0, got {min_decoder_norm}")
        self.latent_dim = int(latent_dim)
        self.level_widths = self._checked_widths(level_widths)
        self.context_level_base = int(context_level_base)
        self.min_decoder_norm = float(min_decoder_norm)
        self.rate_row_stride = int(rate_row_stride)
        self.rounded_rate = bool(rounded_rate)
        self.schedule = schedule if schedule is not None else RoundingSchedule()
        self.latents = nn.Parameter(  # [rows, D]
            torch.empty(num_rows, latent_dim).uniform_(-latent_init_scale, latent_init_scale)
        )
        self.decoder = build_decoder(decoder, latent_dim, num_features, self.level_rows, decoder_init_scale)
        self.prior = FactorizedPrior(
            latent_dim, filters=tuple(prior_filters), num_groups=self.num_levels if per_level_prior else 1
        )
        groups = self.level_of_rows() if per_level_prior else None  # int64 [rows]: the prior's group of every row
        self.register_buffer("level_of_row", groups, persistent=False)
        self.register_buffer("temperature", torch.tensor(self.schedule.temperature(0)))  # soft-rounding tau
        self.register_buffer("hard_rounding", torch.tensor(self.schedule.hard_rounding(0)))  # straight-through phase
        # Host mirrors of what the training step needs as Python values (reading a CUDA tensor
        # on the host waits for the GPU): the buffers' values, and statistics of the parameters
        # read by set_step (at once on CPU, a step late on CUDA).
        self._temperature = float(np.float32(self.schedule.temperature(0)))  # the float32 buffer's value
        self._hard_rounding = self.schedule.hard_rounding(0)
        self._observations = LaggedHostCopy()
        self._decoder_norm_seen = 0.0  # decoder_norm() as last read
        self._rate_knot_span = 0  # knot window of the training rate (FactorizedPrior.rate_bits)
        self._rate_window_warned = False
        self._observe(self._observations.read(self._statistics()))
        self._uniform: Optional[Tensor] = None  # the current training noise draw [rows, D]
        self._uniform_users: Set[str] = set()  # who has used it
        self.register_load_state_dict_post_hook(lambda module, _keys: module._mirror_loaded_state())

    def _checked_widths(self, widths) -> Tuple[Optional[int], ...]:
        if widths is None:
            return (None,) * len(self.level_rows)
        widths = tuple(None if width is None else int(width) for width in widths)
        if len(widths) != len(self.level_rows) or any(width is not None and width < 1 for width in widths):
            raise ValueError(
                f"level_widths {list(widths)} must give a width >= 1 or None for each of {len(self.level_rows)} levels"
            )
        if any(width is not None for width in widths) and self.latent_dim != 1:
            raise ValueError(f"context-coded levels need latent_dim 1, got {self.latent_dim}")
        return widths

    def _level_bounds(self) -> List[Tuple[int, int]]:
        ends = np.cumsum(self.level_rows).tolist()
        return list(zip([0, *ends[:-1]], ends))

    def set_step(self, step: int) -> None:
        """Sets the training-time quantiser from the schedule at ``step`` and refreshes the host
        copies of the decoder norm and the latents' range (without waiting for the GPU)."""
        self._temperature = float(np.float32(self.schedule.temperature(step)))  # the float32 buffer's value
        self._hard_rounding = self.schedule.hard_rounding(step)
        self.temperature.fill_(self._temperature)
        self.hard_rounding.fill_(self._hard_rounding)
        self._observe(self._observations.read(self._statistics()), lagged=self.latents.is_cuda)

    @torch.no_grad()
    def _statistics(self) -> Tensor:
        """``[smallest latent, largest latent, decoder norm]`` on the parameters' device."""
        smallest, largest = torch.aminmax(self.latents.detach())
        return torch.stack([smallest, largest, self.decoder.lattice_norm()])

    def _observe(self, statistics: Optional[List[float]], lagged: bool = False) -> None:
        """Updates the host copies from ``_statistics()`` as read on the host (None: nothing new).

        ``lagged``: the statistics are a step old, so the knot window in use during that step
        was computed before it; if they did not fit in it, warn (once)."""
        if statistics is None:
            return
        smallest, largest, norm = statistics
        needed = knot_span_bound(smallest, largest)
        if lagged and needed > self._rate_knot_span and not self._rate_window_warned:
            self._rate_window_warned = True
            warnings.warn(
                f"SHACIRA latents spread over {largest - smallest:.1f} units, beyond the training rate's knot window "
                f"({self._rate_knot_span} units, read a step late): the rate of the values past it was "
                "extrapolated for a step; the window follows the latents from now on",
                stacklevel=3,
            )
        self._decoder_norm_seen = norm
        self._rate_knot_span = knot_span_bound(smallest, largest, RATE_WINDOW_MARGIN)

    def _mirror_loaded_state(self) -> None:
        """After ``load_state_dict``: the mirrors from the loaded buffers and parameters."""
        self._temperature = float(self.temperature)
        self._hard_rounding = bool(self.hard_rounding)
        self._observe(self._statistics().double().cpu().tolist())

    def training_state(self) -> Dict[str, float]:
        """The rounding phase and the decoder norm as of the last :meth:`set_step` (host values:
        logging them never waits for the GPU)."""
        return {
            "shacira_temperature": self._temperature,
            "shacira_hard_rounding": float(self._hard_rounding),
            "shacira_decoder_norm": self._decoder_norm_seen,
        }

    def decoder_norm(self) -> float:
        """How far in feature space one unit step of the latents moves a row (the spacing of the
        quantisation lattice): the shared decoder's Frobenius norm, or the per-level decoder's
        root mean square over levels."""
        return float(self.decoder.lattice_norm())

    def quantized_latents(self) -> Tensor:
        """Latents as the decoder sees them ``[rows, D]``: integers at evaluation and in the
        straight-through phase, annealed soft rounding before that."""
        if not self.training:
            return torch.round(self.latents)
        if self._hard_rounding:
            return hard_round_ste(self.latents)
        return soft_round_gumbel(self.latents, self._temperature, self._training_uniform("rounding"))

    def _training_uniform(self, user: str) -> Tensor:
        """A U(0, 1) draw ``[rows, D]`` that the soft rounding and the rate of one step share.

        Each of the two estimators needs correctly distributed noise of its own, not noise
        independent of the other's, so one draw serves both and each gradient estimate stays
        unbiased. On CPU drawing is costly: at the demo settings the draws took about 12 ms of a
        270 ms training step before they were shared. A user that has already had the current
        draw gets a fresh one, so no estimator ever sees the same noise twice.
        """
        if self._uniform is None or user in self._uniform_users:
            self._uniform = torch.rand_like(self.latents)
            self._uniform_users = set()
        self._uniform_users.add(user)
        return self._uniform

    def clear_cache(self) -> None:
        """Drops the cached decoded table and the training noise draw."""
        super().clear_cache()
        self._uniform = None

    def integer_latents(self) -> Tensor:
        """The latents the file stores: ``int32 [rows, D]``."""
        return torch.round(self.latents.detach()).to(torch.int32)

    def decode(self) -> Tensor:
        """``[rows, F]`` = decoder(quantised latents)."""
        return self.decoder(self.quantized_latents())

    def rate_bits(self) -> Tensor:
        """Bits of the latents under the prior, scalar: in eval of the rounded latents; in
        training of the noisy latents (``latents + U(-1/2, 1/2)``), or, in the hard-rounding phase
        with ``rounded_rate``, of the rounded latents with a straight-through gradient, the values
        the file stores and the decoder sees.

        In training, an unbiased estimate from every ``rate_row_stride``-th row (random offset),
        over the knot window set by :meth:`set_step` (no host sync). The gradient reaches both the
        latents and the prior."""
        groups = self.level_of_row
        if not self.training:
            return self.prior.rate_bits(self.latents, groups=groups)
        stride, span = self.rate_row_stride, self._rate_knot_span
        start = host_randint(stride) if stride > 1 else 0  # every row is in the sample with probability 1/k
        if groups is not None:
            groups = groups[start::stride]
        if self.rounded_rate and self._hard_rounding:
            rounded = hard_round_ste(self.latents[start::stride])
            return stride * self.prior.code_length_bits(rounded, knot_span=span, groups=groups)
        uniform = self._training_uniform("rate")
        latents = self.latents[start::stride]
        return stride * self.prior.rate_bits(latents, uniform[start::stride], knot_span=span, groups=groups)

    def context_levels(self) -> List[Tuple[Tensor, int, int]]:
        """``(rounded latents [rows_l], raster width, context model level)`` of each
        context-coded level, as the file codes them."""
        if all(width is None for width in self.level_widths):
            return []
        values = torch.round(self.latents.detach())[:, 0]
        return [
            (values[a:b], width, self.context_level_base + level)
            for level, ((a, b), width) in enumerate(zip(self._level_bounds(), self.level_widths))
            if width is not None
        ]

    def parameter_groups(self) -> Dict[str, List[nn.Parameter]]:
        return {
            "latents": [self.latents],
            "grids": list(self.decoder.parameters()),
            "entropy": list(self.prior.parameters()),
        }

    def learning_rate_scales(self) -> Dict[str, float]:
        """The latents learn at the configured rate divided by :meth:`decoder_norm`.

        A latent moves by about the learning rate per Adam step whatever its gradient's scale, so
        the features it decodes to move by that times the decoder norm. SHACIRA's reference code
        (``scale_grid_lr: div``) divides the latents' rate by the norm, so that the features
        learn as fast as a float grid's at the same rate while the decoder sets the lattice.
        Without it the latents start 17 times slower than float rows (norm 0.058 at the default
        initialisation); the decoder grew instead (norm 1.2 after 800 demo steps) and 93 % of the
        main grid's latents stayed at 0 (measured, seed 45, BENCHMARKS.md).

        The norm is the one :meth:`set_step` last read (of this step on CPU, of the previous
        step on CUDA, where reading it at once would wait for the GPU), floored at
        ``min_decoder_norm``: a level that the rate term switches off has its decoder pulled to
        zero, and an unbounded scale then throws its latents around by hundreds of units per step
        (measured on an image level: scale 10,000 at weight 6e-5, 27 KB of noise in the file).
        """
        return {"latents": 1.0 / max(self._decoder_norm_seen, self.min_decoder_norm)}

    @staticmethod
    def coding_tables(latents: np.ndarray) -> ChannelTables:
        """The integer tables the file codes one level's ``latents`` (int32 ``[rows, D]``, rows >= 1)
        with: each channel's symbol frequencies at the count precision that costs the fewest bytes
        (:func:`~nerfcompress.entropy.coder.empirical_tables`).

        The learned prior only shapes the latents during training. Coding with it instead cost
        34 % more on lego100 (demo budget, per-level decoder, lambda 1e-2: the main grid's
        latents 94.7 KB under the prior's tables against 72.0 KB at their empirical entropy),
        because its masses are fitted to noisy continuous latents, not to the rounded ones."""
        return empirical_tables(latents)

    def storages(self) -> Tuple[str, ...]:
        return ("shacira",)

    def symbol_layout(self, storage: Optional[str] = None) -> SymbolLayout:
        self.check_storage(storage)
        dim = self.latent_dim
        parameters = dict(self.decoder.named_parameters())
        if self.decoder.per_level:  # [L, ...] each: level l's row goes with level l
            shared, decoder = {}, {name: FloatPart(tuple(p.shape[1:])) for name, p in parameters.items()}
        else:
            shared, decoder = {"decoder": {name: FloatPart(tuple(p.shape)) for name, p in parameters.items()}}, {}
        levels = tuple(
            {**decoder, "latents": ContextPart(rows, width, self.context_level_base + level)}
            if width is not None
            else {**decoder, "tables": CodingTablesPart(dim), "latents": RangePart(rows, dim, level_suffix(level))}
            for level, (rows, width) in enumerate(zip(self.level_rows, self.level_widths))
        )
        return SymbolLayout("shacira", {"latent_dim": dim}, shared, levels)

    @torch.no_grad()
    def to_symbols(self, storage: Optional[str] = None) -> TableSymbols:
        self.check_storage(storage)
        latents = self.integer_latents().cpu().numpy()  # int32 [rows, D]
        decoder = {name: p.detach().cpu().float().numpy() for name, p in self.decoder.named_parameters()}
        levels = np.split(latents, np.cumsum(self.level_rows)[:-1])
        per_level = self.decoder.per_level
        return TableSymbols(
            shared={} if per_level else {"decoder": decoder},
            levels=[
                {
                    **({name: values[level] for name, values in decoder.items()} if per_level else {}),
                    **(
                        {"tables": self.coding_tables(latents_l), "latents": latents_l}
                        if width is None
                        else {"latents": np.ascontiguousarray(latents_l[:, 0])}
                    ),
                }
                for level, (latents_l, width) in enumerate(zip(levels, self.level_widths))
            ],
        )

    @torch.no_grad()
    def from_symbols(self, symbols: TableSymbols, storage: Optional[str] = None) -> None:
        self.check_storage(storage)
        self.latents.zero_()  # levels not decoded stay zero
        offset = 0
        for values in symbols.levels:
            level = torch.from_numpy(values["latents"]).reshape(-1, self.latent_dim)
            self.latents[offset : offset + len(level)] = level.to(self.latents.dtype)
            offset += len(level)
        for name, param in self.decoder.named_parameters():
            if self.decoder.per_level:  # levels not decoded keep their parameters: their latents are zero
                for level, values in enumerate(symbols.levels):
                    param[level] = torch.from_numpy(values[name])
            else:
                param.copy_(torch.from_numpy(symbols.shared["decoder"][name]))
        self.clear_cache()
