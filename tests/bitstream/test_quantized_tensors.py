"""Tests for nerfcompress.bitstream.quantized_tensors: per-tensor precisions and their cost."""

import numpy as np
import pytest

from nerfcompress.bitstream.quantized_tensors import (
    decode_quantized_tensors,
    encode_quantized_tensors,
    quantized_bits,
    round_trip,
)


def _tensors():
    rng = np.random.default_rng(0)
    return [rng.normal(0, 0.3, (16, 7)).astype(np.float32), rng.normal(0, 0.01, 16).astype(np.float32)]


def test_each_tensor_decodes_to_its_own_precisions_round_trip():
    tensors = _tensors()
    payload = encode_quantized_tensors(tensors, [3, 9])
    decoded = decode_quantized_tensors(payload, [t.size for t in tensors])
    for tensor, precision, values in zip(tensors, (3, 9), decoded):
        np.testing.assert_array_equal(values, round_trip(tensor, precision).reshape(-1))
    assert not np.array_equal(decoded[0], round_trip(tensors[0], 9).reshape(-1))


def test_one_precision_for_all_is_the_same_as_repeating_it():
    tensors = _tensors()
    assert encode_quantized_tensors(tensors, 6) == encode_quantized_tensors(tensors, [6, 6])


def test_quantized_bits_predict_the_payload_and_grow_with_precision():
    tensors = _tensors()
    for precision in (2, 6, 10):
        predicted = sum(quantized_bits(t, precision) for t in tensors) / 8 + 4  # + the checksum
        actual = len(encode_quantized_tensors(tensors, precision))
        assert predicted - 1 <= actual <= predicted + 8  # one stream: at most a word and its flush
    assert quantized_bits(tensors[0], 4) < quantized_bits(tensors[0], 8)


@pytest.mark.parametrize("precisions", [[3], [3, 13], [3, -1], [3, True]])
def test_bad_precisions_are_refused(precisions):
    with pytest.raises(ValueError, match="precision"):
        encode_quantized_tensors(_tensors(), precisions)
