"""A context model for dense 2D latent levels: each latent's distribution from its decoded neighbours.

Cool-chic and C3 code each latent under a distribution that a small MLP (the *ARM*) predicts from
already-decoded neighbours of the same level. Here one MLP serves every dense level of a picture.
Latent ``y[a, b]`` of a level ``[Y, X]`` sees the :data:`CONTEXT_OFFSETS` neighbours ``y[a + da,
b + db]`` (zero outside the level) and predicts a centre ``mu`` and a scale index ``u``; ``y`` is
coded under the two-sided geometric distribution

    P(y) ~ theta_u ** |y - mu|  over the integers,  theta_u = exp(-1 / b_u),  b_u = 2 ** (u / 4 - 3)

(a discrete Laplace of scale ``b_u``, :data:`NUM_SCALES` scales from 1/8 to 128).

Training (:meth:`ContextModel.rate_bits`) takes this code length with the continuous ``mu`` and
``u`` of the float MLP. Coding uses an integer twin (:class:`IntegerContextModel`) of the same
MLP: its weights, stored quantised, become fixed-point integers, every activation is an integer
of :data:`ACTIVATION_BITS` fractional bits, ``mu`` is rounded to ``1 / CENTRE_STEPS`` and ``u`` to an
integer, so encoder and decoder compute the same distribution on any machine without trusting
float arithmetic. The distributions themselves come from integer tables built with IEEE
``* sqrt`` and :func:`~nerfcompress.entropy.coder.quantize_pmf`: for each scale ``j`` and
step ``f`` of the centre's fraction, the counts of the residual ``r = y - c`` (``c`` the centre's
integer part) over ``-R .. R`` with ``R = hi - lo`` the level's range.

A level is a vector of ``count`` latents laid out row-major in rows of ``cols`` (the last row
may be short: a dense tcnn level whose columns wrap onto the next row is stored so). Neighbours
never lie ahead on the wavefront ``t = b + 2 a`` (:func:`wavefronts`), so a decoder decodes a
whole front at once: about ``cols + 2 rows`` batched steps per level instead of ``count``.

Payload of one level (:func:`encode_raster`)::

    1       mode: 0 = factorised (the level's own frequency table, as every other level is
            coded), 1 = context model; the encoder writes whichever is shorter
    mode 0: the table (:func:`~nerfcompress.entropy.coder.pack_tables`), then the range-coder stream
    mode 1: zigzag LEB128 lo, LEB128 R = hi - lo (1 .. MAX_CONTEXT_RANGE), then the stream
            (little-endian uint32 words) of the residuals in wavefront order
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import constriction
import numpy as np
import torch
from torch import Tensor, nn

from nerfcompress.entropy.coder import (
    decode_latents,
    empirical_tables,
    encode_latents,
    pack_tables,
    quantize_pmf,
    unpack_tables,
)
from nerfcompress.errors import BitstreamError
from nerfcompress.varint import encode_uvarints, read_uvarints, unzigzag, zigzag

CONTEXT_OFFSETS = ((0, -1), (0, -2), (-1, -1), (-1, 0), (-1, 1), (-2, -1), (-2, 0), (-2, 1))
"""``(row, column)`` offsets of the neighbours a latent's distribution depends on, all decoded
before it in raster order and on an earlier wavefront ``t = column + 2 * row``."""
_PAD_TOP = -min(da for da, _ in CONTEXT_OFFSETS)  # zero rows above a level: every neighbour's
_PAD_LEFT = -min(min(db for _, db in CONTEXT_OFFSETS), 0)  # zero columns left of it
_PAD_RIGHT = max(max(db for _, db in CONTEXT_OFFSETS), 0)  # and right of it
NUM_SCALES = 41
"""Scale indices ``u = 0 .. 40``: ``b_u = 2 ** (u / 4 - 3)``, 1/8 to 128."""
INITIAL_SCALE_INDEX = 12.0
"""``u`` of a new model (``b = 1``)."""
ACTIVATION_BITS = 8
"""Fractional bits of the integer model's activations."""
WEIGHT_BITS = 16
"""Fractional bits of the integer model's weights (a stored weight's step is coarser)."""
CONTEXT_CLIP = 1 << 10
"""Neighbour values are clipped to ``[-CONTEXT_CLIP, CONTEXT_CLIP]`` before the MLP (both models)."""
CENTRE_STEPS = 16
"""Steps of the centre's fraction the coded distributions distinguish (a power of two): a scale
of 1/4 misplaced by 1/8 costs up to 0.7 bits a latent, by 1/32 under 0.2."""
_CENTRE_BITS = CENTRE_STEPS.bit_length() - 1
MAX_CONTEXT_RANGE = 1024
"""Largest ``hi - lo`` of a level coded with the context model (its tables hold ``2 R + 1`` counts)."""
TABLE_TOTAL = 1 << 16
"""Sum of every context table's counts."""
_MODES = (0, 1)
_CHUNK_COUNTS = 1 << 22  # counts handed to the range coder at once when encoding (bounds memory)
_PREDICT_CHUNK = 1 << 16  # latents the encoder predicts at once
_THETA_DENOMINATOR = 1 << 16
THETA_NUMERATORS: Tuple[int, ...] = tuple(
    min(_THETA_DENOMINATOR - 1, max(1, round(_THETA_DENOMINATOR * math.exp(-(2.0 ** (3 - u / 4))))))
    for u in range(NUM_SCALES)
)
"""``theta_u = THETA_NUMERATORS[u] / 2**16`` of each scale index (what coding uses)."""


