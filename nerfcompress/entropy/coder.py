"""Platform-independent entropy coding of integer latents with integer tables.

Follows the constriction recipe of STYLE.md section 3. The encoder turns a probability mass
function per channel into integer counts (:func:`quantize_pmf`): a learned prior evaluated once
(float64, CPU), or the latents' own symbol frequencies (:func:`empirical_pmf`), which is what
SHACIRA files store because it is the shortest static code for the latents written. The counts
are stored in the file (:func:`pack_tables`, each channel's total chosen by :func:`cheapest_counts`)
and are all the decoder ever sees, so encoder and decoder build
bit-identical ``Categorical(freq.astype(float64), perfect=False)`` models on any machine.
Channels are coded one after another (0 .. D-1) into one range-coder stream of little-endian
``uint32`` words.

Example:
    >>> tables = build_tables(q, prior.pmf)           # q: int32 [rows, D]
    >>> data = encode_latents(q, tables)
    >>> assert (decode_latents(data, len(q), tables) == q).all()
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Callable, Dict, Optional, Tuple

import constriction
import numpy as np

from nerfcompress.errors import BitstreamError
from nerfcompress.varint import encode_uvarints, read_uvarints, unzigzag, zigzag

CODER = "constriction.stream.queue.RangeEncoder+Categorical(perfect=False)"
"""The coder every range-coded stream of a file uses, as the header records it."""


def coder_record() -> Dict[str, str]:
    """What a file's header records of the coder that wrote it: ``{"name": CODER, "constriction": version}``."""
    return {"name": CODER, "constriction": version("constriction")}


def _release(text: Any) -> Optional[Tuple[int, int]]:
    match = re.fullmatch(r"(\d{1,4})\.(\d{1,4})(\.\S{0,40})?", text) if isinstance(text, str) else None
    return (int(match.group(1)), int(match.group(2))) if match else None


def check_coder_record(record: Any) -> None:
    """Refuses a file whose streams the running constriction may decode differently.

    The coder must be :data:`CODER` and its constriction release the running one's major.minor
    (constriction keeps the range coder's output within a minor release; the project pins
    ``constriction==0.5.*``).

    Args:
        record: the header's ``"coder"`` entry (untrusted).

    Raises:
        BitstreamError: naming the coder and version that wrote the file and what to install.
    """
    running = version("constriction")
    if not isinstance(record, dict) or record.get("name") != CODER or _release(record.get("constriction")) is None:
        raise BitstreamError(
            f"file records its coder as {record!r:.120}; this nerfcompress decodes {CODER} streams of constriction "
            f"{running}: the file is corrupt or was written by another program"
        )
    written = record["constriction"]
    if _release(written) != _release(running):
        major, minor = _release(written)
        raise BitstreamError(
            f"file was range-coded by constriction {written}, this installation has constriction {running}, whose "
            f"coder may decode it differently: install constriction=={major}.{minor}.* to read it, or re-export the "
            "run with this installation"
        )


_INT32_MAX = 2**31 - 1
_MAX_TOTAL = 1 << 24  # constriction's Categorical has 24 bits of precision
_SLACK_BITS = 64  # range-coder termination: the stream may be this much shorter than ideal


@dataclass(frozen=True, eq=False)
class ChannelTables:
    """Integer coding tables, one per latent channel; stored in the file.

    Attributes:
        lo: int32 ``[D]``, the smallest symbol of each channel.
        freq: ``D`` arrays, uint32 ``[S_c]`` with ``S_c >= 2``, every count ``>= 1``; channel
            ``c`` codes the integers ``lo[c] .. lo[c] + S_c - 1``.

    Raises:
        ValueError: on wrong dtypes or shapes, a count of 0, a support below 2, or a range
            that leaves int32.
    """

    lo: np.ndarray
    freq: tuple[np.ndarray, ...]

    def __post_init__(self):
        if not (isinstance(self.lo, np.ndarray) and self.lo.dtype == np.int32 and self.lo.ndim == 1):
            raise ValueError(f"lo must be an int32 [D] array, found {_describe(self.lo)}")
        if len(self.freq) != len(self.lo) or len(self.lo) == 0:
            raise ValueError(f"expected one freq table per channel, found {len(self.freq)} for {len(self.lo)} channels")
        for c, f in enumerate(self.freq):
            if not (isinstance(f, np.ndarray) and f.dtype == np.uint32 and f.ndim == 1 and f.size >= 2):
                raise ValueError(f"freq[{c}] must be a uint32 [S] array with S >= 2, found {_describe(f)}")
            if f.min() < 1:
                raise ValueError(f"freq[{c}] has a zero count; every count must be >= 1")
            if int(self.lo[c]) + f.size - 1 > _INT32_MAX:
                raise ValueError(f"channel {c}: range lo={int(self.lo[c])}, S={f.size} leaves int32")

    @property
    def num_channels(self) -> int:
        """``D``, the number of channels."""
        return len(self.lo)

    @property
    def support(self) -> tuple[int, ...]:
        """``S_c`` of each channel."""
        return tuple(f.size for f in self.freq)


