"""Float tensors quantized with a step per tensor and range-coded: how networks are stored.

Cool-chic's ``nnquant`` stores each layer's weights as integers times a per-layer step and
entropy-codes the integers; we do the same for the small MLPs every file carries (NeRF and image
files alike). Tensor ``t`` (any shape, flattened row-major) becomes ``q = round(w / 2**e_t)`` with
the exponent ``e_t = floor(log2(rms(w))) - p_t``: the tensor keeps about ``p_t`` bits (its
*precision*) below its own scale, so one precision gives small biases and large weights the same
relative error. The writer picks ``p_t``: one for every tensor (the NeRF files), or one per tensor
searched against the distortion it causes (the image codec, as Cool-chic searches its steps). The
integers are range-coded under a two-sided geometric table ``p(k) ~ theta**|k|`` over
``lo .. hi`` whose ``theta`` is searched per tensor (the smallest code wins); the table is
rebuilt on both sides from the stored integers alone.

Payload::

    4       CRC32 of every tensor's integers ``q`` as little-endian int32, in order (checked after
            decoding: a stream that decodes to other integers is refused)
    per tensor, in order (11 bytes each):
        1   e, int8: the step is 2**e
        4   lo, int32: smallest integer
        4   hi, int32: largest integer (hi >= lo; a one-value tensor still gets a 2-entry table)
        2   t, uint16: theta = t / 65536 (1 <= t)
    rest    one range-coder stream (little-endian uint32 words) of every tensor's integers
            ``q - lo``, tensor 0 first

and decodes to ``q * 2**e`` in float32 (exact: ``|q| < 2**24``). The geometric counts are
``quantize_pmf`` of ``theta**(|k| - min |k|)`` computed by sequential IEEE multiplication, so encoder and
decoder build bit-identical tables on any machine.
"""

from __future__ import annotations

import math
import struct
from typing import List, Sequence, Union

import constriction
import numpy as np

from nerfcompress.bitstream.symbol_codec import symbols_checksum
from nerfcompress.entropy.coder import check_canonical, quantize_pmf
from nerfcompress.errors import BitstreamError

_ENTRY = struct.Struct("<biiH")
_CHECKSUM = struct.Struct("<I")
MAX_SUPPORT = 1 << 16
"""Most integers one tensor's table may span (its table costs ``4 * support`` bytes in memory)."""
_MAX_ABS = (1 << 24) - 1  # integers beyond this would not be exact in float32
_THETA_CANDIDATES = tuple(sorted({max(1, min(65535, round(65536 * (1 - 2 ** (-j / 4))))) for j in range(1, 65)}))
MAX_PRECISION_BITS = 12
"""Largest precision a tensor may keep below its RMS."""


def _counts(lo: int, hi: int, theta_numerator: int) -> np.ndarray:
    """uint32 counts of ``theta**|k|`` over ``lo .. max(hi, lo + 1)``.

    The masses are taken relative to the most probable integer of the range (the same table
    once normalised), so at most ``support`` powers are computed whatever ``lo`` is.
    """
    support = max(hi - lo + 1, 2)
    magnitude = np.abs(np.arange(lo, lo + support, dtype=np.int64))  # [S]
    magnitude -= magnitude.min()
    powers = np.cumprod(np.full(int(magnitude.max()), theta_numerator / 65536.0))  # theta**1 .. theta**max
    pmf = np.concatenate([[1.0], powers])[magnitude] + 1e-300  # a mass that underflowed still gets its count
    return quantize_pmf(pmf, max(1 << 16, 1 << math.ceil(math.log2(4 * support))))


def _quantize(values: np.ndarray, precision_bits: int):
    """``(exponent, int64 q)`` of one tensor."""
    rms = math.sqrt(float(np.mean(np.square(values.astype(np.float64))))) if values.size else 0.0
    exponent = 0 if rms == 0 else math.frexp(rms)[1] - 1 - precision_bits
    exponent = min(max(exponent, -126), 127)
    q = np.rint(values.astype(np.float64) / 2.0**exponent).astype(np.int64)
    return exponent, q


