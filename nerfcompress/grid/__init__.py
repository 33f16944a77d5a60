"""tcnn-compatible multi-resolution grid layout and interpolation (stdlib, numpy, torch only)."""

from nerfcompress.grid.interp import grid_corner_indices, interp_torch
from nerfcompress.grid.layout import GridLayout
from nerfcompress.grid.lod import coarse_to_fine_levels, joint_prefix_levels

__all__ = ["GridLayout", "coarse_to_fine_levels", "grid_corner_indices", "interp_torch", "joint_prefix_levels"]