def _describe(x) -> str:
    if isinstance(x, np.ndarray):
        return f"{x.dtype} array of shape {x.shape}"
    return type(x).__name__


def quantize_pmf(pmf: np.ndarray, total: int = 1 << 16) -> np.ndarray:
    """Integer counts for a probability mass function, each ``>= 1``, summing to ``total``.

    Every entry first gets one count; the remaining ``total - S`` counts are shared in
    proportion to ``pmf`` by the largest-remainder method: each entry takes the integer part
    of its share, and the leftover counts go to the largest fractional parts (ties to the
    lowest index, via a stable sort). Only IEEE ``+ * /``, ``math.fsum`` (correctly rounded)
    and truncation are used, so the counts are the same on every platform.

    Args:
        pmf: float64 ``[S]`` non-negative masses (need not sum to 1; tiny or zero entries are
            fine).
        total: the sum of the counts, ``S <= total <= 2**24``.

    Returns:
        uint32 ``[S]`` counts.

    Raises:
        ValueError: if ``pmf`` is not a finite non-negative ``[S]`` array with positive sum, or
            ``total`` is out of range.
    """
    pmf = np.asarray(pmf, dtype=np.float64)
    if pmf.ndim != 1 or pmf.size == 0:
        raise ValueError(f"pmf must be a non-empty [S] array, found shape {pmf.shape}")
    if not np.isfinite(pmf).all() or (pmf < 0).any():
        raise ValueError("pmf must be finite and non-negative")
    if not pmf.size <= total <= _MAX_TOTAL:
        raise ValueError(f"total must be in [S={pmf.size}, 2**24], found {total}")
    mass = math.fsum(pmf.tolist())
    if mass <= 0:
        raise ValueError("pmf has zero total mass")
    budget = total - pmf.size
    shares = pmf * (budget / mass)
    whole = np.floor(shares)
    leftover = budget - int(whole.sum())
    assert 0 <= leftover <= pmf.size, leftover
    counts = whole.astype(np.int64) + 1
    counts[np.argsort(whole - shares, kind="stable")[:leftover]] += 1
    return counts.astype(np.uint32)


def empirical_pmf(latents: np.ndarray) -> Callable[[int, int, int], np.ndarray]:
    """A ``pmf_fn`` for :func:`build_tables`: the frequency of each integer in each channel of ``latents``.

    Coded under these frequencies the latents cost their empirical entropy (plus the counts'
    quantisation), the least any static per-channel code can give them; a learned prior
    evaluated at the integers costs more wherever it does not match them.

    Args:
        latents: int32 ``[rows, D]``.

    Returns:
        ``(channel, lo, support) -> float64 [S]`` counts of ``lo .. lo + S - 1`` in that channel.
    """

    def pmf(channel: int, lo: int, support: int) -> np.ndarray:
        column = latents[:, channel].astype(np.int64) - lo
        inside = column[(column >= 0) & (column < support)]
        return np.bincount(inside, minlength=support).astype(np.float64)

    return pmf