def _best_theta(q: np.ndarray, lo: int, hi: int) -> tuple:
    """``(theta numerator, bits)``: the candidate whose table codes ``q`` in the fewest bits."""
    histogram = np.bincount(q - lo, minlength=max(hi - lo + 1, 2)).astype(np.float64)  # [S]

    def cost(theta: int) -> float:
        counts = _counts(lo, hi, theta).astype(np.float64)
        return float(histogram @ (math.log2(counts.sum()) - np.log2(counts)))

    theta = min(_THETA_CANDIDATES, key=cost)
    return theta, cost(theta)


def _check_precision(precision_bits: int) -> None:
    if isinstance(precision_bits, bool) or not isinstance(precision_bits, (int, np.integer)):
        raise ValueError(f"precision_bits must be an int, found {precision_bits!r}")
    if not 0 <= precision_bits <= MAX_PRECISION_BITS:
        raise ValueError(f"precision_bits must be in 0..{MAX_PRECISION_BITS}, found {precision_bits}")


def quantized_bits(values: np.ndarray, precision_bits: int) -> float:
    """Bits one tensor costs in the payload at ``precision_bits``: its entry and the ideal code
    length of its integers under the table the encoder would pick (the stream is within a few
    bits of it).

    Raises:
        ValueError: as :func:`encode_quantized_tensors`.
    """
    _check_precision(precision_bits)
    values = np.asarray(values, dtype=np.float32).reshape(-1)
    if not np.isfinite(values).all():
        raise ValueError("tensor holds NaN or infinity")
    _, q = _quantize(values, precision_bits)
    if not q.size:
        return 8.0 * _ENTRY.size
    return 8.0 * _ENTRY.size + _best_theta(q, int(q.min()), int(q.max()))[1]


def round_trip(values: np.ndarray, precision_bits: int) -> np.ndarray:
    """What :func:`encode_quantized_tensors` stores of one tensor: float32 of its shape."""
    _check_precision(precision_bits)
    exponent, q = _quantize(np.asarray(values, dtype=np.float32), precision_bits)
    return (q.astype(np.float32) * np.float32(2.0**exponent)).reshape(np.shape(values))


def encode_quantized_tensors(tensors: Sequence[np.ndarray], precision_bits: Union[int, Sequence[int]]) -> bytes:
    """Quantizes and range-codes float tensors (see the module docstring).

    Args:
        tensors: float arrays, any shapes, finite.
        precision_bits: bits kept below each tensor's RMS, in ``0 .. MAX_PRECISION_BITS``: one
            for every tensor, or one per tensor.

    Returns:
        The payload.

    Raises:
        ValueError: if a tensor holds NaN or infinity, its integers would span more than
            :data:`MAX_SUPPORT` values or leave float32's exact range, or the precisions are
            out of range or not one per tensor.
    """
    single = isinstance(precision_bits, (int, np.integer))
    precisions = [precision_bits] * len(tensors) if single else list(precision_bits)
    if len(precisions) != len(tensors):
        raise ValueError(f"expected one precision per tensor, found {len(precisions)} for {len(tensors)} tensors")
    for precision in precisions:
        _check_precision(precision)
    entries, symbols, models, lows = [], [], [], []
    for index, (tensor, precision) in enumerate(zip(tensors, precisions)):
        values = np.asarray(tensor, dtype=np.float32).reshape(-1)
        if not np.isfinite(values).all():
            raise ValueError(f"tensor #{index} holds NaN or infinity")
        exponent, q = _quantize(values, precision)
        lo, hi = (int(q.min()), int(q.max())) if q.size else (0, 0)
        if hi - lo + 1 > MAX_SUPPORT or max(abs(lo), abs(hi)) > _MAX_ABS:
            raise ValueError(f"tensor #{index} spans integers {lo} .. {hi}, too wide to store")
        theta = _best_theta(q, lo, hi)[0]
        entries.append(_ENTRY.pack(exponent, lo, hi, theta))
        lows.append(lo)
        symbols.append((q - lo).astype(np.int32))
        models.append(constriction.stream.model.Categorical(_counts(lo, hi, theta).astype(np.float64), perfect=False))
    encoder = constriction.stream.queue.RangeEncoder()
    for sym, model in zip(symbols, models):
        if sym.size:
            encoder.encode(sym, model)
    checksum = _CHECKSUM.pack(symbols_checksum([s + lo for s, lo in zip(symbols, lows)]))
    return checksum + b"".join(entries) + encoder.get_compressed().astype("<u4").tobytes()


