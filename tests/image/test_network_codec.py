"""Tests for nerfcompress.image.network_codec: exp-Golomb coding and the quantisation search."""

import numpy as np
import pytest
import torch

from nerfcompress.errors import BitstreamError
from nerfcompress.image.model import Synthesis
from nerfcompress.image.network_codec import (
    best_order,
    decode_expgolomb,
    decode_network,
    encode_expgolomb,
    encode_network,
    expgolomb_bits,
    quantize_network,
)


def test_expgolomb_round_trip_and_exact_length():
    rng = np.random.default_rng(0)
    tensors = [
        (rng.integers(-300, 300, 50), 3),
        (np.array([0, -1, 1, 7]), 0),
        (rng.integers(-5, 5, 9), best_order(rng.integers(-5, 5, 9))),
    ]
    data = encode_expgolomb(tensors)
    assert len(data) == -(-sum(expgolomb_bits(v, k) for v, k in tensors) // 8)
    decoded = decode_expgolomb(data, [(len(v), k) for v, k in tensors])
    for (values, _), out in zip(tensors, decoded):
        assert np.array_equal(values, out)


def test_order_zero_codes_small_integers_in_few_bits():
    assert expgolomb_bits(np.array([0]), 0) == 1
    assert expgolomb_bits(np.array([-1, 1]), 0) == 6  # 010, 011


def test_damaged_streams_raise():
    data = encode_expgolomb([(np.arange(-4, 4), 1)])
    with pytest.raises(BitstreamError):
        decode_expgolomb(data[:-1], [(8, 1)])
    with pytest.raises(BitstreamError, match="after its last weight"):
        decode_expgolomb(data + b"\xff", [(8, 1)])
    with pytest.raises(BitstreamError):
        decode_expgolomb(b"\x00" * 10, [(1, 0)])


def test_quantised_network_decodes_bit_exactly_and_the_search_trades_bits():
    torch.manual_seed(0)
    net = Synthesis(4, (8,), 3)
    for p in net.parameters():
        p.data.normal_()
    x = torch.randn(256, 4)
    reference = net(x).detach()
    coarse, fine = Synthesis(4, (8,), 3), Synthesis(4, (8,), 3)
    coarse.load_state_dict(net.state_dict())
    fine.load_state_dict(net.state_dict())
    distortion = lambda model: float((model(x) - reference).square().mean())  # noqa: E731
    steps_coarse = quantize_network(coarse, lambda bits: distortion(coarse) + 1e-2 * bits)
    steps_fine = quantize_network(fine, lambda bits: distortion(fine) + 1e-7 * bits)
    assert sum(s["e"] for s in steps_fine) > sum(s["e"] for s in steps_coarse)
    assert len(encode_network(fine, steps_fine)) > len(encode_network(coarse, steps_coarse))
    decoded = Synthesis(4, (8,), 3)
    decode_network(decoded, steps_fine, encode_network(fine, steps_fine))
    for a, b in zip(decoded.parameters(), fine.parameters()):
        assert torch.equal(a, b)


def test_decode_network_rejects_bad_entries():
    net = Synthesis(2, (), 1)
    with pytest.raises(BitstreamError):
        decode_network(net, [{"e": 3}], b"\x00")
    with pytest.raises(BitstreamError, match="too few"):
        decode_network(net, [{"e": 3, "order": 0}, {"e": 3, "order": 0}], b"")