def build_tables(
    latents: np.ndarray, pmf_fn: Callable[[int, int, int], np.ndarray], total: Optional[int] = 1 << 16
) -> ChannelTables:
    """Integer tables covering the range of each latent channel.

    Per channel ``c``: ``lo = min``, ``S = max(max - lo + 1, 2)``, counts from
    ``quantize_pmf(pmf_fn(c, lo, S), total)``, or with ``total=None`` from :func:`cheapest_counts`
    for the channel's histogram (the total that makes table plus code the fewest bytes).

    Args:
        latents: int32 ``[rows, D]``, ``rows >= 1``.
        pmf_fn: ``(channel, lo, support) -> float64 [S]``, e.g. ``FactorizedPrior.pmf``.
        total: sum of each channel's counts; bounds ``S``. None: chosen per channel.

    Returns:
        The tables.

    Raises:
        ValueError: if ``latents`` is not a non-empty int32 ``[rows, D]`` array or a channel's
            range is wider than ``total``.
    """
    if not (isinstance(latents, np.ndarray) and latents.dtype == np.int32 and latents.ndim == 2):
        raise ValueError(f"latents must be an int32 [rows, D] array, found {_describe(latents)}")
    if latents.shape[0] == 0 or latents.shape[1] == 0:
        raise ValueError(f"latents must have at least one row and channel, found shape {latents.shape}")
    lo = latents.min(axis=0)
    freq = []
    limit = TABLE_TOTALS[-1] if total is None else total
    for c in range(latents.shape[1]):
        support = max(int(latents[:, c].max()) - int(lo[c]) + 1, 2)
        if support > limit:
            raise ValueError(f"channel {c}: range of {support} integers exceeds total={limit}")
        pmf = pmf_fn(c, int(lo[c]), support)
        if total is None:
            histogram = np.bincount(latents[:, c].astype(np.int64) - int(lo[c]), minlength=support)  # [S]
            freq.append(cheapest_counts(pmf, histogram.astype(np.float64)))
        else:
            freq.append(quantize_pmf(pmf, total))
    return ChannelTables(lo=lo.astype(np.int32), freq=tuple(freq))


def empirical_tables(latents: np.ndarray) -> ChannelTables:
    """The tables a file codes a level's ``latents`` (int32 ``[rows, D]``, rows >= 1) with: each
    channel's own symbol frequencies at the count total that costs the fewest bytes
    (``build_tables(latents, empirical_pmf(latents), total=None)``)."""
    return build_tables(latents, empirical_pmf(latents), total=None)


MAX_COUNT_BYTES = 4
"""Longest stored count (LEB128): a channel's counts sum to at most ``2**24``."""
TABLE_TOTALS = tuple(1 << k for k in range(6, 17))
"""Count totals :func:`cheapest_counts` chooses from."""


def pack_tables(tables: ChannelTables) -> bytes:
    """The stored form of coding tables: per channel, one after another, the zigzag LEB128 of
    ``lo``, the LEB128 of ``S - 2``, then the ``S`` counts in LEB128 (:mod:`nerfcompress.varint`).
    A small table takes a few bytes: a count under 128 is one byte."""
    values = []
    for lo, freq in zip(tables.lo.tolist(), tables.freq):
        values += [zigzag(lo), freq.size - 2, *freq.tolist()]
    return encode_uvarints(values)


def unpack_tables(data: memoryview, offset: int, num_channels: int, what: str) -> Tuple[ChannelTables, int]:
    """The coding tables :func:`pack_tables` wrote at ``data[offset:]`` (untrusted).

    Every count is read from bytes the data holds (a count takes at least one), so a declared
    support the data cannot hold is refused before anything is allocated.

    Returns:
        ``(tables, offset after them)``.

    Raises:
        BitstreamError: if the data ends first, a count is 0, a channel's counts sum above
            ``2**24`` or its range leaves int32.
    """
    lo, freq = [], []
    for channel in range(num_channels):
        where = f"{what} channel {channel}"
        (lo_code, support), offset = read_uvarints(data, offset, 2, max_bytes=5, what=where)
        low, support = unzigzag(int(lo_code)), int(support) + 2
        if support > _MAX_TOTAL:
            raise BitstreamError(f"{where}: a table of {support} symbols, at most 2**24; the file is corrupt")
        counts, offset = read_uvarints(data, offset, support, max_bytes=MAX_COUNT_BYTES, what=where)
        if counts.min() < 1 or int(counts.sum()) > _MAX_TOTAL:
            raise BitstreamError(
                f"{where}: counts with minimum {int(counts.min())} summing to {int(counts.sum())}, expected counts "
                ">= 1 summing to at most 2**24; the file is corrupt"
            )
        if not -(2**31) <= low <= _INT32_MAX - support + 1:
            raise BitstreamError(f"{where}: symbols {low} .. {low + support - 1} leave int32; the file is corrupt")
        lo.append(low)
        freq.append(counts.astype(np.uint32))
    return ChannelTables(lo=np.array(lo, dtype=np.int32), freq=tuple(freq)), offset


