"""Instant-NGP on FeatureTable grids: nerfstudio's ``NGPModel`` (NerfactoField, nerfacc's
``OccGridEstimator`` and nerfstudio's ``VolumetricSampler``) whose hash grid is a GridEncoding.

The papers' base model. There are no proposal networks: the main field's grid is the only one.
Empty space is skipped with the occupancy grid, which the exported file stores (bit-packed and
deflated, its bytes counted in the file: :mod:`nerfcompress.bitstream.occupancy`), so a decoded
model samples exactly where the trained one did. nerfacc's sampling kernels are CUDA-only:
these models train and render on CUDA; on CPU they can be built, exported and imported.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Tuple, Type

import numpy as np
import torch
from nerfstudio.models import instant_ngp
from nerfstudio.models.instant_ngp import InstantNGPModelConfig, NGPModel
from torch import nn

from nerfcompress.bitstream.occupancy import OCCUPANCY_CODING, decode_occupancy, encode_occupancy
from nerfcompress.errors import BitstreamError
from nerfcompress.plugin.compat import lazy_lpips_in_nerfacto
from nerfcompress.plugin.encoding import GridEncoding
from nerfcompress.plugin.grid_settings import GridModelSettings, grid_layout
from nerfcompress.plugin.model import GridModel, grid_mlp_base
from nerfcompress.plugin.table_settings import PlainTableSettings, ShaciraTableSettings, VqadTableSettings

OCCUPANCY_SECTION = "occupancy"
"""Name of the occupancy grid's section and header entry."""


@dataclass
class GridInstantNGPModelConfig(GridModelSettings, InstantNGPModelConfig):
    """Instant-NGP on FeatureTable grids. The table-settings mixin chooses the table."""

    _target: Type = field(default_factory=lambda: GridInstantNGPModel)
    num_levels: int = 16
    """Levels of the field's grid (NerfactoField's default, as nerfstudio's instant-ngp)."""
    base_res: int = 16
    """Resolution of the grid's coarsest level."""
    features_per_level: int = 2
    """Features per grid row (F)."""
    hidden_dim: int = 64
    """Width of the base MLP after the grid."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.coarse_to_fine_joint_rays > 0:
            raise ValueError(
                "coarse_to_fine_joint_rays > 0 renders nerfacto's ray samples a second time; Instant-NGP's packed "
                "samples are not supported: use the step schedule (coarse_to_fine_joint_rays 0)"
            )

    def grid_layout_args(self) -> List[Tuple[str, dict]]:
        """(config name, layout arguments) of the field's grid, the only one."""
        main = self.main_grid_args()
        return [("field grid", main)]


@dataclass
class PlainInstantNGPModelConfig(PlainTableSettings, GridInstantNGPModelConfig):
    """Uncompressed baseline on Instant-NGP: float rows on the same layout as the compressed methods."""


@dataclass
class ShaciraInstantNGPModelConfig(ShaciraTableSettings, GridInstantNGPModelConfig):
    """SHACIRA on Instant-NGP: integer latents, a decoder (per level or shared) and a learned rate term."""


@dataclass
class VqadInstantNGPModelConfig(VqadTableSettings, GridInstantNGPModelConfig):
    """VQAD on Instant-NGP: a b-bit codebook index per grid row and one learned codebook per level."""


@contextlib.contextmanager
def _portable_field(config: GridInstantNGPModelConfig) -> Iterator[None]:
    """Makes ``NGPModel.populate_modules()`` build its NerfactoField with torch layers (portable
    weights, no tiny-cuda-nn) and this config's grid sizes."""
    from unittest import mock

    portable = functools.partial(
        instant_ngp.NerfactoField,
        implementation="torch",
        num_levels=config.num_levels,
        base_res=config.base_res,
        features_per_level=config.features_per_level,
        hidden_dim=config.hidden_dim,
    )
    with mock.patch.object(instant_ngp, "NerfactoField", portable):
        yield


class GridInstantNGPModel(GridModel, NGPModel):
    """nerfstudio's Instant-NGP with its hash grid replaced by a :class:`GridEncoding`."""

    config: GridInstantNGPModelConfig

    def populate_modules(self) -> None:
        with lazy_lpips_in_nerfacto(), _portable_field(self.config):
            super().populate_modules()
        layout = grid_layout(self.config.grid_layout_args()[0][1])
        encoding = GridEncoding(layout, self.config.build_table(layout))
        self.field.mlp_base = grid_mlp_base(encoding, self.config.hidden_dim, 1 + self.field.geo_feat_dim)
        self.finish_grids()

    def grid_encodings(self) -> List[GridEncoding]:
        """The field's grid."""
        return [self.field.mlp_base[0]]

    def derived_parameters(self) -> List[nn.Parameter]:
        """``scene_aabb``: the scene box, rebuilt from the file's scene entry."""
        return [self.scene_aabb]

    def extra_sections(self) -> Tuple[Dict[str, Any], List[Tuple[str, bytes]]]:
        """The occupancy grid: header entry ``{"occupancy": {"shape", "coding"}}`` and its section."""
        cells = self.occupancy_grid.binaries.detach().cpu().numpy()  # bool [levels, X, Y, Z]
        entry = {"shape": list(cells.shape), "coding": OCCUPANCY_CODING}
        return {OCCUPANCY_SECTION: entry}, [(OCCUPANCY_SECTION, encode_occupancy(cells))]

    def load_extra_sections(self, extras: Mapping[str, Any], sections: Mapping[str, bytes]) -> None:
        """Loads the stored occupancy grid (its shape must be the rebuilt model's, which the capped
        settings bound); the occupancy values nerfacc keeps for its running update become 1 where
        a cell is occupied, else 0.

        Raises:
            BitstreamError: the entry or section is missing, of another shape or coding, or corrupt,
                or the header has other extra entries.
        """
        grid = self.occupancy_grid
        expected = {"shape": list(grid.binaries.shape), "coding": OCCUPANCY_CODING}
        entry = extras.get(OCCUPANCY_SECTION) if isinstance(extras, Mapping) else None
        if entry != expected or OCCUPANCY_SECTION not in sections or len(extras) != 1:
            raise BitstreamError(
                f"occupancy grid entry is {entry!r:.120} (section present: {OCCUPANCY_SECTION in sections}, extra "
                f"entries {sorted(extras)[:4]!r:.80}), expected {expected} and its section only; the file is corrupt "
                "or from another version"
            )
        cells = torch.from_numpy(decode_occupancy(sections[OCCUPANCY_SECTION], expected["shape"]))
        with torch.no_grad():
            grid.binaries.copy_(cells)
            grid.occs.copy_(cells.reshape(-1).to(grid.occs.dtype))


def occupancy_fraction(model: GridInstantNGPModel) -> float:
    """Share of occupied cells of the occupancy grid (a diagnostic for logs and benchmarks)."""
    return float(np.mean(model.occupancy_grid.binaries.detach().cpu().numpy()))