def _scale_theta_log(u: Tensor) -> Tensor:
    """``ln theta_u = -1 / b_u`` for continuous ``u`` clamped to the scale range."""
    return -torch.exp2(3.0 - u.clamp(0, NUM_SCALES - 1) / 4.0)


def raster_rows(count: int, cols: int) -> int:
    """Rows of a level of ``count`` latents in rows of ``cols``."""
    return -(-count // cols)


def neighbour_stack(values: Tensor, cols: int, positions: Optional[Tensor] = None) -> Tensor:
    """The context of the latents of a level ``[count]`` at ``positions`` (int64 ``[n]``; None:
    all of them): ``[n, K]``, zeros outside the level."""
    count = values.shape[0]
    rows = raster_rows(count, cols)
    top, left, right = _PAD_TOP, _PAD_LEFT, _PAD_RIGHT
    grid = nn.functional.pad(values, (0, rows * cols - count)).view(rows, cols)
    padded = nn.functional.pad(grid[None, None], (left, right, top, 0))[0, 0]  # [rows + top, cols + left + right]
    if positions is None:
        taken = [padded[top + da : top + da + rows, left + db : left + db + cols] for da, db in CONTEXT_OFFSETS]
        return torch.stack(taken, dim=-1).reshape(rows * cols, len(CONTEXT_OFFSETS))[:count]
    width = cols + left + right
    own = (torch.div(positions, cols, rounding_mode="floor") + top) * width + positions % cols + left  # [n]
    offsets = torch.tensor([da * width + db for da, db in CONTEXT_OFFSETS], device=positions.device)
    return padded.reshape(-1)[own[:, None] + offsets[None, :]]


def _padded_size(count: int, cols: int) -> int:
    return (raster_rows(count, cols) + _PAD_TOP) * (cols + _PAD_LEFT + _PAD_RIGHT)


class ContextModel(nn.Module):
    """The float MLP ``[N, K] -> (mu [N], u [N])`` trained with the latents, plus an offset of
    ``(mu, u)`` per level (``level_offsets [levels, 2]``): one MLP for every level, each level's
    own centre and spread.

    Args:
        hidden: hidden widths (ReLU), at least one.
        num_levels: levels it codes (indices ``0 .. num_levels - 1``).
    """

    def __init__(self, hidden: Sequence[int], num_levels: int) -> None:
        super().__init__()
        if not hidden or num_levels < 1:
            raise ValueError(f"a context model needs a hidden layer and a level, got {list(hidden)}, {num_levels}")
        widths = [len(CONTEXT_OFFSETS), *hidden, 2]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.level_offsets = nn.Parameter(torch.zeros(num_levels, 2))
        with torch.no_grad():
            self.layers[-1].weight.mul_(0.1)
            self.layers[-1].bias.copy_(torch.tensor([0.0, INITIAL_SCALE_INDEX]))

    def forward(self, contexts: Tensor, level: int) -> Tuple[Tensor, Tensor]:
        hidden = contexts.clamp(-CONTEXT_CLIP, CONTEXT_CLIP)
        for layer in self.layers[:-1]:
            hidden = torch.relu(layer(hidden))
        out = self.layers[-1](hidden) + self.level_offsets[level]
        return out[:, 0], out[:, 1]

    def rate_bits(self, values: Tensor, cols: int, level: int, positions: Optional[Tensor] = None) -> Tensor:
        """Code length in bits of level ``level``'s latents ``[count]`` in rows of ``cols``
        (differentiable in the latents, as values and as contexts, and in the model); with
        ``positions`` (int64 ``[n]``), an estimate from those latents, scaled by ``count / n``."""
        mu, u = self(neighbour_stack(values, cols, positions), level)
        scale = 1.0
        if positions is not None:
            values, scale = values[positions], len(values) / max(len(positions), 1)
        log_theta = _scale_theta_log(u)  # [N], < 0
        frac = mu - torch.floor(mu)
        # log sum_k theta**|k - mu| = log(theta**(1 - frac) + theta**frac) - log(1 - theta)
        log_norm = torch.logaddexp((1 - frac) * log_theta, frac * log_theta) - torch.log(-torch.expm1(log_theta))
        nats = log_norm - torch.abs(values - mu) * log_theta
        return scale * nats.sum() / math.log(2.0)


class IntegerContextModel:
    """The coding twin of a :class:`ContextModel`: integer arithmetic only, so any machine computes
    the same ``(centre, scale index)`` of a latent from its integer neighbours.

    Built from the float model's parameters (``from_module``), which must already hold the values
    the file stores (rounded by the stored quantisation): the weights become ``rint(w * 2**16)``
    and each layer's output is rounded to :data:`ACTIVATION_BITS` fractional bits.
    """

    def __init__(self, weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], level_offsets: np.ndarray) -> None:
        self.level_offsets = np.rint(level_offsets.astype(np.float64) * 2.0**ACTIVATION_BITS).astype(np.int64)
        self.weights = [np.rint(w.astype(np.float64) * 2.0**WEIGHT_BITS).astype(np.int64).T for w in weights]
        shift = 2.0 ** (WEIGHT_BITS + ACTIVATION_BITS)
        self.biases = [np.rint(b.astype(np.float64) * shift).astype(np.int64) for b in biases]
        for w in self.weights:
            if np.abs(w).max(initial=0) >= 1 << 30:
                raise ValueError("context model weights beyond 2**14 cannot be coded exactly")
        # Every partial sum of a layer is an integer; while they all stay below 2**53 a float64
        # product is exact whatever the summation order, so BLAS gives the int64 result.
        bound, exact = float(CONTEXT_CLIP << ACTIVATION_BITS), True
        for w, b in zip(self.weights, self.biases):
            accumulated = bound * float(np.abs(w).sum(axis=0).max(initial=0)) + float(np.abs(b).max(initial=0))
            exact = exact and accumulated < 2.0**52
            bound = accumulated / 2.0**WEIGHT_BITS + 1
        self._float_weights = [w.astype(np.float64) for w in self.weights] if exact else None

    @classmethod
    def from_module(cls, model: ContextModel) -> "IntegerContextModel":
        weights = [layer.weight.detach().cpu().numpy() for layer in model.layers]
        biases = [layer.bias.detach().cpu().numpy() for layer in model.layers]
        return cls(weights, biases, model.level_offsets.detach().cpu().numpy())

    @property
    def num_levels(self) -> int:
        return len(self.level_offsets)

    def predict(self, contexts: np.ndarray, level: int) -> Tuple[np.ndarray, np.ndarray]:
        """``int64 [N, K]`` neighbour values of level ``level`` -> ``(m, u)``: the centre in steps of
        ``1 / CENTRE_STEPS`` and the scale index in ``0 .. NUM_SCALES - 1``, both int64 ``[N]``."""
        hidden = np.clip(contexts.astype(np.int64), -CONTEXT_CLIP, CONTEXT_CLIP) << ACTIVATION_BITS
        half = np.int64(1 << (WEIGHT_BITS - 1))
        for index, (w, b) in enumerate(zip(self.weights, self.biases)):
            if self._float_weights is not None:
                product = (hidden.astype(np.float64) @ self._float_weights[index]).astype(np.int64)
            else:
                product = hidden @ w
            hidden = (product + b + half) >> WEIGHT_BITS
            if index < len(self.weights) - 1:
                np.maximum(hidden, 0, out=hidden)
        hidden = hidden + self.level_offsets[level]
        drop = ACTIVATION_BITS - _CENTRE_BITS
        m = (hidden[:, 0] + (1 << (drop - 1))) >> drop
        u = np.clip((hidden[:, 1] + (1 << (ACTIVATION_BITS - 1))) >> ACTIVATION_BITS, 0, NUM_SCALES - 1)
        return m, u


