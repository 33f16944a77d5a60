import numpy as np
import pytest
import torch

from nerfcompress.tables.uniform import dequantize_uniform, quantize_uniform, round_trip_uniform


def _rows(num_rows: int = 5000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.laplace(0.0, 0.2, (num_rows, 2)) + [0.0, 0.3]).astype(np.float32)


@pytest.mark.parametrize("bits", range(2, 9))
def test_error_is_at_most_half_a_step_and_the_range_ends_are_kept(bits):
    rows = _rows()
    symbols, minimum, step = quantize_uniform(rows, bits)
    assert symbols.dtype == np.uint8 and symbols.shape == rows.shape
    assert minimum.dtype == np.float32 and step.dtype == np.float32
    assert minimum == rows.min() and symbols.min() == 0 and symbols.max() == 2**bits - 1
    assert step == np.float32((float(rows.max()) - float(rows.min())) / (2**bits - 1))
    decoded = dequantize_uniform(symbols, minimum, step)
    assert decoded.dtype == np.float32
    slack = 4 * np.finfo(np.float32).eps * np.abs(rows).max()  # float32 rounding of m + q * s
    assert np.abs(decoded - rows).max() <= step / 2 + slack


def test_more_bits_give_a_smaller_error_and_torch_input_quantizes_like_numpy():
    rows = _rows()
    errors = [np.abs(dequantize_uniform(*quantize_uniform(rows, bits)) - rows).max() for bits in (2, 4, 6, 8)]
    assert errors == sorted(errors, reverse=True)
    for got, expected in zip(quantize_uniform(torch.from_numpy(rows), 6), quantize_uniform(rows, 6)):
        np.testing.assert_array_equal(got, expected)


def test_a_constant_level_has_step_zero_and_decodes_exactly():
    rows = np.full((7, 2), -0.125, np.float32)
    symbols, minimum, step = quantize_uniform(rows, 8)
    assert step == 0 and not symbols.any()
    np.testing.assert_array_equal(dequantize_uniform(symbols, minimum, step), rows)


def test_dequantization_is_plain_float32_arithmetic():
    symbols = np.array([[0, 1], [254, 255]], np.uint8)
    minimum, step = np.float32(-0.3), np.float32(0.1)
    expected = np.array([[minimum + np.float32(q) * step for q in row] for row in symbols.tolist()], np.float32)
    np.testing.assert_array_equal(dequantize_uniform(symbols, minimum, step), expected)


def test_round_trip_quantizes_every_level_on_its_own():
    coarse, fine = _rows(10, seed=1), 100 * _rows(30, seed=2)
    rows = np.concatenate([coarse, fine])
    decoded = round_trip_uniform(torch.from_numpy(rows), (10, 30), 4)
    np.testing.assert_array_equal(decoded[:10], dequantize_uniform(*quantize_uniform(coarse, 4)))
    np.testing.assert_array_equal(decoded[10:], dequantize_uniform(*quantize_uniform(fine, 4)))
    with pytest.raises(ValueError, match="level_rows"):
        round_trip_uniform(rows, (10, 31), 4)


def test_bad_arguments_raise_value_error():
    rows = _rows(4)
    for bits in (1, 9, 8.0, True):
        with pytest.raises(ValueError, match="bits must be an int in 2..8"):
            quantize_uniform(rows, bits)
    for bad in (np.zeros((0, 2), np.float32), np.zeros(4, np.float32), np.array([[0.0, np.nan]])):
        with pytest.raises(ValueError):
            quantize_uniform(bad, 8)
    with pytest.raises(ValueError, match="too wide"):
        quantize_uniform(np.array([[-3e38, 3e38]], np.float32), 8)
    with pytest.raises(ValueError, match="uint8"):
        dequantize_uniform(np.zeros((2, 2), np.int32), np.float32(0), np.float32(1))
    with pytest.raises(ValueError, match="float32 scalar"):
        dequantize_uniform(np.zeros((2, 2), np.uint8), 0.0, np.float32(1))
