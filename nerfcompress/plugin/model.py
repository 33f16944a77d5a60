"""nerfacto whose main-field and proposal-network grids are FeatureTables on the tcnn layout.

One model class serves every method; the config subclass decides what a grid row holds
(``build_table``): float rows for the uncompressed baseline, SHACIRA latents, VQAD indices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Type

import torch
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.engine.optimizers import Optimizers
from nerfstudio.field_components.mlp import MLP
from nerfstudio.models.nerfacto import NerfactoModel, NerfactoModelConfig
from nerfstudio.utils import writer
from nerfstudio.viewer.viewer_elements import ViewerText
from torch import Tensor, nn

from nerfcompress.grid import GridLayout, coarse_to_fine_levels
from nerfcompress.plugin.compat import drop_unavailable_lpips, lazy_lpips_in_nerfacto
from nerfcompress.plugin.encoding import GridEncoding
from nerfcompress.plugin.file_layout import FileContext, file_size_bytes, model_file
from nerfcompress.tables import FeatureTable, PlainTable, RoundingSchedule, ShaciraTable, VqadTable
from nerfcompress.tables.decoders import DECODER_KINDS, DecoderKind
from nerfcompress.tables.vqad import MAX_BITS

# nerfacto's HashMLPDensityField defaults, used where a proposal_net_args entry omits a key.
_PROPOSAL_DEFAULTS = {
    "num_levels": 8,
    "max_res": 1024,
    "base_res": 16,
    "log2_hashmap_size": 18,
    "features_per_level": 2,
}


@dataclass
class GridNerfactoModelConfig(NerfactoModelConfig):
    """nerfacto on FeatureTable grids. Subclasses choose the table (``build_table``)."""

    _target: Type = field(default_factory=lambda: GridNerfactoModel)
    implementation: str = "torch"
    """MLP backend; torch keeps weights portable for export (tcnn pads its weight blobs)."""
    size_log_interval: int = 100
    """Steps between logging the size of the file an export would write (codes every grid once)."""
    proposal_log2_hashmap_size: Optional[int] = None
    """If set, replaces log2_hashmap_size of every proposal grid (handy for small CPU runs)."""
    coarse_to_fine_min_levels: Optional[int] = None
    """Coarse-to-fine training: each step keeps a random number of the main grid's levels in
    [min, num_levels] and zeroes the finer ones, so that a prefix of the levels is a usable lower
    level of detail (evaluation uses all). None = off."""
    rate_follows_distortion: bool = True
    """Count a proposal grid's rate only on the steps on which nerfacto's proposal sampler trains it
    (with gradients), so that lambda weighs its rate against its distortion as for the main grid."""
    coarse_to_fine_proposals: bool = False
    """Coarse-to-fine also truncates the proposal grids to the drawn level count (capped at their own
    levels), so that a prefix of the file cut at level k, which cuts every grid, is a trained model."""
    active_levels: Optional[int] = None
    """Evaluation renders only the coarsest N levels of every grid (finer levels output zeros; a
    grid with fewer levels keeps all of its own). ns-compress import sets it when it decodes a file
    prefix or --max-levels; training ignores it. None = all levels."""

    def __post_init__(self) -> None:
        if self.size_log_interval < 1:
            raise ValueError(f"size_log_interval must be >= 1, got {self.size_log_interval}")
        min_levels = self.coarse_to_fine_min_levels
        if min_levels is not None and not 1 <= min_levels <= self.num_levels:
            raise ValueError(
                f"coarse_to_fine_min_levels must be None or in 1..num_levels={self.num_levels}, got {min_levels}"
            )
        for name, layout_args in self.grid_layout_args():
            if not 4 <= layout_args["log2_hashmap_size"] <= 30:
                raise ValueError(
                    f"{name}: log2_hashmap_size must be in [4, 30] (hash table size 2**4 .. 2**30), "
                    f"got {layout_args['log2_hashmap_size']}"
                )
            try:
                grid_layout(layout_args)
            except ValueError as err:
                raise ValueError(f"{name}: {err}") from err
        most_levels = max(args["num_levels"] for _, args in self.grid_layout_args())
        levels = self.active_levels
        if levels is not None and (
            isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= most_levels
        ):
            raise ValueError(
                f"active_levels must be None or an int in 1..{most_levels} (the most of any grid), got {levels!r}"
            )

    def grid_layout_args(self) -> List[Tuple[str, dict]]:
        """(config name, layout arguments) of the main grid and each proposal grid."""
        main = {
            "num_levels": self.num_levels,
            "base_res": self.base_res,
            "max_res": self.max_res,
            "log2_hashmap_size": self.log2_hashmap_size,
            "features_per_level": self.features_per_level,
        }
        out = [("main field grid", main)]
        for i, args in enumerate(self.proposal_net_args_list):
            merged = {k: args.get(k, default) for k, default in _PROPOSAL_DEFAULTS.items()}
            if self.proposal_log2_hashmap_size is not None:
                merged["log2_hashmap_size"] = self.proposal_log2_hashmap_size
            out.append((f"proposal_net_args_list[{i}]", merged))
        return out

    def build_table(self, layout: GridLayout) -> FeatureTable:
        """The table that stores this grid's rows."""
        raise NotImplementedError

    def rate_loss_weight(self, step: Optional[int] = None) -> float:
        """lambda of the rate loss at ``step`` (None: its final value); 0 for tables without a learned rate."""
        return 0.0


