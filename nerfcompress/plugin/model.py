"""nerfacto whose main-field and proposal-network grids are FeatureTables on the tcnn layout.

One model class serves every method; the config decides what a grid row holds (``build_table``,
from a table-settings mixin: float rows for the uncompressed baseline, SHACIRA latents, VQAD
indices). :class:`GridModel` (its settings: :mod:`nerfcompress.plugin.grid_settings`) holds what
every grid model shares (nerfacto here, Instant-NGP in :mod:`nerfcompress.plugin.instant_ngp`):
the tables, their schedules and optimizer groups, the rate (produced in the forward, so DDP sees
it), the size of its export (:mod:`nerfcompress.plugin.file_layout`) and the interpolation
backend (``grid_backend``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple, Type

import torch
from nerfstudio.cameras.rays import RaySamples
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.engine.optimizers import Optimizers
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.field_components.mlp import MLP
from nerfstudio.model_components.losses import scale_gradients_by_distance_squared
from nerfstudio.models.nerfacto import NerfactoModel, NerfactoModelConfig
from nerfstudio.utils import writer
from nerfstudio.utils.rich_utils import CONSOLE
from nerfstudio.viewer.viewer_elements import ViewerText
from torch import Tensor, nn

from nerfcompress.errors import BitstreamError
from nerfcompress.grid import coarse_to_fine_levels, joint_prefix_levels
from nerfcompress.grid.backends import GridBackend, select_grid_backend
from nerfcompress.plugin.compat import drop_unavailable_lpips, lazy_lpips_in_nerfacto
from nerfcompress.plugin.encoding import GridEncoding
from nerfcompress.plugin.file_layout import FileContext, file_size_bytes, model_file
from nerfcompress.plugin.grid_settings import GridModelSettings, grid_layout
from nerfcompress.plugin.table_settings import PlainTableSettings, ShaciraTableSettings, VqadTableSettings
from nerfcompress.tables import FeatureTable

# nerfacto's HashMLPDensityField defaults, used where a proposal_net_args entry omits a key.
_PROPOSAL_DEFAULTS = {
    "num_levels": 8,
    "max_res": 1024,
    "base_res": 16,
    "log2_hashmap_size": 18,
    "features_per_level": 2,
}


@dataclass
class GridNerfactoModelConfig(GridModelSettings, NerfactoModelConfig):
    """nerfacto on FeatureTable grids. The table-settings mixin chooses the table (``build_table``)."""

    _target: Type = field(default_factory=lambda: GridNerfactoModel)
    implementation: str = "torch"
    """MLP backend; torch keeps weights portable for export (tcnn pads its weight blobs)."""
    proposal_log2_hashmap_size: Optional[int] = None
    """If set, replaces log2_hashmap_size of every proposal grid (handy for small CPU runs)."""
    coarse_to_fine_joint_rays: float = 0.25
    """Coarse-to-fine trained jointly on this share of the batch's rays (GridModelSettings); 0: the step
    schedule. On lego100's val views (seed 42) it took the whole file's cost of coarse-to-fine from
    -0.56 / -0.69 dB (SHACIRA / VQAD test, the step schedule) to +0.43 / -0.04 dB (BENCHMARKS.md)."""

    def grid_layout_args(self) -> List[Tuple[str, dict]]:
        """(config name, layout arguments) of the main grid and each proposal grid."""
        main = self.main_grid_args()
        out = [("main field grid", main)]
        for i, args in enumerate(self.proposal_net_args_list):
            merged = {k: args.get(k, default) for k, default in _PROPOSAL_DEFAULTS.items()}
            if self.proposal_log2_hashmap_size is not None:
                merged["log2_hashmap_size"] = self.proposal_log2_hashmap_size
            out.append((f"proposal_net_args_list[{i}]", merged))
        return out


@dataclass
class PlainNerfactoModelConfig(PlainTableSettings, GridNerfactoModelConfig):
    """Uncompressed baseline on nerfacto: float rows on the same layout as the compressed methods."""


@dataclass
class ShaciraNerfactoModelConfig(ShaciraTableSettings, GridNerfactoModelConfig):
    """SHACIRA on nerfacto: integer latents, a decoder (per level or shared) and a learned rate term."""


@dataclass
class VqadNerfactoModelConfig(VqadTableSettings, GridNerfactoModelConfig):
    """VQAD on nerfacto: a b-bit codebook index per grid row and one learned codebook per level."""


def grid_mlp_base(encoding: GridEncoding, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """A field's ``mlp_base`` on our grid: the encoding, then NerfactoField's base MLP (2 layers,
    torch, so the weights export portably)."""
    return nn.Sequential(
        encoding,
        MLP(
            in_dim=encoding.get_out_dim(),
            num_layers=2,  # NerfactoField's default
            layer_width=hidden_dim,
            out_dim=out_dim,
            activation=nn.ReLU(),
            out_activation=None,
            implementation="torch",
        ),
    )


class GridModel:
    """What every model on FeatureTable grids adds to its nerfstudio model (a mixin placed before
    the nerfstudio class, e.g. ``GridNerfactoModel(GridModel, NerfactoModel)``).

    Subclasses build their grids in ``populate_modules``, then call :meth:`finish_grids`, and
    implement :meth:`grid_encodings`.
    """

    config: GridModelSettings
    file_context: Optional[FileContext] = None
    """What the file holds besides the model (method, dataparser, cameras); set by the pipeline
    (:class:`~nerfcompress.plugin.pipeline.GridPipeline`) or, in training, by the callbacks."""
    step: int = 0
    """The model's step: the current training step (the schedules', set by :meth:`set_step`) or the
    loaded checkpoint's; a file of the model records it."""
    _size_cache: Optional[Tuple[int, Dict[str, int]]] = None  # (step, estimated_size_bytes())
    coarse_prefix_levels: Optional[int] = None
    """Joint coarse-to-fine (``coarse_to_fine_joint_rays``): the level count of the coarser prefix
    this training step also renders; None: no such render."""

    def grid_encodings(self) -> List[GridEncoding]:
        """Every grid, the main field's first."""
        raise NotImplementedError

    def finish_grids(self) -> None:
        """Adds the viewer's size estimate and selects the interpolation backend (logged once).

        Raises:
            GridBackendUnavailable: ``grid_backend`` names a backend this machine cannot run.
        """
        self.viewer_estimated_size = ViewerText(
            "Size of an export (MB)", default_value="not measured yet", disabled=True
        )
        device = self.kwargs.get("device") or "cpu"
        self.grid_backend: GridBackend = select_grid_backend(
            self.config.grid_backend, device, [e.layout for e in self.grid_encodings()]
        )
        for encoding in self.grid_encodings():
            encoding.interpolate = self.grid_backend.interpolate
        CONSOLE.log(f"nerfcompress grid backend: {self.grid_backend.name} ({self.grid_backend.reason})")

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
            if name in groups:
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
        coarse-to-fine level count of the main grid (or, joint, of the prefix rendered beside it)
        and the rate weight's warm-up."""
        self.step = int(step)
        for table in self.tables():
            table.set_step(step)
        if self.config.coarse_to_fine_min_levels is not None and self.config.coarse_to_fine_joint_rays > 0:
            self.coarse_prefix_levels = joint_prefix_levels(
                step,
                self.config.coarse_to_fine_min_levels,
                self.grid_encodings()[0].layout.num_levels,
                self.config.coarse_to_fine_last_step,
            )
        elif self.config.coarse_to_fine_min_levels is not None:
            main, *proposals = self.grid_encodings()
            levels = coarse_to_fine_levels(
                step,
                self.config.coarse_to_fine_min_levels,
                main.layout.num_levels,
                self.config.coarse_to_fine_full_fraction,
                self.config.coarse_to_fine_last_step,
            )
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

    def get_outputs(self, ray_bundle) -> Dict[str, Tensor]:
        """The nerfstudio model's outputs, plus ``rate_bits`` in training when the rate is learned.

        The rate is produced here, inside the forward, so that under DDP
        (``find_unused_parameters``) the priors' parameters are part of the forward's graph;
        computed only in the loss they would be marked ready twice (nerfstudio issue #2089).
        """
        outputs = super().get_outputs(ray_bundle)
        if self.training and self.config.rate_loss_weight() > 0:
            outputs["rate_bits"] = self.rate_bits()
        return outputs

    def derived_parameters(self) -> List[nn.Parameter]:
        """Parameters rebuilt from the configuration and scene box, never stored (none here)."""
        return []

    def network_parameters(self) -> "OrderedDict[str, nn.Parameter]":
        """Parameters that rendering needs besides the grids: MLPs, proposal MLPs, everything
        except tables, the camera optimizer, derived parameters and the appearance embedding
        (stored as its average)."""
        skipped = {id(p) for table in self.tables() for p in table.parameters()}
        skipped |= {id(p) for p in self.derived_parameters()}
        camera_optimizer = getattr(self, "camera_optimizer", None)
        if camera_optimizer is not None:
            skipped |= {id(p) for p in camera_optimizer.parameters()}
        embedding = getattr(self.field, "embedding_appearance", None)
        if embedding is not None:
            skipped |= {id(p) for p in embedding.parameters()}
        return OrderedDict((name, p) for name, p in self.named_parameters() if id(p) not in skipped)

    def extra_sections(self) -> Tuple[Dict[str, Any], List[Tuple[str, bytes]]]:
        """Header entries and file sections that rendering needs besides the networks and grids
        (Instant-NGP: its occupancy grid), each entry keyed by its section's name, in section
        order (the header's ``"extras"``); none here."""
        return {}, []

    def load_extra_sections(self, extras: Mapping[str, Any], sections: Mapping[str, bytes]) -> None:
        """Restores what :meth:`extra_sections` wrote, from an untrusted file: here, there must be none.

        Args:
            extras: the header's ``"extras"``, its form checked
                (:func:`~nerfcompress.plugin.file_layout.check_extras`).
            sections: the file's sections.

        Raises:
            BitstreamError: the entries or sections are missing, unexpected or malformed.
        """
        if extras:
            raise BitstreamError(
                f"header has extra entries {sorted(extras)[:4]} but a {type(self).__name__} stores none; the file is "
                "corrupt or from another version"
            )

    def num_grid_rows(self) -> int:
        return sum(table.num_rows for table in self.tables())

    @torch.no_grad()
    def estimated_size_bytes(self, step: Optional[int] = None) -> Dict[str, int]:
        """Bytes of the file ``ns-compress export`` writes of this model, by part.

        The same layout as the exporter's (:func:`~nerfcompress.plugin.file_layout.model_file`,
        every grid really coded), counted without writing the file: ``grids`` (every grid
        section), ``networks``, ``metadata`` (header, :meth:`extra_sections` and cameras) and
        ``total``, framing included. Exact for an export of the checkpoint at ``step`` with the
        default codings (post-hoc codings aside). Costs one encode of every grid: 0.3 s for
        nerfacto's default grids on this CPU (BENCHMARKS.md).

        Args:
            step: the step the header records (None: :attr:`step`).

        Raises:
            RuntimeError: if the model has no :attr:`file_context` (it was not built by a
                grid pipeline, nor trained).
        """
        if self.file_context is None:
            raise RuntimeError(
                "the model does not know its run's cameras and dataparser: build it with GridPipelineConfig "
                "or GridDynamicBatchPipelineConfig (every registered nerfcompress method does) or train it"
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
        if "rate_bits" in outputs:
            rate_bits = outputs["rate_bits"]
            metrics_dict["rate_bits"] = rate_bits
            rows = sum(encoding.table.num_rows for encoding in self.rate_encodings())
            metrics_dict["bits_per_grid_row"] = rate_bits.detach() / rows
        if self.training:
            metrics_dict.update(self.tables()[0].training_state())
            active_levels = self.grid_encodings()[0].num_active_levels
            if active_levels is not None:
                metrics_dict["active_levels"] = float(active_levels)
            if self.coarse_prefix_levels is not None:
                metrics_dict["coarse_prefix_levels"] = float(self.coarse_prefix_levels)
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


class GridNerfactoModel(GridModel, NerfactoModel):
    """nerfacto with every hash grid replaced by a :class:`GridEncoding` over a FeatureTable."""

    config: GridNerfactoModelConfig

    def populate_modules(self) -> None:
        with lazy_lpips_in_nerfacto():
            super().populate_modules()
        args = self.config.grid_layout_args()
        main_encoding = GridEncoding(grid_layout(args[0][1]), self.config.build_table(grid_layout(args[0][1])))
        self.field.mlp_base = grid_mlp_base(main_encoding, self.config.hidden_dim, 1 + self.field.geo_feat_dim)
        for network, (_, layout_args) in zip(self.proposal_networks, args[1:], strict=True):
            layout = grid_layout(layout_args)
            network.encoding = GridEncoding(layout, self.config.build_table(layout))
            if not network.use_linear:
                network.mlp_base = nn.Sequential(network.encoding, network.mlp_base[1])
        self.finish_grids()

    def grid_encodings(self) -> List[GridEncoding]:
        """Main-field grid first, then the proposal grids."""
        return [self.field.mlp_base[0], *(net.encoding for net in self.proposal_networks)]

    def get_outputs(self, ray_bundle) -> Dict[str, Tensor]:
        """The outputs of :meth:`GridModel.get_outputs`, plus, in a training step of joint
        coarse-to-fine, ``coarse_prefix_rgb`` ``[n, 3]`` and ``coarse_prefix_accumulation``
        ``[n, 1]``: the first ``n`` rays (``coarse_to_fine_joint_rays`` of the batch) rendered again
        at the same samples from the main grid's coarsest :attr:`coarse_prefix_levels` levels."""
        main = self.grid_encodings()[0]
        levels = self.coarse_prefix_levels if self.training else None
        main.keeps_rows = levels is not None
        try:
            outputs = super().get_outputs(ray_bundle)
            if levels is not None:
                outputs.update(self._coarse_prefix_outputs(outputs["ray_samples_list"][-1], levels))
        finally:
            main.keeps_rows = False
        return outputs

    def _coarse_prefix_outputs(self, ray_samples: RaySamples, levels: int) -> Dict[str, Tensor]:
        """Renders the first rays of ``ray_samples`` (``[num_rays, num_samples]``, the main field's
        samples of this step) from the coarsest ``levels`` levels of the main grid's rows as the
        whole render decoded them."""
        num_rays = max(1, round(self.config.coarse_to_fine_joint_rays * ray_samples.shape[0]))
        samples = ray_samples[:num_rays]
        with self.grid_encodings()[0].coarse_prefix_of_last_forward(levels):
            field_outputs = self.field.forward(samples)
        if self.config.use_gradient_scaling:
            field_outputs = scale_gradients_by_distance_squared(field_outputs, samples)
        weights = samples.get_weights(field_outputs[FieldHeadNames.DENSITY])
        return {
            "coarse_prefix_rgb": self.renderer_rgb(rgb=field_outputs[FieldHeadNames.RGB], weights=weights),
            "coarse_prefix_accumulation": self.renderer_accumulation(weights=weights),
        }

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        """:meth:`GridModel.get_loss_dict`, plus ``coarse_prefix_rgb_loss`` in a step of joint
        coarse-to-fine: nerfacto's colour loss of the prefix render, times its share of the batch's
        rays (each ray weighs as in the whole render)."""
        loss_dict = super().get_loss_dict(outputs, batch, metrics_dict)
        if "coarse_prefix_rgb" in outputs:
            predicted = outputs["coarse_prefix_rgb"]
            image = batch["image"].to(self.device)
            pred_rgb, gt_rgb = self.renderer_rgb.blend_background_for_loss_computation(
                pred_image=predicted,
                pred_accumulation=outputs["coarse_prefix_accumulation"],
                gt_image=image[: predicted.shape[0]],
            )
            share = predicted.shape[0] / image.shape[0]
            weight = share * self.config.coarse_to_fine_joint_weight
            loss_dict["coarse_prefix_rgb_loss"] = weight * self.rgb_loss(gt_rgb, pred_rgb)
        return loss_dict
