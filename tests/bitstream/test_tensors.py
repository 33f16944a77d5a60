import numpy as np
import pytest
import torch

from nerfcompress.bitstream.tensors import pack_tensors, unpack_tensors
from nerfcompress.errors import BitstreamError


def test_round_trip_fp16_fp32_and_integers():
    arrays = {"w": torch.randn(3, 4), "b": np.arange(5, dtype=np.float32), "scalar": np.float32(2.5)}
    spec, payload = pack_tensors(arrays, "<f2")
    assert len(payload) == 2 * (12 + 5 + 1)
    out = unpack_tensors(spec, payload)
    assert out["w"].dtype == np.float16 and out["w"].shape == (3, 4) and out["scalar"].shape == ()
    np.testing.assert_array_equal(out["w"], arrays["w"].numpy().astype(np.float16))
    spec, payload = pack_tensors({"w": arrays["w"], "i": np.array([[1, -2]], np.int32)}, None)
    out = unpack_tensors(spec, payload)
    np.testing.assert_array_equal(out["w"], arrays["w"].numpy())
    assert out["i"].dtype == np.int32 and out["i"].tolist() == [[1, -2]]


def test_payload_is_little_endian():
    _, payload = pack_tensors({"u": np.array([1], np.uint32)}, "<u4")
    assert payload == b"\x01\x00\x00\x00"


def test_values_fp16_cannot_hold_are_refused():
    with pytest.raises(ValueError, match="overflows"):
        pack_tensors({"big": np.array([1e6], np.float32)}, "<f2")
    with pytest.raises(ValueError, match="NaN"):
        pack_tensors({"nan": np.array([np.nan], np.float32)}, "<f4")
    with pytest.raises(ValueError, match="not one of"):
        pack_tensors({"d": np.zeros(2)}, None)


@pytest.mark.parametrize(
    "spec",
    [
        [{"name": "w", "dtype": "<f2", "shape": [3, 5]}],
        [{"name": "w", "dtype": "<f8", "shape": [3, 4]}],
        [{"name": "w", "dtype": "<f2", "shape": [2**40, 2**40]}],
        [{"name": "w", "dtype": "<f2", "shape": [-12, -1]}],
        [{"name": "w", "dtype": "<f2", "shape": "12"}],
        {"name": "w"},
        [{"name": "w", "dtype": "<f2", "shape": [6]}, {"name": "w", "dtype": "<f2", "shape": [6]}],
    ],
)
def test_spec_that_does_not_match_the_payload_raises(spec):
    _, payload = pack_tensors({"w": np.zeros((3, 4), np.float32)}, "<f2")
    with pytest.raises(BitstreamError):
        unpack_tensors(spec, payload)
