"""What a grid row holds, as settings: one dataclass mixin per table kind.

Each method's model config combines one of these with a model's grid settings, e.g.
``ShaciraNerfactoModelConfig(ShaciraTableSettings, GridNerfactoModelConfig)``, so nerfacto and
Instant-NGP share every table setting, its validation and ``build_table``. A mixin's
``__post_init__`` runs the model config's checks first (``super().__post_init__()``).
"""

from __future__ import annotations

from dataclasses import dataclass

from nerfcompress.grid import GridLayout
from nerfcompress.tables import FeatureTable, PlainTable, RoundingSchedule, ShaciraTable, VqadTable
from nerfcompress.tables.vqad import MAX_BITS


@dataclass
class PlainTableSettings:
    """Uncompressed baseline: float rows on the same layout as the compressed methods."""

    def build_table(self, layout: GridLayout) -> FeatureTable:
        return PlainTable(layout.num_rows, layout.features_per_level, level_rows=layout.level_rows)


@dataclass
class ShaciraTableSettings:
    """SHACIRA: integer latents, a shared linear decoder and a learned rate term."""

    latent_dim: int = 2
    """Latents per grid row (D); the decoder maps D -> features_per_level."""
    rate_weight: float = 1e-3
    """lambda: weight of the rate loss, in units of bits per grid row."""
    temperature_start: float = 1.0
    """Soft-rounding temperature at anneal_start_step."""
    temperature_end: float = 0.05
    """Soft-rounding temperature at anneal_end_step, after which rounding is hard (straight-through)."""
    anneal_start_step: int = 0
    """Step at which the temperature starts to decay."""
    anneal_end_step: int = 24000
    """Step at which soft rounding ends and hard rounding with a straight-through estimator begins."""
    latent_init_scale: float = 0.5
    """Latents start uniform in [-s, s]."""
    decoder_init_scale: float = 0.05
    """Decoder weights start uniform in [-s, s]."""
    rate_row_stride: int = 1
    """k: the training rate is an unbiased estimate from every k-th grid row (random offset), at 1/k of the cost."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.latent_dim <= 8:
            raise ValueError(f"latent_dim must be in [1, 8], got {self.latent_dim}")
        if not self.rate_weight >= 0:
            raise ValueError(f"rate_weight (lambda) must be >= 0, got {self.rate_weight}")
        if not self.latent_init_scale >= 0:
            raise ValueError(f"latent_init_scale must be >= 0, got {self.latent_init_scale}")
        if not 1 <= self.rate_row_stride <= 64:
            raise ValueError(f"rate_row_stride must be in [1, 64], got {self.rate_row_stride}")
        self.rounding_schedule()  # validates the temperature schedule

    def rounding_schedule(self) -> RoundingSchedule:
        return RoundingSchedule(
            temperature_start=self.temperature_start,
            temperature_end=self.temperature_end,
            anneal_start_step=self.anneal_start_step,
            anneal_end_step=self.anneal_end_step,
        )

    def build_table(self, layout: GridLayout) -> FeatureTable:
        return ShaciraTable(
            layout.num_rows,
            layout.features_per_level,
            latent_dim=self.latent_dim,
            latent_init_scale=self.latent_init_scale,
            decoder_init_scale=self.decoder_init_scale,
            schedule=self.rounding_schedule(),
            level_rows=layout.level_rows,
            rate_row_stride=self.rate_row_stride,
        )

    def rate_loss_weight(self) -> float:
        return self.rate_weight


@dataclass
class VqadTableSettings:
    """VQAD: a b-bit codebook index per grid row and one learned codebook per level."""

    bits: int = 4
    """Index width b (1..8); each level's codebook has 2**b entries of features_per_level floats."""
    codebook_init_scale: float = 0.01
    """Codebook entries start normal with this standard deviation (the reference's feature_std)."""
    logit_init_scale: float = 0.01
    """Soft-index logits start normal with this standard deviation (the reference's feature_std)."""
    fixed_indices: bool = False
    """Keep only the uint8 indices, not the logits (2**bits x smaller, indices frozen); ns-compress import sets it."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 1 <= self.bits <= MAX_BITS:
            raise ValueError(f"bits must be an int in 1..{MAX_BITS} (codebook size 2..256), got {self.bits!r}")
        if not self.codebook_init_scale >= 0:
            raise ValueError(f"codebook_init_scale must be >= 0, got {self.codebook_init_scale}")
        if not self.logit_init_scale >= 0:
            raise ValueError(f"logit_init_scale must be >= 0, got {self.logit_init_scale}")
        if not isinstance(self.fixed_indices, bool):
            raise ValueError(f"fixed_indices must be a bool, got {self.fixed_indices!r}")

    def build_table(self, layout: GridLayout) -> FeatureTable:
        return VqadTable(
            layout.level_rows,
            layout.features_per_level,
            bits=self.bits,
            codebook_init_scale=self.codebook_init_scale,
            logit_init_scale=self.logit_init_scale,
            fixed_indices=self.fixed_indices,
        )
