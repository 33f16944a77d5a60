"""The synthesis network in the file: weights quantised with a searched step, exp-Golomb coded.

Cool-chic's recipe (``coolchic/nnquant/``): each tensor (every layer's weight and bias) is
rounded to a multiple of its own step ``2**-e``, with ``e`` chosen after training to minimise
``MSE + lambda * bpp`` with every byte of the network counted, and the integers are written
with a signed exp-Golomb code whose order is chosen per tensor. Decoding is integer-exact: the
decoder multiplies the integers by ``2**-e``.

Stream layout: the tensors in order, each the exp-Golomb codes of its integers, row-major; bits
are packed most significant first and the stream is padded with zeros to a whole byte. The
header records ``(e, order)`` per tensor; the element counts come from the model's shapes.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from nerfcompress.errors import BitstreamError

STEP_EXPONENTS = tuple(range(2, 14))
"""Candidate steps ``2**-e`` of the quantisation search."""
MAX_ORDER = 12
"""Largest exp-Golomb order tried and accepted."""
_MAX_PREFIX_ZEROS = 40


def _zigzag(values: np.ndarray) -> np.ndarray:
    return np.where(values >= 0, 2 * values, -2 * values - 1).astype(np.int64)


def _unzigzag(codes: np.ndarray) -> np.ndarray:
    return np.where(codes % 2 == 0, codes // 2, -(codes + 1) // 2)


def expgolomb_bits(values: np.ndarray, order: int) -> int:
    """Bits of the signed exp-Golomb code of order ``order`` of int64 ``values [n]``."""
    shifted = _zigzag(values) + (1 << order)
    lengths = np.floor(np.log2(shifted.astype(np.float64))).astype(np.int64)  # exact below 2**52
    return int(np.sum(2 * lengths - order + 1))


def best_order(values: np.ndarray) -> int:
    """The exp-Golomb order in ``0 .. MAX_ORDER`` that codes ``values`` in the fewest bits."""
    return min(range(MAX_ORDER + 1), key=lambda k: expgolomb_bits(values, k))


def encode_expgolomb(tensors: Sequence[Tuple[np.ndarray, int]]) -> bytes:
    """One byte-padded stream of the int64 ``values`` of each ``(values, order)``, in order."""
    chunks: List[str] = []
    for values, order in tensors:
        for code in (_zigzag(np.asarray(values, np.int64).reshape(-1)) + (1 << order)).tolist():
            binary = bin(code)[2:]
            chunks.append("0" * (len(binary) - 1 - order) + binary)
    bits = "".join(chunks)
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""


def decode_expgolomb(data: bytes, counts_orders: Sequence[Tuple[int, int]]) -> List[np.ndarray]:
    """Inverse of :func:`encode_expgolomb`: ``int64 [count]`` per ``(count, order)``.

    Raises:
        BitstreamError: the stream ends early, holds a code longer than any a weight needs,
            or has more than padding left over.
    """
    bits = "".join(f"{byte:08b}" for byte in data)
    position, out = 0, []
    for count, order in counts_orders:
        if not 0 <= order <= MAX_ORDER:
            raise BitstreamError(f"network stream declares exp-Golomb order {order!r}; the file is corrupt")
        codes = np.empty(count, np.int64)
        for i in range(count):
            one = bits.find("1", position, position + _MAX_PREFIX_ZEROS + 1)
            if one < 0:
                raise BitstreamError("network stream ends early or holds an impossible code; the file is corrupt")
            zeros = one - position
            end = one + zeros + order + 1
            if end > len(bits):
                raise BitstreamError("network stream ends inside a code; the file is truncated or corrupt")
            codes[i] = int(bits[one:end], 2) - (1 << order)
            position = end
        out.append(_unzigzag(codes))
    if len(bits) - position >= 8 or "1" in bits[position:]:
        raise BitstreamError("network stream has data after its last weight; the file is corrupt")
    return out


def network_tensors(network: nn.Module) -> List[Tuple[str, nn.Parameter]]:
    """The network's parameters in file order (``named_parameters`` order)."""
    return list(network.named_parameters())


@torch.no_grad()
def quantize_network(
    network: nn.Module, loss_of_bits: Callable[[float], float], exponents: Sequence[int] = STEP_EXPONENTS
) -> List[Dict[str, int]]:
    """Rounds every tensor of ``network`` in place to its best step; returns ``[{"e", "order"}]``.

    Greedy, tensor by tensor in file order: each candidate step ``2**-e`` is applied (earlier
    tensors already quantised, later ones still float) and scored by ``loss_of_bits(bits)``,
    given the network's coded bits so far (the caller adds distortion and the rest of the rate).

    Args:
        network: the synthesis network (modified in place).
        loss_of_bits: ``bits of the quantised tensors -> loss`` (lower is better).
        exponents: candidate ``e``.

    Returns:
        Per tensor the chosen exponent ``e`` and exp-Golomb order.
    """
    chosen: List[Dict[str, int]] = []
    coded_bits = 0
    for _, param in network_tensors(network):
        original = param.detach().clone()
        best = None
        for exponent in exponents:
            ints = torch.round(original * 2.0**exponent).to(torch.int64).numpy().reshape(-1)
            order = best_order(ints)
            bits = expgolomb_bits(ints, order)
            param.copy_(torch.from_numpy(ints.reshape(original.shape)).to(param) * 2.0**-exponent)
            loss = loss_of_bits(coded_bits + bits)
            if best is None or loss < best[0]:
                best = (loss, exponent, order, bits)
        _, exponent, order, bits = best
        param.copy_(torch.round(original * 2.0**exponent) * 2.0**-exponent)
        coded_bits += bits
        chosen.append({"e": exponent, "order": order})
    return chosen


def encode_network(network: nn.Module, steps: Sequence[Dict[str, int]]) -> bytes:
    """The stream of a network quantised by :func:`quantize_network` with ``steps``."""
    tensors = []
    for (_, param), step in zip(network_tensors(network), steps):
        ints = torch.round(param.detach() * 2.0 ** step["e"]).to(torch.int64).numpy()
        tensors.append((ints, step["order"]))
    return encode_expgolomb(tensors)


@torch.no_grad()
def decode_network(network: nn.Module, steps: object, data: bytes) -> None:
    """Fills ``network``'s parameters from a stream and its untrusted ``steps`` entry.

    Raises:
        BitstreamError: a malformed entry or a damaged stream.
    """
    params = network_tensors(network)
    valid = isinstance(steps, list) and len(steps) == len(params)
    valid = valid and all(
        isinstance(s, dict) and set(s) == {"e", "order"} and all(type(v) is int for v in s.values()) for s in steps
    )
    if not valid or not all(0 <= s["e"] <= 30 for s in steps):
        raise BitstreamError(f"network steps {steps!r:.200} do not match the network's {len(params)} tensors")
    # Every weight costs at least one bit: a stream this short cannot hold them all (bounds the work).
    total = sum(p.numel() for _, p in params)
    if 8 * len(data) < total:
        raise BitstreamError(
            f"network stream holds {len(data)} bytes, too few for {total} weights; the file is corrupt"
        )
    values = decode_expgolomb(data, [(p.numel(), s["order"]) for (_, p), s in zip(params, steps)])
    for (_, param), step, ints in zip(params, steps, values):
        param.copy_(torch.from_numpy(ints.reshape(param.shape)).to(param) * 2.0 ** -step["e"])
