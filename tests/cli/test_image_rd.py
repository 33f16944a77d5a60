"""Helpers of scripts/image_rd.py: quality bisection, log-bpp interpolation, BD-rate."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rd():
    spec = importlib.util.spec_from_file_location("image_rd", REPO / "scripts/image_rd.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_bisection_brackets_the_target(rd):
    calls = []
    rate_of = lambda q: calls.append(q) or {"quality": q, "bpp": 0.01 * q, "psnr": 20 + q / 10}  # noqa: E731
    below, above = rd.bracket_quality(rate_of, 0.437, 0, 100)
    assert (below["quality"], above["quality"]) == (43, 44)
    assert len(calls) <= 2 + math.ceil(math.log2(100))
    assert rd.bracket_quality(rate_of, 5.0, 0, 100) == (rate_of(100), rate_of(100))


def test_interpolation_is_linear_in_log_bpp_and_never_extrapolates(rd):
    points = [{"bpp": 0.25, "psnr": 30.0}, {"bpp": 1.0, "psnr": 36.0}]
    assert rd.interpolate_log_bpp(points, 0.5) == pytest.approx(33.0)
    assert math.isnan(rd.interpolate_log_bpp(points, 2.0))


def test_bd_rate_of_a_curve_needing_half_the_bits_is_minus_fifty_percent(rd):
    anchor = [{"bpp": b, "psnr": 30 + 4 * np.log2(b / 0.25)} for b in (0.25, 0.375, 0.5, 0.75)]
    better = [{"bpp": p["bpp"] / 2, "psnr": p["psnr"]} for p in anchor]
    assert rd.bd_rate_percent(anchor, better) == pytest.approx(-50.0, abs=0.5)
    duplicated = anchor + [dict(anchor[1])]  # repeated and non-monotone points are dropped first
    assert rd.bd_rate_percent(anchor, duplicated) == pytest.approx(0.0, abs=0.1)


def test_classical_codecs_reach_their_rates(rd):
    photo = (np.random.default_rng(0).integers(0, 256, (64, 64, 3))).astype(np.uint8)
    for codec in rd.CLASSICAL:
        point = rd.classical_point(photo, codec, 50)
        assert point["bpp"] > 0 and point["psnr"] > 5