def grid_layout(args: dict) -> GridLayout:
    """3D tcnn layout from nerfacto-style arguments (base_res, max_res, num_levels, ...)."""
    return GridLayout.from_resolution_range(
        num_dims=3,
        num_levels=args["num_levels"],
        min_resolution=args["base_res"],
        max_resolution=args["max_res"],
        log2_hashmap_size=args["log2_hashmap_size"],
        features_per_level=args["features_per_level"],
    )


@dataclass
class PlainNerfactoModelConfig(GridNerfactoModelConfig):
    """Uncompressed baseline: float rows on the same layout as the compressed methods."""

    def build_table(self, layout: GridLayout) -> FeatureTable:
        return PlainTable(layout.num_rows, layout.features_per_level, level_rows=layout.level_rows)


@dataclass
class ShaciraNerfactoModelConfig(GridNerfactoModelConfig):
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
        )

    def rate_loss_weight(self, step: Optional[int] = None) -> float:
        """lambda, ramped linearly from 0 over the first ``rate_weight_warmup_steps`` steps."""
        if step is None or self.rate_weight_warmup_steps == 0:
            return self.rate_weight
        return self.rate_weight * min(1.0, step / self.rate_weight_warmup_steps)


@dataclass
class VqadNerfactoModelConfig(GridNerfactoModelConfig):
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