def cheapest_counts(pmf: np.ndarray, histogram: np.ndarray) -> np.ndarray:
    """``quantize_pmf(pmf, total)`` for the total of :data:`TABLE_TOTALS` (at least ``S``) that
    minimises the stored counts' bits plus the ideal code length of ``histogram`` under them.

    A level of a few hundred rows costs less with coarse counts (fewer bytes each) than it loses
    to their precision; a level of thousands of rows takes the finest.

    Args:
        pmf: float64 ``[S]``, as :func:`quantize_pmf`.
        histogram: float64 ``[S]``, how often each symbol is coded.

    Returns:
        uint32 ``[S]`` counts.

    Raises:
        ValueError: if ``S`` exceeds every total, or as :func:`quantize_pmf`.
    """
    best = None
    for total in TABLE_TOTALS:
        if total < pmf.size:
            continue
        counts = quantize_pmf(pmf, total)
        bits = float(histogram @ (math.log2(total) - np.log2(counts.astype(np.float64))))
        cost = bits + 8 * len(encode_uvarints(counts.tolist()))
        if best is None or cost < best[0]:
            best = (cost, counts)
    if best is None:
        raise ValueError(f"a table of {pmf.size} symbols exceeds the largest total {TABLE_TOTALS[-1]}")
    return best[1]


def _models(tables: ChannelTables) -> list:
    return [constriction.stream.model.Categorical(f.astype(np.float64), perfect=False) for f in tables.freq]


def _symbols(latents: np.ndarray, tables: ChannelTables) -> list[np.ndarray]:
    """Validated int32 ``[rows]`` symbols ``latents[:, c] - lo[c]`` of each channel."""
    if not (isinstance(latents, np.ndarray) and latents.dtype == np.int32 and latents.ndim == 2):
        raise ValueError(f"latents must be an int32 [rows, D] array, found {_describe(latents)}")
    if latents.shape[1] != tables.num_channels:
        raise ValueError(f"expected {tables.num_channels} channels, found {latents.shape[1]}")
    symbols = []
    for c, (lo, support) in enumerate(zip(tables.lo.tolist(), tables.support)):
        column = latents[:, c]
        if column.size and (int(column.min()) < lo or int(column.max()) > lo + support - 1):
            raise ValueError(
                f"channel {c}: table covers [{lo}, {lo + support - 1}], found values in "
                f"[{int(column.min())}, {int(column.max())}]"
            )
        symbols.append(column - np.int32(lo))
    return symbols


def encode_latents(latents: np.ndarray, tables: ChannelTables) -> bytes:
    """Range-code integer latents, channel 0 first.

    Args:
        latents: int32 ``[rows, D]`` inside the tables' ranges.
        tables: the coding tables (store them next to the bytes).

    Returns:
        The stream as little-endian uint32 words.

    Raises:
        ValueError: if ``latents`` has the wrong dtype or channel count, or a value lies
            outside its channel's table.
    """
    symbols = _symbols(latents, tables)
    encoder = constriction.stream.queue.RangeEncoder()
    for sym, model in zip(symbols, _models(tables)):
        encoder.encode(sym, model)
    return encoder.get_compressed().astype("<u4").tobytes()


def _max_rows_for(num_words: int, tables: ChannelTables) -> float:
    """Most rows that ``num_words`` words can hold under ``tables``.

    Every symbol of channel ``c`` costs at least ``b_c = -log2(max(freq_c) / sum(freq_c))``
    bits, and a range-coder stream is never much shorter than the information it carries, so
    ``rows * sum_c b_c <= 2 * (32 * W + 64)``. The factor 2 absorbs constriction's 24-bit
    requantisation of the counts. For very skewed tables the bound is weak and ``max_rows``
    is what protects memory.
    """
    bits_per_row = sum(math.log2(f.sum(dtype=np.float64) / float(f.max())) for f in tables.freq)
    if bits_per_row == 0:
        return math.inf
    return 2 * (32 * num_words + _SLACK_BITS) / bits_per_row


