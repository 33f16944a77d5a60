"""Tests for the context model: its integer twin, its tables, wavefront coding and hostile payloads."""

import math

import numpy as np
import pytest
import torch

from nerfcompress.entropy.coder import build_tables, empirical_pmf, encode_latents, pack_tables
from nerfcompress.entropy.context import (
    CENTRE_STEPS,
    CONTEXT_OFFSETS,
    MAX_CONTEXT_RANGE,
    NUM_SCALES,
    TABLE_TOTAL,
    THETA_NUMERATORS,
    ContextModel,
    IntegerContextModel,
    context_tables,
    decode_raster,
    encode_raster,
    wavefronts,
)
from nerfcompress.errors import BitstreamError
from nerfcompress.varint import encode_uvarints, zigzag

COLS = 60


def _smooth_latents(count=2_390, seed=0):
    """Latents with spatial structure: a random walk along each row of ``COLS``, quantised."""
    rng = np.random.default_rng(seed)
    rows = -(-count // COLS)
    walk = np.cumsum(rng.integers(-1, 2, (rows, COLS)), axis=1) // 2
    return walk.reshape(-1)[:count].astype(np.int32)


def _fitted_model(values, steps=150, seed=0):
    torch.manual_seed(seed)
    model = ContextModel((8,), num_levels=2)
    optimizer = torch.optim.Adam(model.parameters(), 2e-2)
    latents = torch.from_numpy(values).float()
    for _ in range(steps):
        bits = model.rate_bits(latents, COLS, 1)
        optimizer.zero_grad()
        bits.backward()
        optimizer.step()
    return model


@pytest.fixture(scope="module")
def fitted():
    values = _smooth_latents()
    model = _fitted_model(values)
    return values, model, IntegerContextModel.from_module(model)


def _factorised_bytes(values):
    column = values.reshape(-1, 1)
    tables = build_tables(column, empirical_pmf(column), total=None)
    return len(pack_tables(tables)) + len(encode_latents(column, tables))


def test_neighbours_are_decoded_on_earlier_wavefronts():
    count, cols = 47, 9  # a short last row
    order, starts = wavefronts(count, cols)
    assert sorted(order.tolist()) == list(range(count))
    front_of = np.empty(count, np.int64)
    for front, (a, b) in enumerate(zip(starts[:-1], starts[1:])):
        front_of[order[a:b]] = front
    for position in range(count):
        row, col = divmod(position, cols)
        for dr, dc in CONTEXT_OFFSETS:
            r, c = row + dr, col + dc
            if 0 <= r and 0 <= c < cols and r * cols + c < count:
                assert front_of[r * cols + c] < front_of[position]


def test_a_fitted_model_codes_structured_latents_well_below_their_frequencies(fitted):
    values, model, twin = fitted
    payload = encode_raster(values, COLS, twin, 1)
    assert payload[0] == 1  # the context-coded mode was the shorter
    assert len(payload) < 0.75 * _factorised_bytes(values)
    estimate = float(model.rate_bits(torch.from_numpy(values).float(), COLS, 1).detach()) / 8
    assert abs(len(payload) - estimate) < 0.05 * estimate + 16  # the twin codes what training priced
    assert np.array_equal(decode_raster(payload, len(values), COLS, twin, 1), values)


def test_latents_without_structure_fall_back_to_their_own_frequency_table():
    values = np.random.default_rng(1).integers(-3, 4, 600).astype(np.int32)
    twin = IntegerContextModel.from_module(ContextModel((8,), num_levels=1))  # untrained: b = 1 everywhere
    payload = encode_raster(values, COLS, twin, 0)
    assert payload[0] == 0 and len(payload) == 1 + _factorised_bytes(values)
    assert np.array_equal(decode_raster(payload, len(values), COLS, twin, 0), values)


def test_a_level_of_one_value_and_a_level_of_outliers_round_trip(fitted):
    _, _, twin = fitted
    constant = np.full(130, 5, np.int32)
    outliers = _smooth_latents(500)
    outliers[7] = 3 * MAX_CONTEXT_RANGE  # beyond the context tables: coded with its own frequencies
    for values in (constant, outliers):
        payload = encode_raster(values, COLS, twin, 1)
        assert np.array_equal(decode_raster(payload, len(values), COLS, twin, 1), values)
    assert encode_raster(outliers, COLS, twin, 1)[0] == 0


def test_the_integer_twin_gives_the_same_answer_with_and_without_float_products(fitted):
    _, _, twin = fitted
    assert twin._float_weights is not None  # the fitted model's sums stay exact in float64
    contexts = np.random.default_rng(2).integers(-1024, 1025, (500, len(CONTEXT_OFFSETS)))
    exact = IntegerContextModel.__new__(IntegerContextModel)
    exact.__dict__.update(twin.__dict__, _float_weights=None)  # int64 products only
    for level in (0, 1):
        assert all(np.array_equal(a, b) for a, b in zip(twin.predict(contexts, level), exact.predict(contexts, level)))


def test_scale_numerators_are_far_from_a_rounding_boundary():
    """Each is round(2**16 * exp(-2**(3 - u/4))): a libm that differs by an ulp rounds it the same."""
    for u, numerator in enumerate(THETA_NUMERATORS):
        exact = 65536 * math.exp(-(2.0 ** (3 - u / 4)))
        if 1 < exact < 65535:
            assert abs(exact - math.floor(exact) - 0.5) > 1e-6
            assert numerator == round(exact)
    assert list(THETA_NUMERATORS) == sorted(THETA_NUMERATORS) and len(THETA_NUMERATORS) == NUM_SCALES


def test_context_tables_sum_to_their_total_and_mirror_around_a_whole_centre():
    tables = context_tables(5)
    assert tables.shape == (NUM_SCALES * CENTRE_STEPS, 11)
    assert (tables.sum(axis=1) == TABLE_TOTAL).all() and tables.min() >= 1
    whole = tables[CENTRE_STEPS // 2 :: CENTRE_STEPS]  # fraction 0 of every scale
    assert np.abs(whole - whole[:, ::-1]).max() <= 1  # the leftover counts go to the lower index on ties
    assert (np.diff(whole[:, 5]) <= 0).all()  # wider scales put less mass on the centre


def _context_payload(values, twin, level):
    lo, hi = int(values.min()), int(values.max())
    payload = encode_raster(values, COLS, twin, level)
    assert payload[0] == 1 and payload[1:].startswith(encode_uvarints([zigzag(lo), hi - lo]))
    return payload


def test_damaged_payloads_raise_bitstream_errors(fitted):
    values, _, twin = fitted
    payload = _context_payload(values, twin, 1)
    header = 1 + len(encode_uvarints([zigzag(int(values.min())), int(values.max() - values.min())]))
    cases = {
        "mode": bytes([7]) + payload[1:],
        "truncated": payload[:-4],
        "ragged": payload[:-1],
        "extra word": payload + b"\0\0\0\0",
        "range": bytes([1]) + encode_uvarints([0, MAX_CONTEXT_RANGE + 1]) + payload[header:],
        "empty range": bytes([1]) + encode_uvarints([0, 0]) + payload[header:],
        "empty": b"",
    }
    for damaged in cases.values():
        with pytest.raises(BitstreamError):
            decode_raster(damaged, len(values), COLS, twin, 1)
    with pytest.raises(BitstreamError, match="level"):
        decode_raster(payload, len(values), COLS, twin, 5)


def test_flipped_bits_decode_to_the_values_or_raise_bitstream_errors(fitted):
    values, _, twin = fitted
    payload = _context_payload(values, twin, 1)
    rng = np.random.default_rng(3)
    for _ in range(40):
        damaged = bytearray(payload)
        damaged[int(rng.integers(0, len(damaged)))] ^= 1 << int(rng.integers(0, 8))
        try:
            decoded = decode_raster(bytes(damaged), len(values), COLS, twin, 1)
        except BitstreamError:
            continue
        assert decoded.shape == values.shape  # a flip the checks cannot see (the section's CRC does)


def test_the_rate_from_sampled_positions_estimates_the_whole_levels(fitted):
    values, model, _ = fitted
    latents = torch.from_numpy(values).float()
    with torch.no_grad():
        whole = float(model.rate_bits(latents, COLS, 1))
        every = float(model.rate_bits(latents, COLS, 1, torch.arange(len(values))))
        half = float(model.rate_bits(latents, COLS, 1, torch.randperm(len(values))[: len(values) // 2]))
    assert math.isclose(every, whole, rel_tol=1e-5)
    assert math.isclose(half, whole, rel_tol=0.05)
