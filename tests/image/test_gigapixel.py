"""A 16k x 16k picture encodes and decodes in bounded memory (peak RSS measured in subprocesses).

Bound: the encoder may hold the picture once in uint8 (it trains from a memory map of the
``.npy``, whose pages count in its RSS as they are read) plus ``MODEL_AND_BUFFERS``; the decoder
writes strip by strip and may hold only ``MODEL_AND_BUFFERS``. Both are measured above each
subprocess's RSS after its imports (torch alone is ~700 MB here).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from nerfcompress.image.procedural import procedural_strip, write_procedural

SIDE = 16384
MODEL_AND_BUFFERS = 512 * 2**20
REPO = Path(__file__).resolve().parents[2]


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_image_gigapixel", REPO / "scripts/bench_image_gigapixel.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.timeout(3600)  # about 3 minutes on an idle 2-core machine; a shared one is much slower
def test_gigapixel_encode_and_decode_in_bounded_memory(tmp_path):
    bench = _bench_module()
    photo = write_procedural(tmp_path / "big.npy", SIDE, SIDE)
    image_bytes = SIDE * SIDE * 3
    encoded, decoded = tmp_path / "big.ncmp", tmp_path / "out.npy"
    flags = ("--steps", "100", "--batch-pixels", "65536", *bench.GIGAPIXEL_MODEL)
    encode = bench.run_measured("encode", str(photo), "-o", str(encoded), *flags)
    assert encode["peak_rss"] - encode["baseline_rss"] < image_bytes + MODEL_AND_BUFFERS, encode
    decode = bench.run_measured("decode", str(encoded), "-o", str(decoded))
    assert decode["peak_rss"] - decode["baseline_rss"] < MODEL_AND_BUFFERS, decode
    out = np.load(decoded, mmap_mode="r")
    assert out.shape == (SIDE, SIDE, 3)
    for row in (0, SIDE // 2, SIDE - 64):  # the model learnt the picture everywhere, not just somewhere
        reference = procedural_strip(row, row + 64, SIDE, SIDE).astype(np.float64)
        mse = np.mean(np.square(np.asarray(out[row : row + 64]) - reference))
        assert 10 * np.log10(255**2 / mse) > 18.0
