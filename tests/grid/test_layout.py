"""Tests for nerfcompress.grid.layout.

The pinned numbers follow tiny-cuda-nn's formulas (``include/tiny-cuda-nn/encodings/grid.h``):
``scale_l = exp2f(l * log2f(per_level_scale)) * base_resolution - 1.0f``,
``resolution_l = ceil(scale_l) + 1``, ``rows_l = min(next_multiple(resolution_l ** D, 8), T)``,
hashed iff the ``grid_index`` stride loop ends above ``rows_l``. Each pinned case is also checked
against ``_tcnn_reference`` below, a direct re-implementation in numpy float32 that does not
call the module. Positional ``GridLayout`` arguments are
(num_dims, num_levels, features_per_level, hashmap_size, base_resolution, per_level_scale).
"""

import dataclasses

import numpy as np
import pytest

from nerfcompress.grid.layout import GridLayout


def _tcnn_reference(num_dims, num_levels, base_resolution, per_level_scale, log2_hashmap_size):
    """(resolutions, rows, offsets, hashed) computed like tcnn, with numpy float32 transcendentals."""
    f32 = np.float32
    log2_scale = np.log2(f32(per_level_scale))
    hashmap_size = 2**log2_hashmap_size
    resolutions, rows, offsets, hashed = [], [], [], []
    offset = 0
    for level in range(num_levels):
        scale = np.exp2(f32(level) * log2_scale) * f32(base_resolution) - f32(1.0)
        assert scale.dtype == np.float32
        resolution = int(np.ceil(scale)) + 1
        params = (resolution**num_dims + 7) // 8 * 8
        level_rows = min(params, hashmap_size)
        stride, dim = 1, 0
        while dim < num_dims and stride <= level_rows:
            stride *= resolution
            dim += 1
        resolutions.append(resolution)
        rows.append(level_rows)
        offsets.append(offset)
        hashed.append(level_rows < stride)
        offset += level_rows
    return tuple(resolutions), tuple(rows), tuple(offsets), tuple(hashed)


def _nerfstudio_scale(num_levels, min_res, max_res):
    return float(np.exp((np.log(max_res) - np.log(min_res)) / (num_levels - 1)))


def _assert_matches_reference(layout):
    expected = _tcnn_reference(
        layout.num_dims,
        layout.num_levels,
        layout.base_resolution,
        layout.per_level_scale,
        int(np.log2(layout.hashmap_size)),
    )
    found = (layout.level_resolutions, layout.level_rows, layout.level_offsets, layout.level_is_hashed)
    assert found == expected


def test_nerfacto_main_grid():
    layout = GridLayout.from_resolution_range(
        num_dims=3,
        num_levels=16,
        min_resolution=16,
        max_resolution=2048,
        log2_hashmap_size=19,
        features_per_level=2,
    )
    assert layout.base_resolution == 16
    assert layout.per_level_scale == _nerfstudio_scale(16, 16, 2048)
    assert layout.level_resolutions == (
        16, 23, 31, 43, 59, 81, 112, 154, 213, 295, 407, 562, 777, 1073, 1483, 2048,
    )  # fmt: skip
    T = 2**19
    assert layout.level_rows == (4096, 12168, 29792, 79512, 205384) + (T,) * 11
    assert layout.level_offsets == (
        0, 4096, 16264, 46056, 125568, 330952, 855240, 1379528, 1903816, 2428104, 2952392, 3476680, 4000968,
        4525256, 5049544, 5573832,
    )  # fmt: skip
    assert layout.level_is_hashed == (False,) * 5 + (True,) * 11
    assert layout.num_rows == 6098120
    assert layout.output_dim == 32
    _assert_matches_reference(layout)


@pytest.mark.parametrize(
    "max_resolution, resolutions, rows, offsets, hashed, num_rows",
    [
        (
            128,
            (16, 27, 46, 77, 128),
            (4096, 19688, 97336, 131072, 131072),
            (0, 4096, 23784, 121120, 252192),
            (False, False, False, True, True),
            383264,
        ),
        (
            256,
            (16, 32, 64, 128, 256),
            (4096, 32768, 131072, 131072, 131072),
            (0, 4096, 36864, 167936, 299008),
            (False, False, True, True, True),
            430080,
        ),
    ],
)
def test_nerfacto_proposal_grids(max_resolution, resolutions, rows, offsets, hashed, num_rows):
    layout = GridLayout.from_resolution_range(
        num_dims=3,
        num_levels=5,
        min_resolution=16,
        max_resolution=max_resolution,
        log2_hashmap_size=17,
        features_per_level=2,
    )
    assert layout.level_resolutions == resolutions
    assert layout.level_rows == rows
    assert layout.level_offsets == offsets
    assert layout.level_is_hashed == hashed
    assert layout.num_rows == num_rows
    _assert_matches_reference(layout)


