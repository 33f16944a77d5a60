"""What an image codec is made of (grid, table, network) and its presets; checked when read from a file.

:class:`ImageModelConfig` is everything the decoder needs besides the picture's size to rebuild
the model, so it is stored in the file header. A header is untrusted: :func:`config_from_header`
checks every field's type and range against the allow-list below before anything is built.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Literal, Tuple

from nerfcompress.errors import BitstreamError
from nerfcompress.grid.layout import GridLayout
from nerfcompress.tables.decoders import DECODER_KINDS, DecoderKind

METHODS = ("shacira", "vqad")
MAX_SIDE = 1 << 20
"""Longest picture side a file may declare (a million pixels)."""
MAX_PIXELS = 1 << 32
MAX_TABLE_ROWS = 1 << 26
"""Most grid rows a file may declare (the decoder allocates a few floats per row)."""


@dataclass(frozen=True)
class ImageModelConfig:
    """The image model: a 2D multi-resolution grid over a feature table, and a small MLP.

    Level ``l`` has ``base_resolution * 2**l`` vertices per side (tcnn layout with
    ``per_level_scale = 2``); the finest level has about one vertex per ``finest_stride`` pixels
    of the longer side. Levels with more than ``2**log2_hashmap_size`` vertices are hashed.
    """

    method: Literal["shacira", "vqad"] = "shacira"
    num_levels: int = 8
    """Grid levels ``L``."""
    finest_stride: float = 1.0
    """Pixels per vertex of the finest level along the picture's longer side."""
    log2_hashmap_size: int = 22
    """Levels with more vertices than ``2**log2_hashmap_size`` are hashed into that many rows."""
    features_per_level: int = 1
    """Decoded features per grid row ``F`` (1, 2, 4 or 8)."""
    latent_dim: int = 1
    """SHACIRA: integer latents per row ``D``."""
    per_level_prior: bool = True
    """SHACIRA: one table (decoder and learned prior) per level instead of one for all levels."""
    decoder: DecoderKind = "per-level"
    """SHACIRA: ``per-level`` (a scale and shift per level, ``latent_dim == features_per_level``;
    every level's scale starts positive) or ``shared`` (one linear map per table, weights drawn
    around zero: the format's first files, which read without this field)."""
    bits: int = 4
    """VQAD: index bits ``b`` per row (codebooks of ``2**b`` entries per level)."""
    hidden: Tuple[int, ...] = (24, 24)
    """Widths of the synthesis MLP's hidden layers."""
    context_hidden: Tuple[int, ...] = ()
    """SHACIRA: hidden widths of the context model that codes every dense level's latents from
    their decoded neighbours (:mod:`nerfcompress.entropy.context`); empty: none (each level
    under its own frequency table; files written before the field read so)."""

    def layout(self, height: int, width: int) -> GridLayout:
        """The grid layout for an ``height x width`` picture.

        Raises:
            ValueError: the layout is out of range (see :class:`GridLayout`).
        """
        side = max(height, width)
        finest = side / self.finest_stride
        base = max(2, math.ceil(finest / 2 ** (self.num_levels - 1)))
        return GridLayout(
            num_dims=2,
            num_levels=self.num_levels,
            features_per_level=self.features_per_level,
            hashmap_size=2**self.log2_hashmap_size,
            base_resolution=base,
            per_level_scale=2.0,
        )

    def __post_init__(self) -> None:
        if self.context_hidden and (self.method != "shacira" or self.latent_dim != 1):
            raise ValueError("a context model codes SHACIRA latents of latent_dim 1 only")
        if self.decoder not in DECODER_KINDS:
            raise ValueError(f"decoder must be one of {', '.join(DECODER_KINDS)}, got {self.decoder!r}")
        if self.method == "shacira" and self.decoder == "per-level" and self.latent_dim != self.features_per_level:
            raise ValueError(
                f"the per-level decoder needs latent_dim == features_per_level, got {self.latent_dim} and "
                f"{self.features_per_level}; use decoder 'shared'"
            )

    def to_header(self) -> Dict[str, Any]:
        entry = asdict(self)
        entry["hidden"] = list(self.hidden)
        if self.context_hidden:
            entry["context_hidden"] = list(self.context_hidden)
        else:
            del entry["context_hidden"]  # a file without one reads as files before the field did
        return entry


_RANGES = {
    "num_levels": (1, 16),
    "log2_hashmap_size": (4, 24),
    "latent_dim": (1, 4),
    "bits": (1, 8),
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def config_from_header(entry: Any) -> ImageModelConfig:
    """The model settings of an untrusted header entry.

    Raises:
        BitstreamError: a missing, unknown, mistyped or out-of-range field.
    """
    names = {f.name for f in fields(ImageModelConfig)}
    if isinstance(entry, dict) and "decoder" not in entry:
        entry = {**entry, "decoder": "shared"}  # written before the field existed
    if isinstance(entry, dict) and "context_hidden" not in entry:
        entry = {**entry, "context_hidden": []}  # written before the field existed
    if not isinstance(entry, dict) or set(entry) != names:
        found = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise BitstreamError(f"image model settings hold {found!s:.200}, expected {sorted(names)}; the file is corrupt")
    problems = []
    if entry["method"] not in METHODS:
        problems.append(f"method={entry['method']!r:.40}")
    for name, (lo, hi) in _RANGES.items():
        if not _is_int(entry[name]) or not lo <= entry[name] <= hi:
            problems.append(f"{name}={entry[name]!r:.40} (expected {lo}..{hi})")
    if entry["features_per_level"] not in (1, 2, 4, 8) or not _is_int(entry["features_per_level"]):
        problems.append(f"features_per_level={entry['features_per_level']!r:.40}")
    stride = entry["finest_stride"]
    if isinstance(stride, bool) or not isinstance(stride, (int, float)) or not 0.25 <= stride <= 4096:
        problems.append(f"finest_stride={stride!r:.40}")
    hidden = entry["hidden"]
    if not isinstance(hidden, list) or len(hidden) > 4 or not all(_is_int(h) and 1 <= h <= 256 for h in hidden):
        problems.append(f"hidden={hidden!r:.60}")
    context = entry["context_hidden"]
    if not isinstance(context, list) or len(context) > 3 or not all(_is_int(h) and 1 <= h <= 64 for h in context):
        problems.append(f"context_hidden={context!r:.60}")
    if not isinstance(entry["per_level_prior"], bool):
        problems.append(f"per_level_prior={entry['per_level_prior']!r:.20}")
    if entry["decoder"] not in DECODER_KINDS:
        problems.append(f"decoder={entry['decoder']!r:.40}")
    if problems:
        raise BitstreamError(f"image model settings out of range: {', '.join(problems)}; the file is corrupt")
    try:
        return ImageModelConfig(
            **{**entry, "hidden": tuple(hidden), "context_hidden": tuple(context), "finest_stride": float(stride)}
        )
    except ValueError as exc:
        raise BitstreamError(f"image model settings are inconsistent ({exc}); the file is corrupt") from exc


def check_picture_size(height: Any, width: Any, channels: Any) -> None:
    """Raises BitstreamError unless a header's picture size is plausible."""
    ok = all(_is_int(v) for v in (height, width, channels))
    ok = ok and 1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE and 1 <= channels <= 4
    if not ok or height * width > MAX_PIXELS:
        raise BitstreamError(
            f"file declares a {width!r:.20} x {height!r:.20} x {channels!r:.5} picture; the file is corrupt"
        )
