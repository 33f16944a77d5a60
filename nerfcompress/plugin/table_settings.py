"""What a grid row holds, as settings: one dataclass mixin per table kind.

Each method's model config combines one of these with a model's grid settings, e.g.
``ShaciraNerfactoModelConfig(ShaciraTableSettings, GridNerfactoModelConfig)``, so nerfacto and
Instant-NGP share every table setting, its validation and ``build_table``. A mixin's
``__post_init__`` runs the model config's checks first (``super().__post_init__()``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from nerfcompress.grid import GridLayout
from nerfcompress.tables import FeatureTable, PlainTable, RoundingSchedule, ShaciraTable, VqadTable
from nerfcompress.tables.decoders import DECODER_KINDS, DecoderKind
from nerfcompress.tables.vqad import MAX_BITS


@dataclass
class PlainTableSettings:
    """Uncompressed baseline: float rows on the same layout as the compressed methods."""

    def build_table(self, layout: GridLayout) -> FeatureTable:
        return PlainTable(layout.num_rows, layout.features_per_level, level_rows=layout.level_rows)


@dataclass
class ShaciraTableSettings:
    """SHACIRA: integer latents, a decoder (per level or shared) and a learned rate term."""

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
    decoder: DecoderKind = "per-level"
    """per-level: a diagonal scale and shift per level (latent_dim must equal features_per_level), which
    cannot lose rank; shared: one linear latent_dim -> features map for every level (the paper's), which
    Adam drove to rank 1 at the demo budget (BENCHMARKS.md)."""
    decoder_init_scale: float = 0.05
    """The shared decoder's weights start uniform in [-s, s]; the per-level decoder's scales start at s."""
    rate_row_stride: int = 1
    """k: the training rate is an unbiased estimate from every k-th grid row (random offset), at 1/k of the cost."""
    rounded_rate: bool = True
    """In the hard-rounding phase, the training rate is that of the rounded latents (straight-through), the
    values the file stores, instead of the noisy latents the soft-rounding phase uses."""
    rate_weight_warmup_steps: int = 0
    """lambda grows linearly from 0 to rate_weight over these first steps (0: the full weight from the start)."""
    per_level_prior: bool = False
    """The training rate's prior has one density per level and latent, as the file codes each level under
    tables of its own (False: one density per latent for all levels, the paper's)."""

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
        if self.rate_weight_warmup_steps < 0:
            raise ValueError(f"rate_weight_warmup_steps must be >= 0, got {self.rate_weight_warmup_steps}")
        if self.decoder not in DECODER_KINDS:
            raise ValueError(f"decoder must be one of {', '.join(DECODER_KINDS)}, got {self.decoder!r}")
        if self.decoder == "per-level" and self.latent_dim != self.features_per_level:
            raise ValueError(
                f"decoder 'per-level' needs latent_dim == features_per_level ({self.features_per_level}), "
                f"got latent_dim {self.latent_dim}; for other latent dims set --pipeline.model.decoder shared"
            )
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
            decoder=self.decoder,
            decoder_init_scale=self.decoder_init_scale,
            schedule=self.rounding_schedule(),
            level_rows=layout.level_rows,
            rate_row_stride=self.rate_row_stride,
            rounded_rate=self.rounded_rate,
            per_level_prior=self.per_level_prior,
        )

    def rate_loss_weight(self, step: Optional[int] = None) -> float:
        """lambda, ramped linearly from 0 over the first ``rate_weight_warmup_steps`` steps."""
        if step is None or self.rate_weight_warmup_steps == 0:
            return self.rate_weight
        return self.rate_weight * min(1.0, step / self.rate_weight_warmup_steps)


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
    rate_weight: float = 0.0
    """lambda of an index-entropy rate loss, in bits per grid row (entropy-constrained VQ: rows move to their
    level's popular codes, so the range-coded indices shrink); 0: the paper's VQAD, no rate term."""
    coarse_to_fine_joint_weight: float = 0.25
    """Joint coarse-to-fine: the weight of a prefix-rendered ray's colour loss against a ray of the whole
    render (GridModelSettings). VQAD's own: on lego100's val views (seed 42, 800 steps, a quarter of the
    rays) 1 cost the whole file 0.69 dB against training without coarse-to-fine, 0.25 cost 0.04 dB with
    the first level of detail as good (18.8 dB) (BENCHMARKS.md, "Streaming")."""

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
        if not self.rate_weight >= 0:
            raise ValueError(f"rate_weight (lambda) must be >= 0, got {self.rate_weight}")

    def build_table(self, layout: GridLayout) -> FeatureTable:
        return VqadTable(
            layout.level_rows,
            layout.features_per_level,
            bits=self.bits,
            codebook_init_scale=self.codebook_init_scale,
            logit_init_scale=self.logit_init_scale,
            fixed_indices=self.fixed_indices,
        )

    def rate_loss_weight(self, step: Optional[int] = None) -> float:
        return self.rate_weight