def decode_quantized_tensors(payload: bytes, counts: Sequence[int]) -> List[np.ndarray]:
    """Inverse of :func:`encode_quantized_tensors`.

    Args:
        payload: the bytes (untrusted).
        counts: the element count of each tensor, from the rebuilt model.

    Returns:
        One float32 ``[count]`` array per tensor.

    Raises:
        BitstreamError: if the payload is too short, an entry is impossible, or the stream is
            damaged or has words left over.
    """
    head = _CHECKSUM.size + _ENTRY.size * len(counts)
    if len(payload) < head or (len(payload) - head) % 4:
        raise BitstreamError(
            f"quantized tensors hold {len(payload)} bytes, expected {head} bytes of checksum and entries for "
            f"{len(counts)} tensors and whole 4-byte words after them; the file is truncated or corrupt"
        )
    entries = [_ENTRY.unpack_from(payload, _CHECKSUM.size + _ENTRY.size * i) for i in range(len(counts))]
    for index, (exponent, lo, hi, theta) in enumerate(entries):
        if not (-126 <= exponent <= 127 and lo <= hi and hi - lo + 1 <= MAX_SUPPORT and theta >= 1):
            raise BitstreamError(
                f"quantized tensor #{index} declares step 2**{exponent}, integers {lo} .. {hi}, theta {theta}/65536; "
                "the file is corrupt"
            )
        if max(abs(lo), abs(hi)) > _MAX_ABS:
            raise BitstreamError(f"quantized tensor #{index} declares integers {lo} .. {hi}; the file is corrupt")
    words = np.frombuffer(payload, dtype="<u4", offset=head).astype(np.uint32)
    out, coded, integers = [], [], []
    try:
        decoder = constriction.stream.queue.RangeDecoder(words)
        for count, (exponent, lo, hi, theta) in zip(counts, entries):
            model = constriction.stream.model.Categorical(_counts(lo, hi, theta).astype(np.float64), perfect=False)
            symbols = decoder.decode(model, count) if count else np.zeros(0, np.int32)
            q = symbols.astype(np.int64) + lo
            if count and int(q.max()) > hi:
                raise BitstreamError(f"a quantized tensor decodes beyond its declared range {lo} .. {hi}")
            out.append(q.astype(np.float32) * np.float32(2.0**exponent))
            coded.append((symbols, model))
            integers.append(q.astype(np.int32))
        exhausted = decoder.maybe_exhausted()
    except BitstreamError:
        raise
    except Exception as exc:  # constriction reports damage as AssertionError/KeyError/ValueError
        raise BitstreamError(f"quantized tensors' stream is corrupt ({type(exc).__name__}: {exc})") from exc
    if not exhausted:
        raise BitstreamError("quantized tensors' stream has data left after the last tensor; the file is corrupt")
    check_canonical(words, coded, "quantized tensors' stream")
    if symbols_checksum(integers) != _CHECKSUM.unpack_from(payload)[0]:
        raise BitstreamError(
            "quantized tensors decode to integers whose checksum differs from the one stored: the file is corrupt, "
            "or its range coder decodes differently from the one that wrote it"
        )
    return out
