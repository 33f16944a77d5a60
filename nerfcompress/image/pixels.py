"""Pixel sources: the picture an image codec fits, as uint8 ``[H, W, C]`` that may live on disk.

An encoder needs random pixel batches (training) and horizontal strips (evaluation); a source
gives both without ever holding more than the picture once in uint8. Small pictures are read
into memory; raw ``.npy`` arrays and uncompressed TIFFs are memory-mapped as they are, so a
gigapixel picture costs page cache, not a decoded copy.

Inputs that are accepted: 8-bit grayscale (``L``), grayscale with alpha (``LA``), RGB and RGBA
PNG/JPEG/TIFF (anything Pillow reads), and uint8 ``.npy``. With ``alpha="keep"`` (default) an
alpha channel is coded as one more channel, lossily like the others; ``alpha="drop"`` codes the
colour only. Everything else (16-bit or float samples, palette, bilevel or CMYK images) raises
:class:`ImageInputError` unless ``convert=True``, which converts palette, bilevel and CMYK
images to 8-bit RGB(A)/L with Pillow; 16-bit and float samples are always refused (converting
them would silently drop precision).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal, Optional

import numpy as np

ALPHA_MODES = ("keep", "drop")
DEFAULT_MAX_MEGAPIXELS = 1100
"""Largest picture opened unless told otherwise (a gigapixel and some): Pillow's decompression
bomb guard is set to it."""

_MODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}
_CONVERTIBLE = {"P": None, "PA": "RGBA", "1": "L", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB"}
_WIDE_MODES = ("I", "F", "I;16", "I;16B", "I;16L", "I;16N")


class ImageInputError(ValueError):
    """A picture cannot be coded as given; the message says why and what to pass instead."""


class PixelSource:
    """uint8 pixels ``[H, W, C]``, in memory or memory-mapped.

    Args:
        pixels: uint8 ``[H, W, C]`` with ``C`` in 1..4 (a numpy array or memmap; not copied).

    Raises:
        ImageInputError: wrong dtype, rank, channel count, or an empty picture.
    """

    def __init__(self, pixels: np.ndarray) -> None:
        if pixels.dtype != np.uint8:
            raise ImageInputError(
                f"pixels must be uint8, found {pixels.dtype}; 16-bit and float images are not supported"
            )
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        if pixels.ndim != 3 or not 1 <= pixels.shape[2] <= 4:
            raise ImageInputError(f"pixels must be [H, W, C] with C in 1..4, found shape {list(pixels.shape)}")
        if pixels.shape[0] < 1 or pixels.shape[1] < 1:
            raise ImageInputError(f"the picture is empty ({pixels.shape[1]} x {pixels.shape[0]} pixels)")
        self.pixels = pixels

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def channels(self) -> int:
        return int(self.pixels.shape[2])

    @property
    def num_pixels(self) -> int:
        return self.height * self.width

    @property
    def nbytes(self) -> int:
        """Bytes of the picture in uint8."""
        return self.num_pixels * self.channels

    def gather(self, flat_indices: np.ndarray) -> np.ndarray:
        """uint8 ``[N, C]`` pixels at row-major indices ``int64 [N]`` (``row * W + col``), a copy."""
        rows, cols = np.divmod(flat_indices, self.width)
        return np.array(self.pixels[rows, cols])

    def strip(self, row_start: int, row_end: int) -> np.ndarray:
        """uint8 ``[row_end - row_start, W, C]``, the rows ``row_start .. row_end - 1``, a copy."""
        return np.array(self.pixels[row_start:row_end])


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise ImageInputError(f"{path} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise ImageInputError(f"{path} is empty (0 bytes); pass a PNG, JPEG or TIFF picture")


def _open_npy(path: Path) -> np.ndarray:
    try:
        pixels = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ImageInputError(f"{path} is not a readable .npy array ({exc})") from exc
    if pixels.dtype != np.uint8:
        raise ImageInputError(f"{path} holds {pixels.dtype} samples; only uint8 arrays [H, W, C] are supported")
    return pixels


def _memmap_tiff(path: Path) -> Optional[np.ndarray]:
    """The TIFF's pixels memory-mapped, or None when it is compressed or not 8-bit contiguous."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            if page.bitspersample != 8 or page.dtype != np.uint8 or page.is_contiguous is None:
                return None
        return tifffile.memmap(path, mode="r")
    except (ValueError, tifffile.TiffFileError, OSError):
        return None


