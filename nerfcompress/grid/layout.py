"""Multi-resolution grid layout, identical to tiny-cuda-nn's ``HashGrid``.

Per level ``l`` (tcnn ``encodings/grid.h``, all in float32)::

    scale_l      = exp2(l * log2(per_level_scale)) * base_resolution - 1
    resolution_l = ceil(scale_l) + 1
    rows_l       = min(next_multiple(resolution_l ** num_dims, 8), hashmap_size)
    offset_l     = rows_0 + ... + rows_{l-1}

A level is hashed iff tcnn's ``grid_index`` stride loop ends with a stride larger than
``rows_l``, i.e. iff ``resolution_l ** num_dims > rows_l``; otherwise it is indexed densely.
The rows of all levels are concatenated into one table ``[num_rows, F]``, level 0 first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, NamedTuple

import numpy as np

_UINT32_LIMIT = 2**32
# float32 positions have 24 significand bits: finer grids cannot be addressed, and the bound keeps
# every hash product ``pos_grid * prime`` below 2**63 so int64 arithmetic emulates uint32 exactly.
_MAX_RESOLUTION = 2**24
_HASHMAP_SIZES = frozenset(2**k for k in range(4, 31))


class _Levels(NamedTuple):
    scales: tuple[float, ...]
    resolutions: tuple[int, ...]
    rows: tuple[int, ...]
    offsets: tuple[int, ...]
    is_hashed: tuple[bool, ...]


def _level_scale(level: int, per_level_scale: float, base_resolution: int) -> np.float32:
    """tcnn's ``grid_scale``: ``exp2f(level * log2f(per_level_scale)) * base_resolution - 1.0f``.

    ``+ - *`` are IEEE-exact in numpy float32; ``log2``/``exp2`` are evaluated in float64 and
    rounded once to float32, i.e. correctly rounded, as glibc's ``log2f``/``exp2f`` (tcnn's host
    code) are in practice. CUDA's device ``exp2f`` may differ by an ulp, which could only change
    ``resolution_l`` if ``scale_l`` were within an ulp of an integer.
    """
    log2_scale = np.float32(math.log2(float(np.float32(per_level_scale))))
    exponent = np.float32(level) * log2_scale
    growth = np.float32(2.0 ** float(exponent))
    return growth * np.float32(base_resolution) - np.float32(1.0)


def _is_hashed(resolution: int, rows: int, num_dims: int) -> bool:
    """tcnn's dense-or-hash decision in ``grid_index``, with its uint32 ``stride``."""
    stride = 1
    dim = 0
    while dim < num_dims and stride <= rows:
        stride *= resolution
        if stride >= _UINT32_LIMIT:
            raise ValueError(
                f"level with resolution {resolution} and {rows} rows overflows tcnn's uint32 index "
                "stride; use a smaller hashmap_size or fewer/coarser levels"
            )
        dim += 1
    return rows < stride