def check_stream(data: bytes, num_rows: int, tables: ChannelTables, max_rows: int = 1 << 27) -> None:
    """The checks :func:`decode_latents` makes before it allocates anything.

    Raises:
        BitstreamError: if the length is not a whole number of words or ``num_rows`` is
            negative, above ``max_rows`` or more than the data can hold (see :func:`_max_rows_for`).
        ValueError: if ``max_rows`` is negative.
    """
    if max_rows < 0:
        raise ValueError(f"max_rows must be >= 0, found {max_rows}")
    if len(data) % 4:
        raise BitstreamError(
            f"latent stream is {len(data)} bytes, not a whole number of 4-byte words; the file is truncated or corrupt"
        )
    num_words = len(data) // 4
    if not 0 <= num_rows <= max_rows:
        raise BitstreamError(f"latent stream claims {num_rows} rows, expected 0 .. {max_rows}; the file is corrupt")
    if num_rows > _max_rows_for(num_words, tables):
        raise BitstreamError(
            f"latent stream claims {num_rows} rows but its {num_words} words can hold at most "
            f"{int(_max_rows_for(num_words, tables))}; the file is truncated or corrupt"
        )


def decode_latents(data: bytes, num_rows: int, tables: ChannelTables, max_rows: int = 1 << 27) -> np.ndarray:
    """Decode what :func:`encode_latents` wrote.

    ``num_rows`` usually comes from a file, so it is checked before anything is allocated:
    against ``max_rows`` (the caller's limit, e.g. the grid's row count) and against the rows
    the data can hold at all (see :func:`_max_rows_for`). Damage is not always detectable
    (a flipped bit often decodes to wrong symbols; CRC the section), but nothing other than
    :class:`BitstreamError` escapes and the output is at most ``max_rows * D`` int32.

    Args:
        data: the stream, little-endian uint32 words.
        num_rows: rows to decode.
        tables: the tables used to encode.
        max_rows: largest ``num_rows`` accepted.

    Returns:
        int32 ``[num_rows, D]``.

    Raises:
        BitstreamError: if the length is not a whole number of words, ``num_rows`` is negative
            or impossible for this data, words are left over, or the decoder fails.
        ValueError: if ``max_rows`` is negative.
    """
    check_stream(data, num_rows, tables, max_rows)
    out = np.empty((num_rows, tables.num_channels), dtype=np.int32)
    try:
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        decoder = constriction.stream.queue.RangeDecoder(words)
        models = _models(tables)
        for c, model in enumerate(models):
            out[:, c] = decoder.decode(model, num_rows)
        exhausted = decoder.maybe_exhausted()
    except Exception as exc:  # constriction reports damage as AssertionError/KeyError/ValueError
        raise BitstreamError(f"latent stream is corrupt ({type(exc).__name__}: {exc}); re-export the file") from exc
    if not exhausted:
        raise BitstreamError("latent stream has data left after the last row; the file is corrupt")
    check_canonical(words, [(out[:, c], model) for c, model in enumerate(models)], "latent stream")
    out += tables.lo
    return out


def check_canonical(words: np.ndarray, coded: list, what: str) -> None:
    """Refuses a stream that is not exactly what the encoder writes for the symbols it decoded to.

    ``maybe_exhausted`` accepts a stream followed by one more word (any value); re-encoding the
    decoded symbols and comparing the words refuses that, and any other stream the encoder would
    not have written, at the cost of one encode.

    Args:
        words: the stream, uint32 ``[W]``.
        coded: ``(symbols int32 [n], model)`` in coding order.
        what: the stream's name, for the message.

    Raises:
        BitstreamError: if the words differ from the re-encoded ones.
    """
    encoder = constriction.stream.queue.RangeEncoder()
    for symbols, model in coded:
        if len(symbols):
            encoder.encode(np.ascontiguousarray(symbols, dtype=np.int32), model)
    canonical = encoder.get_compressed()
    if len(canonical) != len(words) or not np.array_equal(canonical, words):
        extra = len(words) - len(canonical)
        detail = f"{extra} word(s) after the end of the stream" if extra > 0 else "words the encoder would not write"
        raise BitstreamError(f"{what} holds {detail}; the file is corrupt")


def estimate_bits(latents: np.ndarray, tables: ChannelTables) -> float:
    """Ideal code length of ``latents`` under the integer tables, in bits.

    The real stream is within a fraction of a percent plus a few words of this.

    Args:
        latents: int32 ``[rows, D]`` inside the tables' ranges.
        tables: the coding tables.

    Returns:
        ``sum_c sum_r -log2(freq_c[sym] / sum(freq_c))``.

    Raises:
        ValueError: as :func:`encode_latents`.
    """
    bits = 0.0
    for sym, f in zip(_symbols(latents, tables), tables.freq):
        log2_freq = np.log2(f.astype(np.float64))  # [S]
        bits += sym.size * math.log2(f.sum(dtype=np.float64)) - float(log2_freq[sym].sum())
    return bits