def _pillow_pixels(path: Path, convert: bool, max_pixels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = max_pixels // 2  # Pillow raises above twice this
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
    except UnidentifiedImageError as exc:
        raise ImageInputError(f"{path} is not a picture Pillow can read (expected PNG, JPEG or TIFF)") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageInputError(
            f"{path} has more than {max_pixels / 1e6:.0f} megapixels; pass a larger --max-megapixels if it is meant"
        ) from exc
    with image:
        raw_modes = [getattr(tile, "args", None) for tile in getattr(image, "tile", [])]
        wide = image.mode in _WIDE_MODES or any(
            isinstance(args, tuple) and args and isinstance(args[0], str) and ";16" in args[0] for args in raw_modes
        )
        if wide:
            raise ImageInputError(
                f"{path} has 16-bit or float samples (mode {image.mode}); only 8-bit pictures are supported, "
                "convert it to 8 bits first"
            )
        if image.mode not in _MODES:
            if image.mode not in _CONVERTIBLE:
                raise ImageInputError(f"{path} has pixel mode {image.mode}, which cannot be coded")
            if not convert:
                raise ImageInputError(
                    f"{path} is a {image.mode} picture; pass --convert to code it as 8-bit RGB(A) or grayscale"
                )
            target = _CONVERTIBLE[image.mode] or ("RGBA" if "transparency" in image.info else "RGB")
            image = image.convert(target)
        try:
            pixels = np.asarray(image)
        except OSError as exc:  # truncated or damaged data shows up when the pixels are decoded
            raise ImageInputError(f"{path} cannot be decoded ({exc}); the file is truncated or damaged") from exc
    return pixels


def open_pixels(
    path: Path,
    alpha: Literal["keep", "drop"] = "keep",
    convert: bool = False,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
) -> PixelSource:
    """Opens a picture as a :class:`PixelSource` (see the module docstring for what is accepted).

    Args:
        path: a PNG/JPEG/TIFF (or any Pillow format) picture, or a uint8 ``.npy`` ``[H, W(, C)]``.
        alpha: ``"keep"`` codes an alpha channel, ``"drop"`` discards it.
        convert: convert palette, bilevel and CMYK pictures to 8-bit RGB(A)/L.
        max_megapixels: refuse larger pictures (bounds the memory a file can make us allocate).

    Raises:
        ImageInputError: a missing, empty, truncated, non-image, 16-bit, unsupported-mode or
            too-large file, or a bad argument.
    """
    if alpha not in ALPHA_MODES:
        raise ImageInputError(f"alpha must be one of {ALPHA_MODES}, found {alpha!r}")
    path = Path(path)
    _check_file(path)
    max_pixels = int(max_megapixels * 1e6)
    if path.suffix.lower() == ".npy":
        pixels = _open_npy(path)
    else:
        pixels = _memmap_tiff(path) if path.suffix.lower() in (".tif", ".tiff") else None
        if pixels is None:
            pixels = _pillow_pixels(path, convert, max_pixels)
    if pixels.ndim >= 2 and pixels.shape[0] * pixels.shape[1] > max_pixels:
        raise ImageInputError(
            f"{path} has {pixels.shape[0] * pixels.shape[1] / 1e6:.0f} megapixels, more than --max-megapixels "
            f"{max_megapixels:g}"
        )
    source = PixelSource(pixels)
    if alpha == "drop" and source.channels in (2, 4):
        source = PixelSource(source.pixels[:, :, : source.channels - 1])
    return source