def _derive_levels(
    num_dims: int, num_levels: int, hashmap_size: int, base_resolution: int, per_level_scale: float
) -> _Levels:
    scales, resolutions, rows, offsets, is_hashed = [], [], [], [], []
    offset = 0
    for level in range(num_levels):
        scale = _level_scale(level, per_level_scale, base_resolution)
        resolution = int(math.ceil(float(scale))) + 1
        if resolution > _MAX_RESOLUTION:
            raise ValueError(
                f"level {level} resolution must be at most 2**24 (float32 positions), found {resolution}; "
                "lower per_level_scale, base_resolution or num_levels"
            )
        dense_rows = -(-(resolution**num_dims) // 8) * 8  # tcnn next_multiple(params_in_level, 8u)
        level_rows = min(dense_rows, hashmap_size)
        scales.append(float(scale))
        resolutions.append(resolution)
        rows.append(level_rows)
        offsets.append(offset)
        is_hashed.append(_is_hashed(resolution, level_rows, num_dims))
        offset += level_rows
    return _Levels(tuple(scales), tuple(resolutions), tuple(rows), tuple(offsets), tuple(is_hashed))


def _check_int(name: str, value: object, allowed: str, ok: Callable[[int], bool]) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not ok(int(value)):
        raise ValueError(f"{name} must be {allowed}, found {value!r}")


@dataclass(frozen=True)
class GridLayout:
    """Row layout of a tcnn-compatible multi-resolution (hash) grid.

    Args:
        num_dims: 2 (images) or 3 (scenes).
        num_levels: number of levels ``L``, 1..32.
        features_per_level: ``F``, one of 1, 2, 4, 8.
        hashmap_size: ``T``, the most rows a level may have; a power of two in [2**4, 2**30].
        base_resolution: resolution parameter of level 0 (tcnn ``base_resolution``), >= 2.
        per_level_scale: growth factor between levels (tcnn ``per_level_scale``), >= 1.0; rounded
            to float32 as tcnn does when it is used.

    Raises:
        ValueError: a parameter is out of range, or the layout overflows tcnn's uint32 arithmetic.
    """

    num_dims: int
    num_levels: int
    features_per_level: int
    hashmap_size: int
    base_resolution: int
    per_level_scale: float

    def __post_init__(self) -> None:
        checks = (
            ("num_dims", "2 or 3", lambda v: v in (2, 3)),
            ("num_levels", "in 1..32", lambda v: 1 <= v <= 32),
            ("features_per_level", "one of 1, 2, 4, 8", lambda v: v in (1, 2, 4, 8)),
            ("hashmap_size", "a power of two in [2**4, 2**30]", lambda v: v in _HASHMAP_SIZES),
            ("base_resolution", ">= 2", lambda v: v >= 2),
        )
        for name, allowed, ok in checks:
            _check_int(name, getattr(self, name), allowed, ok)
            object.__setattr__(self, name, int(getattr(self, name)))  # plain ints: hashable, JSON-safe
        scale = self.per_level_scale
        is_number = isinstance(scale, (int, float, np.floating)) and not isinstance(scale, bool)
        if not is_number or not 1.0 <= scale < math.inf:
            raise ValueError(f"per_level_scale must be a finite number >= 1.0, found {scale!r}")
        object.__setattr__(self, "per_level_scale", float(scale))
        if self.num_rows * self.features_per_level >= _UINT32_LIMIT:
            raise ValueError(
                f"num_rows * features_per_level must be < 2**32 (tcnn's uint32 parameter count), "
                f"found {self.num_rows} * {self.features_per_level}"
            )

    @cached_property
    def _levels(self) -> _Levels:
        return _derive_levels(
            self.num_dims,
            self.num_levels,
            self.hashmap_size,
            self.base_resolution,
            self.per_level_scale,
        )

    @classmethod
    def from_resolution_range(
        cls,
        num_dims: int,
        num_levels: int,
        min_resolution: int,
        max_resolution: int,
        log2_hashmap_size: int,
        features_per_level: int,
    ) -> GridLayout:
        """Builds a layout with nerfstudio's ``HashEncoding`` convention.

        ``per_level_scale = exp((log(max_resolution) - log(min_resolution)) / (num_levels - 1))``
        (1.0 for a single level) and ``base_resolution = min_resolution``.

        Raises:
            ValueError: a parameter is out of range (see the class docstring).
        """
        _check_int("log2_hashmap_size", log2_hashmap_size, "in 4..30", lambda v: 4 <= v <= 30)
        _check_int("min_resolution", min_resolution, ">= 2", lambda v: v >= 2)
        _check_int("num_levels", num_levels, "in 1..32", lambda v: 1 <= v <= 32)
        at_least_min = f">= min_resolution {min_resolution}"
        _check_int("max_resolution", max_resolution, at_least_min, lambda v: v >= min_resolution)
        if num_levels == 1:
            per_level_scale = 1.0
        else:
            log_range = np.log(max_resolution) - np.log(min_resolution)
            per_level_scale = float(np.exp(log_range / (num_levels - 1)))
        return cls(
            num_dims=num_dims,
            num_levels=num_levels,
            features_per_level=features_per_level,
            hashmap_size=2**log2_hashmap_size,
            base_resolution=min_resolution,
            per_level_scale=per_level_scale,
        )

    @property
    def level_scales(self) -> tuple[float, ...]:
        """float32 ``scale_l`` per level (the positions are ``x * scale_l + 0.5``)."""
        return self._levels.scales

    @property
    def level_resolutions(self) -> tuple[int, ...]:
        """Vertices per axis of each level, ``ceil(scale_l) + 1``."""
        return self._levels.resolutions

    @property
    def level_rows(self) -> tuple[int, ...]:
        """Rows of each level in the concatenated table."""
        return self._levels.rows

    @property
    def level_offsets(self) -> tuple[int, ...]:
        """First row of each level in the concatenated table."""
        return self._levels.offsets

    @property
    def level_is_hashed(self) -> tuple[bool, ...]:
        """Whether each level is indexed by the spatial hash (True) or densely (False)."""
        return self._levels.is_hashed

    @property
    def num_rows(self) -> int:
        """Total rows of the concatenated table ``[num_rows, F]``."""
        return self._levels.offsets[-1] + self._levels.rows[-1]

    @property
    def output_dim(self) -> int:
        """Width of the interpolated features, ``L * F``."""
        return self.num_levels * self.features_per_level