class GridNerfactoModel(NerfactoModel):
    """nerfacto with every hash grid replaced by a :class:`GridEncoding` over a FeatureTable."""

    config: GridNerfactoModelConfig
    file_context: Optional[FileContext] = None
    """What the file holds besides the model (method, dataparser, cameras); set by the pipeline
    (:class:`~nerfcompress.plugin.pipeline.GridPipeline`) or, in training, by the callbacks."""
    step: int = 0
    """The model's step: the current training step (the schedules', set by :meth:`set_step`) or the
    loaded checkpoint's; a file of the model records it."""
    _size_cache: Optional[Tuple[int, Dict[str, int]]] = None  # (step, estimated_size_bytes())

    def populate_modules(self) -> None:
        with lazy_lpips_in_nerfacto():
            super().populate_modules()
        args = self.config.grid_layout_args()
        main_encoding = GridEncoding(grid_layout(args[0][1]), self.config.build_table(grid_layout(args[0][1])))
        self.field.mlp_base = nn.Sequential(
            main_encoding,
            MLP(
                in_dim=main_encoding.get_out_dim(),
                num_layers=2,  # NerfactoField's default
                layer_width=self.config.hidden_dim,
                out_dim=1 + self.field.geo_feat_dim,
                activation=nn.ReLU(),
                out_activation=None,
                implementation="torch",
            ),
        )
        for network, (_, layout_args) in zip(self.proposal_networks, args[1:], strict=True):
            layout = grid_layout(layout_args)
            network.encoding = GridEncoding(layout, self.config.build_table(layout))
            if not network.use_linear:
                network.mlp_base = nn.Sequential(network.encoding, network.mlp_base[1])
        self.viewer_estimated_size = ViewerText(
            "Size of an export (MB)", default_value="not measured yet", disabled=True
        )

    def grid_encodings(self) -> List[GridEncoding]:
        """Main-field grid first, then the proposal grids."""
        return [self.field.mlp_base[0], *(net.encoding for net in self.proposal_networks)]

    def tables(self) -> List[FeatureTable]:
        return [encoding.table for encoding in self.grid_encodings()]

    def get_param_groups(self) -> Dict[str, list]:
        """nerfacto's groups without the grids, plus each table's groups.

        An optimizer group in which some table scales its learning rate
        (:meth:`FeatureTable.learning_rate_scales`) holds one torch parameter group per table,
        ``{"params": [...], "table": index in tables()}``, so that each table's rate can be set
        on its own; the other groups are flat parameter lists, as nerfstudio expects.
        """
        groups = super().get_param_groups()
        scaled = self.learning_rate_scaled_groups()
        table_groups: Dict[str, list] = {}
        table_param_ids = set()
        for index, table in enumerate(self.tables()):
            for name, params in table.parameter_groups().items():
                table_param_ids |= {id(p) for p in params}
                entry = [{"params": params, "table": index}] if name in scaled else params
                table_groups.setdefault(name, []).extend(entry)
        for name in ("proposal_networks", "fields"):
            groups[name] = [p for p in groups[name] if id(p) not in table_param_ids]
        groups.update(table_groups)
        return groups

    def learning_rate_scaled_groups(self) -> List[str]:
        """Optimizer groups in which at least one table scales its learning rate."""
        return sorted({name for table in self.tables() for name in table.learning_rate_scales()})

    def apply_learning_rate_scales(self, optimizers: Optimizers, step: int) -> None:
        """Sets each table's learning rate in the scaled groups to the scheduled rate times the
        table's current multiplier (a training callback, before every step).

        The scheduled rate is the group's scheduler's last rate (nerfstudio's schedulers compute
        it from the initial rate, so the multiplier never compounds) or, without a scheduler, the
        configured rate."""
        scales = [table.learning_rate_scales() for table in self.tables()]  # one norm per table
        for name in sorted({name for table_scales in scales for name in table_scales}):
            optimizer = optimizers.optimizers[name]
            scheduler = optimizers.schedulers.get(name)
            if scheduler is not None:
                scheduled = scheduler.get_last_lr()
            else:
                scheduled = [optimizers.config[name]["optimizer"].lr] * len(optimizer.param_groups)
            for group, rate in zip(optimizer.param_groups, scheduled, strict=True):
                group["lr"] = rate * scales[group["table"]].get(name, 1.0)

    def update_to_step(self, step: int) -> None:
        """Records the step of a loaded checkpoint (nerfstudio calls this when loading one)."""
        super().update_to_step(step)
        self.step = int(step)

    def set_step(self, step: int) -> None:
        """Applies the schedules at ``step``: every table's (SHACIRA's temperature), the
        coarse-to-fine level count of the main grid and the rate weight's warm-up."""
        self.step = int(step)
        for table in self.tables():
            table.set_step(step)
        if self.config.coarse_to_fine_min_levels is not None:
            main, *proposals = self.grid_encodings()
            levels = coarse_to_fine_levels(step, self.config.coarse_to_fine_min_levels, main.layout.num_levels)
            main.num_active_levels = levels
            if self.config.coarse_to_fine_proposals:
                for proposal in proposals:
                    proposal.num_active_levels = levels if levels < proposal.layout.num_levels else None

    def evaluation_levels(self) -> List[Optional[int]]:
        """Levels each grid renders in evaluation, in :meth:`grid_encodings` order: the config's
        ``active_levels`` capped at the grid's own level count; None means all."""
        levels = self.config.active_levels
        return [None if levels is None or levels >= e.layout.num_levels else levels for e in self.grid_encodings()]

    def train(self, mode: bool = True) -> "GridNerfactoModel":
        """Training renders every level (coarse-to-fine aside: the next ``set_step`` draws the
        main grid's count); evaluation renders :meth:`evaluation_levels`."""
        for encoding, levels in zip(self.grid_encodings(), self.evaluation_levels()):
            encoding.num_active_levels = None if mode else levels
        return super().train(mode)

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> List[TrainingCallback]:
        callbacks = super().get_training_callbacks(training_callback_attributes)
        callbacks.append(
            TrainingCallback(
                where_to_run=[TrainingCallbackLocation.BEFORE_TRAIN_ITERATION],
                update_every_num_iters=1,
                func=self.set_step,
            )
        )
        callbacks.append(
            TrainingCallback(
                where_to_run=[TrainingCallbackLocation.AFTER_TRAIN_ITERATION],
                update_every_num_iters=self.config.size_log_interval,
                func=self.log_estimated_size,
            )
        )
        pipeline, trainer = training_callback_attributes.pipeline, training_callback_attributes.trainer
        if self.file_context is None and pipeline is not None and trainer is not None:  # a run without GridPipeline
            self.file_context = FileContext.from_datamanager(
                trainer.config.method_name, pipeline.datamanager, pipeline.config.datamanager.dataparser
            )
        optimizers = training_callback_attributes.optimizers
        scaled_groups = self.learning_rate_scaled_groups()
        if optimizers is not None and scaled_groups:
            for name in scaled_groups:  # gradient clipping expects a flat list
                groups = optimizers.optimizers[name].param_groups
                optimizers.parameters[name] = [p for group in groups for p in group["params"]]
            callbacks.append(
                TrainingCallback(
                    where_to_run=[TrainingCallbackLocation.BEFORE_TRAIN_ITERATION],
                    update_every_num_iters=1,
                    func=self.apply_learning_rate_scales,
                    args=[optimizers],
                )
            )
        if trainer is not None:  # also log the size the finished model exports at
            last_step = getattr(trainer, "_start_step", 0) + trainer.config.max_num_iterations - 1
            callbacks.append(
                TrainingCallback(
                    where_to_run=[TrainingCallbackLocation.AFTER_TRAIN_ITERATION],
                    iters=(last_step,),
                    func=self.log_estimated_size,
                )
            )
        return callbacks

    def rate_encodings(self) -> List[GridEncoding]:
        """The grids whose rate this training step counts: those its distortion trains.

        nerfacto's proposal sampler runs the proposal networks without gradients on most steps
        (every other step at the start, every fifth after ``proposal_warmup``); their rate is
        counted only on the steps whose loss also trains them, so the rate's weight against
        their distortion is lambda, as for the main grid, and not lambda times the update
        interval. With ``rate_follows_distortion`` off, every grid's rate counts every step."""
        encodings = self.grid_encodings()
        if not self.config.rate_follows_distortion:
            return encodings
        return [encoding for encoding in encodings if encoding.received_gradients]

    def rate_bits(self) -> Tensor:
        """Differentiable rate in bits (scalar) of :meth:`rate_encodings` (zero if there are none)."""
        rates = [encoding.table.rate_bits() for encoding in self.rate_encodings()]
        return torch.stack(rates).sum() if rates else self.device_indicator_param.new_zeros(())

    def num_grid_rows(self) -> int:
        return sum(table.num_rows for table in self.tables())

    @torch.no_grad()
    def estimated_size_bytes(self, step: Optional[int] = None) -> Dict[str, int]:
        """Bytes of the file ``ns-compress export`` writes of this model, by part.

        The same layout as the exporter's (:func:`~nerfcompress.plugin.file_layout.model_file`,
        every grid really coded), counted without writing the file: ``grids`` (every grid
        section), ``networks``, ``metadata`` (header and cameras) and ``total``, framing
        included. Exact for an export of the checkpoint at ``step`` with the default codings
        (post-hoc codings aside). Costs one encode of every grid: 0.3 s for nerfacto's default
        grids on this CPU (BENCHMARKS.md).

        Args:
            step: the step the header records (None: :attr:`step`).

        Raises:
            RuntimeError: if the model has no :attr:`file_context` (it was not built by a
                GridPipeline, nor trained).
        """
        if self.file_context is None:
            raise RuntimeError(
                "the model does not know its run's cameras and dataparser: build it with GridPipelineConfig "
                "(every registered nerfcompress method does) or train it"
            )
        header, sections = model_file(self, self.file_context, self.step if step is None else step)
        return file_size_bytes(header, sections)

    def log_estimated_size(self, step: int) -> None:
        """Logs the size of the file an export at ``step`` writes to the writer (tensorboard) and the web viewer."""
        if self.file_context is None:
            return
        size = self.estimated_size_bytes(step)
        writer.put_scalar("export_size_MB", size["total"] / 1e6, step)
        writer.put_scalar("export_grid_size_MB", size["grids"] / 1e6, step)
        self.viewer_estimated_size.value = (
            f"{size['total'] / 1e6:.3f} MB total, {size['grids'] / 1e6:.3f} MB grids (step {step})"
        )

    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        metrics_dict = super().get_metrics_dict(outputs, batch)
        if self.training and self.config.rate_loss_weight() > 0:
            rate_bits = self.rate_bits()
            metrics_dict["rate_bits"] = rate_bits
            rows = sum(encoding.table.num_rows for encoding in self.rate_encodings())
            metrics_dict["bits_per_grid_row"] = rate_bits.detach() / rows
        if self.training:
            metrics_dict.update(self.tables()[0].training_state())
            active_levels = self.grid_encodings()[0].num_active_levels
            if active_levels is not None:
                metrics_dict["active_levels"] = float(active_levels)
        return metrics_dict

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        loss_dict = super().get_loss_dict(outputs, batch, metrics_dict)
        if metrics_dict is not None and "rate_bits" in metrics_dict:
            rate_per_row = metrics_dict["rate_bits"] / self.num_grid_rows()
            loss_dict["rate_loss"] = self.config.rate_loss_weight(self.step) * rate_per_row
        return loss_dict

    def get_image_metrics_and_images(
        self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]
    ) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        metrics_dict, images_dict = super().get_image_metrics_and_images(outputs, batch)
        metrics_dict = drop_unavailable_lpips(metrics_dict)
        if self.file_context is not None:
            size = self._size_at_step()
            metrics_dict["estimated_size_bytes"] = float(size["total"])
            metrics_dict["estimated_grid_size_bytes"] = float(size["grids"])
        return metrics_dict, images_dict

    def _size_at_step(self) -> Dict[str, int]:
        """:meth:`estimated_size_bytes` once per step (evaluation calls it for every image)."""
        cached = self._size_cache
        if cached is None or cached[0] != self.step:
            cached = self._size_cache = (self.step, self.estimated_size_bytes())
        return cached[1]
