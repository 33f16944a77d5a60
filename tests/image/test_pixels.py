"""Tests for nerfcompress.image.pixels: what pictures are accepted and how others are refused."""

import numpy as np
import pytest
from PIL import Image

from nerfcompress.image.pixels import ImageInputError, PixelSource, open_pixels

RNG = np.random.default_rng(0)


def _save(path, array, **kwargs):
    Image.fromarray(array).save(path, **kwargs)
    return path


@pytest.mark.parametrize(
    "shape, suffix", [((12, 9, 3), ".png"), ((12, 9), ".png"), ((12, 9, 4), ".png"), ((12, 9, 3), ".tif")]
)
def test_eight_bit_pictures_load_exactly(tmp_path, shape, suffix):
    array = RNG.integers(0, 256, shape, dtype=np.uint8)
    source = open_pixels(_save(tmp_path / f"p{suffix}", array))
    assert (source.height, source.width) == (12, 9)
    assert np.array_equal(source.strip(0, 12), array.reshape(12, 9, -1))
    assert np.array_equal(source.gather(np.array([0, 9 * 5 + 4])), array.reshape(108, -1)[[0, 49]])


def test_jpeg_and_npy_load(tmp_path):
    array = RNG.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert open_pixels(_save(tmp_path / "p.jpg", array, quality=90)).channels == 3
    np.save(tmp_path / "p.npy", array)
    source = open_pixels(tmp_path / "p.npy")
    assert isinstance(source.pixels, np.memmap) and np.array_equal(source.strip(0, 16), array)


def test_uncompressed_tiff_is_memory_mapped(tmp_path):
    import tifffile

    array = RNG.integers(0, 256, (20, 10, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "p.tif", array)
    source = open_pixels(tmp_path / "p.tif")
    assert isinstance(source.pixels, np.memmap) and np.array_equal(source.strip(0, 20), array)


def test_alpha_is_kept_or_dropped_on_request(tmp_path):
    path = _save(tmp_path / "a.png", RNG.integers(0, 256, (8, 8, 4), dtype=np.uint8))
    assert open_pixels(path).channels == 4
    assert open_pixels(path, alpha="drop").channels == 3


def test_palette_needs_convert(tmp_path):
    path = tmp_path / "p.png"
    Image.fromarray(RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)).convert("P").save(path)
    with pytest.raises(ImageInputError, match="--convert"):
        open_pixels(path)
    assert open_pixels(path, convert=True).channels == 3


def test_sixteen_bit_pictures_are_refused(tmp_path):
    import tifffile

    gray = tmp_path / "g16.png"
    Image.fromarray(RNG.integers(0, 65535, (8, 8), dtype=np.uint16)).save(gray)
    with pytest.raises(ImageInputError, match="16-bit"):
        open_pixels(gray)
    rgb = tmp_path / "rgb16.tif"
    tifffile.imwrite(rgb, RNG.integers(0, 65535, (8, 8, 3), dtype=np.uint16), compression="zlib")
    with pytest.raises(ImageInputError, match="16-bit"):
        open_pixels(rgb, convert=True)
    np.save(tmp_path / "f.npy", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ImageInputError, match="uint8"):
        open_pixels(tmp_path / "f.npy")


def test_broken_files_give_one_clear_error(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageInputError, match="empty"):
        open_pixels(tmp_path / "empty.png")
    (tmp_path / "text.png").write_text("not a picture")
    with pytest.raises(ImageInputError, match="not a picture"):
        open_pixels(tmp_path / "text.png")
    whole = _save(tmp_path / "whole.png", RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).read_bytes()
    (tmp_path / "cut.png").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ImageInputError, match="truncated"):
        open_pixels(tmp_path / "cut.png")
    with pytest.raises(ImageInputError, match="does not exist"):
        open_pixels(tmp_path / "missing.png")


def test_too_many_pixels_are_refused(tmp_path):
    path = _save(tmp_path / "big.png", np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(ImageInputError, match="megapixels"):
        open_pixels(path, max_megapixels=0.005)


def test_pixel_source_checks_its_array():
    with pytest.raises(ImageInputError, match="uint8"):
        PixelSource(np.zeros((2, 2, 3), np.uint16))
    with pytest.raises(ImageInputError, match="C in 1..4"):
        PixelSource(np.zeros((2, 2, 5), np.uint8))
    with pytest.raises(ImageInputError, match="empty"):
        PixelSource(np.zeros((0, 2, 3), np.uint8))
