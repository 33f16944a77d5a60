"""A deterministic procedural picture of any size, written strip by strip (for gigapixel tests).

Smooth colour gradients, rings at several scales and a fine checker texture: structure at every
level of a multi-resolution grid, computable for any pixel without the rest of the picture.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nerfcompress.image.writers import write_strips


def procedural_strip(row_start: int, row_end: int, width: int, height: int) -> np.ndarray:
    """uint8 ``[row_end - row_start, width, 3]`` rows of the ``height x width`` picture."""
    side = max(height, width)
    y = (np.arange(row_start, row_end, dtype=np.float32)[:, None] + 0.5) / side  # [h, 1]
    x = (np.arange(width, dtype=np.float32)[None, :] + 0.5) / side  # [1, W]
    radius = np.sqrt((x - 0.37) ** 2 + (y - 0.52) ** 2)
    rings = np.sin(radius * 40.0) * np.cos(radius * 7.0)
    checker = (np.floor(x * side / 64.0) + np.floor(y * side / 64.0)) % 2.0
    channels = [
        0.5 + 0.3 * np.sin(6.0 * x + 2.0 * y) + 0.15 * rings,
        0.5 + 0.3 * np.cos(4.0 * y - 3.0 * x) + 0.1 * checker - 0.05,
        0.5 + 0.25 * rings * np.sin(9.0 * x) + 0.2 * (y - 0.5),
    ]
    return (np.clip(np.stack(channels, axis=-1), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_procedural(path: Path, height: int, width: int, strip_rows: int = 256) -> Path:
    """Writes the procedural picture to ``path`` (``.npy`` or ``.png``) one strip at a time."""
    strips = (
        procedural_strip(start, min(start + strip_rows, height), width, height)
        for start in range(0, height, strip_rows)
    )
    write_strips(Path(path), height, width, 3, strips)
    return Path(path)
