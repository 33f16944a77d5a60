"""Writing a decoded picture strip by strip, so that a gigapixel never sits in memory.

``.png`` goes through pypng, which takes the rows as an iterator and deflates them as they
come; ``.npy`` writes the array header and then each strip's bytes. Either way only one strip
is held at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

OUTPUT_SUFFIXES = (".png", ".npy")


def _rows(strips: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    for strip in strips:
        yield from strip.reshape(strip.shape[0], -1)


def write_strips(path: Path, height: int, width: int, channels: int, strips: Iterable[np.ndarray]) -> None:
    """Writes uint8 strips ``[h, W, C]`` (top to bottom, ``sum(h) = height``) to ``path``.

    Raises:
        ValueError: the suffix is not one of :data:`OUTPUT_SUFFIXES`.
        OSError: the file cannot be written.
    """
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"output must end in {' or '.join(OUTPUT_SUFFIXES)}, found {path.name}")
    if suffix == ".png":
        import png

        writer = png.Writer(width, height, greyscale=channels <= 2, alpha=channels in (2, 4), bitdepth=8, compression=6)
        with open(path, "wb") as file:
            writer.write(file, _rows(strips))
        return
    with open(path, "wb") as file:
        header = {"descr": "|u1", "fortran_order": False, "shape": (height, width, channels)}
        np.lib.format.write_array_header_1_0(file, header)
        for strip in strips:
            file.write(np.ascontiguousarray(strip, dtype=np.uint8).tobytes())
