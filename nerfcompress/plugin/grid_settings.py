"""Settings every model on FeatureTable grids shares (nerfacto's and Instant-NGP's configs), and
the tcnn layout of a grid from nerfacto-style arguments.

:class:`GridModelSettings` is a dataclass mixin placed before the nerfstudio model config (e.g.
``GridNerfactoModelConfig(GridModelSettings, NerfactoModelConfig)``); a table-settings mixin
(:mod:`nerfcompress.plugin.table_settings`) in front of that chooses the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Literal, Optional, Tuple

from nerfcompress.grid import GridLayout
from nerfcompress.grid.backends import missing_package
from nerfcompress.tables import FeatureTable


@dataclass
class GridModelSettings:
    """Settings of every model on FeatureTable grids (a mixin of the model configs). The table
    settings mixin (:mod:`nerfcompress.plugin.table_settings`) chooses the table (``build_table``)."""

    size_log_interval: int = 100
    """Steps between logging the size of the file an export would write (codes every grid once)."""
    coarse_to_fine_min_levels: Optional[int] = None
    """Coarse-to-fine training, so that a prefix of the levels is a usable lower level of detail
    (evaluation uses all): prefixes of at least this many of the main grid's levels are trained,
    jointly with the whole grid (``coarse_to_fine_joint_rays``) or on steps of their own (the step
    schedule: a step keeps a random number of levels in [min, num_levels], the finer ones zeroed).
    None = off."""
    coarse_to_fine_full_fraction: float = 0.75
    """Coarse-to-fine, the step schedule: the share of steps that keep every level (the others draw a
    count uniformly in [min, num_levels]), so that the finest levels, and the full file, are not trained on only
    1 / (num_levels - min + 1) of the steps. Chosen on lego100's val views (min 1, 800 steps): the
    full file 0.82 / 1.92 dB (SHACIRA / VQAD) under training without coarse-to-fine at 0, 0.33 / 0.79
    at 0.5, -0.08 / 0.56 at 0.75 (BENCHMARKS.md, "Streaming")."""
    coarse_to_fine_last_step: Optional[int] = None
    """Coarse-to-fine: the last step that may truncate the levels or, joint, render a prefix; every later
    step renders the whole grid alone (None: all along). A trade, not a default: on lego100's val views (seed 42, 800
    steps, last step 599 with full fraction 0.667, the same 25 % of truncated steps) the whole file
    gained 0.18 / 0.13 dB (SHACIRA / VQAD) and levels 1-4 lost 0.6-2.1 dB (BENCHMARKS.md)."""
    coarse_to_fine_joint_rays: float = 0.0
    """Coarse-to-fine trained jointly, as VQAD's paper sums the loss over its levels of detail: every
    step renders the whole main grid, and this share of the batch's rays again from a coarser prefix
    of it (a level count drawn per step, uniform in [min, num_levels - 1]) whose colour loss is added
    (``coarse_to_fine_joint_weight``). The whole grid then trains on every step; the extra render
    costs about this share of a main-field forward and backward (the rows are decoded once). 0: the
    step schedule instead (``full_fraction``; ``proposals``). ``last_step`` ends either. nerfacto
    only: its config defaults to 0.25."""
    coarse_to_fine_joint_weight: float = 1.0
    """Joint coarse-to-fine: the weight of a prefix-rendered ray's colour loss against a ray of the
    whole render. On lego100's val views (seed 42, 800 steps, a quarter of the rays), SHACIRA's whole
    file gained 0.43 dB at 1 (and grew 23 %) and 0.32 dB at 0.25 against training without
    coarse-to-fine, but its first level of detail fell from 18.4 to 15.3 dB at 0.25; VQAD's table
    settings default to 0.25 (BENCHMARKS.md, "Streaming")."""
    rate_follows_distortion: bool = True
    """Count a proposal grid's rate only on the steps on which nerfacto's proposal sampler trains it
    (with gradients), so that lambda weighs its rate against its distortion as for the main grid."""
    coarse_to_fine_proposals: bool = False
    """Coarse-to-fine also truncates the proposal grids to the drawn level count (capped at their own
    levels), so that a prefix of the file cut at level k, which cuts every grid, is a trained model.
    Measured on lego100's val views (BENCHMARKS.md, "Streaming"): up to 0.3 dB more at the low
    levels of detail, but 0.4-0.6 dB less for the whole file (with full_fraction 0.75); off, the
    prefixes render the coarse proposal levels they were not trained alone with. Storing whole
    proposal grids before the main grid's levels instead needs 29.7 kB (SHACIRA) and 42.5 kB (VQAD)
    before the first level of detail, against 13.0 and 11.4 kB."""
    active_levels: Optional[int] = None
    """Evaluation renders only the coarsest N levels of every grid (finer levels output zeros; a
    grid with fewer levels keeps all of its own). ns-compress import sets it when it decodes a file
    prefix or --max-levels; training ignores it. None = all levels."""
    grid_backend: Literal["auto", "torch", "triton", "tcnn"] = "auto"
    """Grid interpolation: auto (Triton on CUDA when it imports, else tiny-cuda-nn on CUDA when it
    imports and passes its self-check, else torch), or one of them; the log says which runs."""

    def __post_init__(self) -> None:
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()
        missing = missing_package(self.grid_backend)
        if missing is not None:
            raise ValueError(
                f"grid_backend={self.grid_backend} needs the {missing} package, which is not installed; "
                "use grid_backend auto or torch"
            )
        if self.size_log_interval < 1:
            raise ValueError(f"size_log_interval must be >= 1, got {self.size_log_interval}")
        min_levels = self.coarse_to_fine_min_levels
        if min_levels is not None and not 1 <= min_levels <= self.num_levels:
            raise ValueError(
                f"coarse_to_fine_min_levels must be None or in 1..num_levels={self.num_levels}, got {min_levels}"
            )
        if not 0.0 <= self.coarse_to_fine_full_fraction <= 1.0:
            raise ValueError(f"coarse_to_fine_full_fraction must be in [0, 1], got {self.coarse_to_fine_full_fraction}")
        if self.coarse_to_fine_last_step is not None and self.coarse_to_fine_last_step < 0:
            raise ValueError(f"coarse_to_fine_last_step must be None or >= 0, got {self.coarse_to_fine_last_step}")
        joint = self.coarse_to_fine_joint_rays
        if not 0.0 <= joint <= 1.0:
            raise ValueError(f"coarse_to_fine_joint_rays must be in [0, 1], got {joint}")
        if not 0.0 < self.coarse_to_fine_joint_weight <= 16.0:
            raise ValueError(f"coarse_to_fine_joint_weight must be in (0, 16], got {self.coarse_to_fine_joint_weight}")
        if joint > 0.0 and self.coarse_to_fine_proposals:
            raise ValueError(
                "coarse_to_fine_joint_rays > 0 renders the prefix with the whole proposal grids; "
                "coarse_to_fine_proposals needs the step schedule (coarse_to_fine_joint_rays 0)"
            )
        if joint > 0.0 and min_levels is not None and min_levels >= self.num_levels:
            raise ValueError(
                f"coarse_to_fine_joint_rays > 0 renders a prefix coarser than the whole grid: "
                f"coarse_to_fine_min_levels must be below num_levels={self.num_levels}, got {min_levels}"
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
        """(config name, layout arguments) of every grid, the main field's first."""
        raise NotImplementedError

    def main_grid_args(self) -> dict:
        """Layout arguments of the field's own grid, from the config's grid fields."""
        names = ("num_levels", "base_res", "max_res", "log2_hashmap_size", "features_per_level")
        return {name: getattr(self, name) for name in names}

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