def test_image_grid_2d():
    layout = GridLayout(2, 16, 2, 2**19, 16, 1.5)
    assert layout.level_resolutions == (
        16, 24, 36, 54, 81, 122, 183, 274, 411, 616, 923, 1384, 2076, 3114, 4671, 7007,
    )  # fmt: skip
    dense_rows = (256, 576, 1296, 2920, 6568, 14888, 33496, 75080, 168928, 379456)
    assert layout.level_rows == dense_rows + (2**19,) * 6
    assert layout.level_offsets == (
        0, 256, 832, 2128, 5048, 11616, 26504, 60000, 135080, 304008, 683464, 1207752, 1732040, 2256328,
        2780616, 3304904,
    )  # fmt: skip
    assert layout.level_is_hashed == (False,) * 10 + (True,) * 6
    assert layout.num_rows == 3829192
    _assert_matches_reference(layout)


def test_tiny_layout_by_hand():
    # 2D, base 4, per_level_scale 2, T = 16:
    # level 0: scale = 2**0 * 4 - 1 = 3, resolution 4, 4**2 = 16 vertices -> 16 rows (already a
    #          multiple of 8, and <= T); stride loop 1 -> 4 -> 16 ends at 16 <= 16: dense.
    # level 1: scale = 2**1 * 4 - 1 = 7, resolution 8, 64 vertices -> min(64, 16) = 16 rows;
    #          stride 64 > 16: hashed. Offsets 0, 16; 32 rows in all.
    layout = GridLayout(2, 2, 2, 16, 4, 2.0)
    assert layout.level_scales == (3.0, 7.0)
    assert layout.level_resolutions == (4, 8)
    assert layout.level_rows == (16, 16)
    assert layout.level_offsets == (0, 16)
    assert layout.level_is_hashed == (False, True)
    assert layout.num_rows == 32
    assert layout.output_dim == 4


def test_rows_round_up_to_multiple_of_eight():
    # base 3: scale 2, resolution 3, 3**3 = 27 vertices -> 32 rows, dense.
    layout = GridLayout(3, 1, 1, 2**10, 3, 1.0)
    assert layout.level_rows == (32,)
    assert layout.level_is_hashed == (False,)


def test_single_level_scale_is_one():
    layout = GridLayout.from_resolution_range(3, 1, 16, 2048, 19, 2)
    assert layout.per_level_scale == 1.0
    assert layout.level_resolutions == (16,)


def test_frozen_hashable_and_serialisable():
    kwargs = dict(num_dims=2, num_levels=2, features_per_level=2, hashmap_size=16, base_resolution=4)
    kwargs["per_level_scale"] = 2.0
    layout = GridLayout(**kwargs)
    assert layout == GridLayout(**kwargs)
    assert hash(layout) == hash(GridLayout(**kwargs))
    assert dataclasses.asdict(layout) == kwargs
    with pytest.raises(dataclasses.FrozenInstanceError):
        layout.num_levels = 3


@pytest.mark.parametrize(
    "override, name",
    [
        (dict(num_dims=4), "num_dims"),
        (dict(num_levels=0), "num_levels"),
        (dict(num_levels=33), "num_levels"),
        (dict(features_per_level=3), "features_per_level"),
        (dict(hashmap_size=1000), "hashmap_size must be a power of two"),
        (dict(hashmap_size=8), "hashmap_size must be a power of two"),
        (dict(hashmap_size=2**31), "hashmap_size must be a power of two"),
        (dict(base_resolution=1), "base_resolution"),
        (dict(per_level_scale=0.5), "per_level_scale"),
        (dict(per_level_scale=float("nan")), "per_level_scale"),
        (dict(num_levels=True), "num_levels"),
    ],
)
def test_invalid_parameters(override, name):
    kwargs = dict(num_dims=3, num_levels=4, features_per_level=2, hashmap_size=2**12, base_resolution=4)
    kwargs["per_level_scale"] = 2.0
    kwargs.update(override)
    with pytest.raises(ValueError, match=name) as info:
        GridLayout(**kwargs)
    assert repr(next(iter(override.values()))) in str(info.value)


def test_overflow_checks():
    with pytest.raises(ValueError, match="uint32 parameter count"):
        # 8 hashed levels of 2**30 rows and F = 2: 2**34 parameters.
        GridLayout(3, 8, 2, 2**30, 40001, 1.0)
    with pytest.raises(ValueError, match="uint32 index stride"):
        # stride 1 -> 2048 -> 2**22 <= T -> 2**33 wraps in tcnn's uint32 arithmetic.
        GridLayout(3, 1, 2, 2**30, 2048, 1.0)
    with pytest.raises(ValueError, match="uint32 index stride"):
        # A 2D level of resolution 65536: 65536**2 = 2**32 wraps to 0 and tcnn would index it densely.
        GridLayout(2, 13, 2, 2**19, 16, 2.0)
    with pytest.raises(ValueError, match="resolution must be at most"):
        GridLayout(2, 1, 2, 2**19, 2**25, 1.0)


def test_from_resolution_range_validates():
    with pytest.raises(ValueError, match="log2_hashmap_size"):
        GridLayout.from_resolution_range(3, 16, 16, 2048, 40, 2)
    with pytest.raises(ValueError, match="max_resolution"):
        GridLayout.from_resolution_range(3, 16, 64, 16, 19, 2)
