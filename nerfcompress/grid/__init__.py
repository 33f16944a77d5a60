"""tcnn-compatible multi-resolution grid layout and interpolation (stdlib, numpy, torch only)."""

from nerfcompress.grid.interp import grid_corner_indices, interp_torch
from nerfcompress.grid.layout import GridLayout

__all__ = ["GridLayout", "grid_corner_indices", "interp_torch"]