def context_tables(spread: int) -> np.ndarray:
    """float64 counts ``[NUM_SCALES * S, 2 * spread + 1]`` (``S = CENTRE_STEPS``): row ``S u + f + S / 2``
    (``f`` in ``-S/2 .. S/2 - 1``) is the quantised ``theta_u ** |r - f / S|`` over residuals
    ``r = -spread .. spread``.

    Only IEEE ``* sqrt`` and :func:`~nerfcompress.entropy.coder.quantize_pmf` are used, so every
    machine builds the same counts."""
    residual = np.arange(-spread, spread + 1, dtype=np.int64)
    rows = []
    for numerator in THETA_NUMERATORS:
        step = numerator / _THETA_DENOMINATOR
        for _ in range(_CENTRE_BITS):
            step = math.sqrt(step)  # theta ** (1 / S), each root correctly rounded
        powers = np.cumprod(np.full(CENTRE_STEPS * (spread + 1), step))  # step**1 .. in order
        powers = np.concatenate([[1.0], powers])
        for f in range(-CENTRE_STEPS // 2, CENTRE_STEPS // 2):
            pmf = powers[np.abs(CENTRE_STEPS * residual - f)] + 1e-300  # an underflowed mass still gets its count
            rows.append(quantize_pmf(pmf, TABLE_TOTAL))
    return np.stack(rows).astype(np.float64)


def wavefronts(count: int, cols: int) -> Tuple[np.ndarray, np.ndarray]:
    """Coding order of a level of ``count`` latents in rows of ``cols``: ``(positions int64
    [count], front starts int64 [F + 1])``; front ``t`` holds the positions with ``column + 2 *
    row == t``, top row first."""
    a, b = np.divmod(np.arange(count, dtype=np.int64), cols)
    front = b + 2 * a
    order = np.lexsort((a, front))
    starts = np.concatenate([[0], np.cumsum(np.bincount(front))])
    return order, starts


def _neighbour_index(cols: int, order: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Positions in the zero-padded level (:data:`_PAD_TOP` rows above, :data:`_PAD_LEFT` and
    :data:`_PAD_RIGHT` columns beside) of each coded latent ``[N]`` (coding order), and the offsets
    ``[K]`` from a latent's position to its neighbours'."""
    a, b = np.divmod(order, cols)
    width = cols + _PAD_LEFT + _PAD_RIGHT
    offsets = np.array([da * width + db for da, db in CONTEXT_OFFSETS], dtype=np.int64)
    return (a + _PAD_TOP) * width + (b + _PAD_LEFT), offsets


def _split(m: np.ndarray, u: np.ndarray, lo: int, hi: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(table row, centre)`` of each latent: centre ``c`` clamped to ``lo .. hi``."""
    half = CENTRE_STEPS // 2
    centre = (m + half) >> _CENTRE_BITS
    fraction = m - CENTRE_STEPS * centre  # -S/2 .. S/2 - 1
    return CENTRE_STEPS * u + fraction + half, np.clip(centre, lo, hi)


def _context_stream(values: np.ndarray, cols: int, model: IntegerContextModel, level: int, lo: int, hi: int) -> bytes:
    order, _ = wavefronts(len(values), cols)
    own, offsets = _neighbour_index(cols, order)
    padded = np.zeros(_padded_size(len(values), cols), dtype=np.int64)
    padded[own] = values[order]
    table_rows, centre = np.empty(len(own), np.int64), np.empty(len(own), np.int64)
    for start in range(0, len(own), _PREDICT_CHUNK):  # bounded memory: K neighbours per latent
        part = slice(start, start + _PREDICT_CHUNK)
        table_rows[part], centre[part] = _split(*model.predict(padded[own[part, None] + offsets], level), lo, hi)
    symbols = (values[order] - centre + (hi - lo)).astype(np.int32)
    return _range_code(symbols, table_rows, context_tables(hi - lo))


def _range_code(symbols: np.ndarray, table_rows: np.ndarray, tables: np.ndarray) -> bytes:
    """The stream of residual symbols ``int32 [N]``, each under table row ``table_rows``."""
    encoder = constriction.stream.queue.RangeEncoder()
    family = constriction.stream.model.Categorical(perfect=False)
    chunk = max(1, _CHUNK_COUNTS // tables.shape[1])
    for start in range(0, len(symbols), chunk):
        encoder.encode(symbols[start : start + chunk], family, tables[table_rows[start : start + chunk]])
    return encoder.get_compressed().astype("<u4").tobytes()


def encode_raster(values: np.ndarray, cols: int, model: IntegerContextModel, level: int) -> bytes:
    """The payload of the latents ``int32 [count]`` of the context model's level ``level``, in
    rows of ``cols`` (see the module docstring): the context-coded stream, or the factorised one
    where that is shorter.

    Raises:
        ValueError: ``values`` is not a non-empty int32 ``[count]`` array, ``cols < 1``, or the
            model has no level ``level``.
    """
    if not 0 <= level < model.num_levels:
        raise ValueError(f"the context model codes levels 0 .. {model.num_levels - 1}, not {level}")
    if not (isinstance(values, np.ndarray) and values.dtype == np.int32 and values.ndim == 1 and values.size):
        raise ValueError(f"expected non-empty int32 [count] latents, found {values!r:.80}")
    if cols < 1:
        raise ValueError(f"cols must be >= 1, found {cols}")
    column = values.reshape(-1, 1)
    tables = empirical_tables(column)
    factorised = bytes([0]) + pack_tables(tables) + encode_latents(column, tables)
    lo = int(values.min())
    hi = max(int(values.max()), lo + 1)  # a table of one symbol is no distribution
    if hi - lo > MAX_CONTEXT_RANGE:
        return factorised
    header = bytes([1]) + encode_uvarints([zigzag(lo), hi - lo])
    coded = header + _context_stream(values, cols, model, level, lo, hi)
    return coded if len(coded) < len(factorised) else factorised


def _corrupt(detail: str) -> BitstreamError:
    return BitstreamError(f"context-coded latents {detail}; the file is corrupt")


def decode_raster(payload: bytes, count: int, cols: int, model: IntegerContextModel, level: int) -> np.ndarray:
    """Latents ``int32 [count]`` of a payload :func:`encode_raster` wrote (``count`` and ``cols``
    from the rebuilt model, so what is allocated is bounded by the model, not by the file).

    Raises:
        BitstreamError: an unknown mode, a range beyond :data:`MAX_CONTEXT_RANGE`, a stream that
            is not a whole number of words, decodes out of range, has words left over or is not
            the one the encoder writes.
    """
    if not 0 <= level < model.num_levels:
        raise _corrupt(f"name level {level}, the context model codes {model.num_levels}")
    view = memoryview(payload)
    if len(view) < 1 or view[0] not in _MODES:
        raise _corrupt(f"start with mode {view[0] if len(view) else None!r}, expected one of {_MODES}")
    if view[0] == 0:
        tables, offset = unpack_tables(view, 1, 1, "context-coded level's factorised table")
        return decode_latents(bytes(view[offset:]), count, tables, max_rows=count)[:, 0]
    (lo_code, spread), offset = read_uvarints(view, 1, 2, max_bytes=5, what="context-coded level's range")
    lo, spread = unzigzag(int(lo_code)), int(spread)
    if not 1 <= spread <= MAX_CONTEXT_RANGE or not -(1 << 31) <= lo <= (1 << 31) - 1 - spread:
        raise _corrupt(f"declare range {lo} .. {lo} + {spread}, outside 1 .. {MAX_CONTEXT_RANGE}")
    stream = bytes(view[offset:])
    if len(stream) % 4:
        raise _corrupt(f"hold a stream of {len(stream)} bytes, not a whole number of words")
    words = np.frombuffer(stream, dtype="<u4").astype(np.uint32)
    hi = lo + spread
    order, starts = wavefronts(count, cols)
    own, offsets = _neighbour_index(cols, order)
    padded = np.zeros(_padded_size(count, cols), dtype=np.int64)
    tables = context_tables(spread)
    family = constriction.stream.model.Categorical(perfect=False)
    symbols = np.empty(count, dtype=np.int32)
    rows_used = np.empty(count, dtype=np.int64)
    try:
        decoder = constriction.stream.queue.RangeDecoder(words)
        for begin, end in zip(starts[:-1].tolist(), starts[1:].tolist()):
            m, u = model.predict(padded[own[begin:end, None] + offsets], level)
            table_rows, centre = _split(m, u, lo, hi)
            decoded = decoder.decode(family, tables[table_rows])
            latents = decoded.astype(np.int64) + centre - spread
            if latents.size and (latents.min() < lo or latents.max() > hi):
                raise _corrupt(f"decode outside their declared range {lo} .. {hi}")
            padded[own[begin:end]] = latents
            symbols[begin:end], rows_used[begin:end] = decoded, table_rows
        exhausted = decoder.maybe_exhausted()
    except BitstreamError:
        raise
    except Exception as exc:  # constriction reports damage as AssertionError/KeyError/ValueError
        raise _corrupt(f"do not decode ({type(exc).__name__}: {exc})") from exc
    if not exhausted:
        raise _corrupt("leave data after the last latent")
    values = np.empty(count, dtype=np.int32)
    values[order] = padded[own]
    if _range_code(symbols, rows_used, tables) != stream:
        raise _corrupt("are not the stream the encoder writes for the values they decode to")
    return values
