"""The ways a PlainTable's float rows are stored: fp16, fp32, or uniform b-bit symbols.

Every kind writes level ``l`` of grid ``<name>`` into its own section ``"<name>.l<l>"`` and
nothing else, so a prefix of the file decodes the coarse levels as for any other table:

* ``plain`` (the default): fp16 rows ``[rows_l, F]``.
* ``plain-fp32``: float32 rows ``[rows_l, F]``, the true uncompressed size.
* ``plain-uniform``: post-hoc uniform quantization (:mod:`nerfcompress.tables.uniform`) of each
  level to ``K = 2**b`` values; the header entry holds ``"bits"`` (``b`` in 2..8) and
  ``"coding"`` (one of ``"packed"``/``"range"`` per level, whichever was smaller). A level
  section holds::

      4      minimum m, float32 little-endian
      4      step s, float32 little-endian (>= 0)
      rest   the level's rows_l * F symbols, row-major (row 0's F channels first), coded
             with the level's own frequency table as :mod:`nerfcompress.entropy.indices`
             describes for the recorded coding

  and decodes to ``m + q * s`` in float32, the exporter's own dequantization bit for bit
  (:func:`~nerfcompress.tables.uniform.round_trip_uniform`).

The codecs are registered by :mod:`nerfcompress.bitstream.model_codec`; ``plain`` is the
default for a PlainTable and the others are chosen with
:func:`~nerfcompress.bitstream.model_codec.plain_codec`.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Tuple

import numpy as np
import torch

from nerfcompress.bitstream.container import level_section_name, required_section
from nerfcompress.bitstream.tensors import pack_tensors, unpack_tensors
from nerfcompress.entropy.indices import decode_indices, encode_indices
from nerfcompress.errors import BitstreamError
from nerfcompress.tables import PlainTable
from nerfcompress.tables.uniform import MAX_BITS, MIN_BITS, check_bits, dequantize_uniform, quantize_uniform

Sections = List[Tuple[str, bytes]]

_RANGE_BYTES = 8
"""Bytes of a ``plain-uniform`` level's ``(minimum, step)`` pair."""


def encode_plain_rows(table: PlainTable, name: str, dtype: str) -> Tuple[Dict[str, Any], Sections]:
    """Level sections of float rows in ``dtype`` (``"<f2"`` or ``"<f4"``); no header fields.

    Raises:
        ValueError: if a row is not finite or overflows ``dtype``.
    """
    levels = table.rows.detach().cpu().split(table.level_rows)  # [rows_l, F] each
    return {}, [
        (level_section_name(name, level), pack_tensors({"rows": rows}, dtype)[1]) for level, rows in enumerate(levels)
    ]


def decode_plain_rows(
    meta: Mapping[str, Any], sections: Mapping[str, bytes], table: PlainTable, num_levels: int, dtype: str
) -> None:
    """Fills ``table.rows`` from :func:`encode_plain_rows` sections; finer levels become zero.

    Raises:
        BitstreamError: on a missing section, a section of the wrong length, NaN or infinity.
    """
    rows = torch.zeros(table.num_rows, table.num_features)  # levels not decoded stay zero
    for level, out in enumerate(rows.split(table.level_rows)[:num_levels]):
        spec = [{"name": "rows", "dtype": dtype, "shape": list(out.shape)}]
        stored = unpack_tensors(spec, required_section(sections, level_section_name(meta["name"], level)))["rows"]
        out.copy_(torch.from_numpy(stored.astype(np.float32)))
    with torch.no_grad():
        table.rows.copy_(rows)


def encode_plain_uniform(table: PlainTable, name: str, bits: int) -> Tuple[Dict[str, Any], Sections]:
    """Header fields (``bits``, ``coding``) and level sections of ``b``-bit uniform symbols.

    Raises:
        ValueError: if ``bits`` is outside 2..8 or a row is not finite.
    """
    check_bits(bits)
    codings, sections = [], []
    for level, rows in enumerate(table.rows.detach().cpu().split(table.level_rows)):  # [rows_l, F] each
        symbols, minimum, step = quantize_uniform(rows, bits)
        coding, data = encode_indices(symbols.reshape(-1), bits)
        codings.append(coding)
        head = np.array([minimum, step], dtype="<f4").tobytes()
        sections.append((level_section_name(name, level), head + data))
    return {"bits": bits, "coding": codings}, sections


def _uniform_bits(meta: Mapping[str, Any]) -> int:
    bits = meta.get("bits")
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise BitstreamError(
            f"grid '{meta['name']}' stores bits={bits!r:.20}, expected an int in {MIN_BITS}..{MAX_BITS}; "
            "the file is corrupt"
        )
    return bits


def decode_plain_uniform_level(meta: Mapping[str, Any], sections: Mapping[str, bytes], level: int) -> np.ndarray:
    """One level of a ``plain-uniform`` grid, dequantized.

    Args:
        meta: the grid's header entry (untrusted; ``level_rows`` and ``features`` already
            checked against the model by the caller).
        sections: the file's sections.
        level: which level.

    Returns:
        float32 ``[rows_l, F]``.

    Raises:
        BitstreamError: on bad ``bits`` or ``coding`` entries, a missing or short section, a
            non-finite or negative range, or damaged symbols.
    """
    name, bits = meta["name"], _uniform_bits(meta)
    codings = meta.get("coding")
    if not isinstance(codings, list) or len(codings) != len(meta["level_rows"]):
        raise BitstreamError(f"grid '{name}' records codings {codings!r:.80}, expected one per level")
    section = level_section_name(name, level)
    payload = required_section(sections, section)
    if len(payload) < _RANGE_BYTES:
        raise BitstreamError(
            f"section '{section}' holds {len(payload)} bytes, its minimum and step alone need {_RANGE_BYTES}; "
            "the file is truncated or corrupt"
        )
    minimum, step = np.frombuffer(payload, dtype="<f4", count=2).astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        highest = minimum + np.float32((1 << bits) - 1) * step
    if not (np.isfinite(minimum) and np.isfinite(step) and step >= 0 and np.isfinite(highest)):
        raise BitstreamError(
            f"section '{section}' stores minimum {minimum} and step {step}, expected finite values, step >= 0 "
            "and a finite largest value; the file is corrupt"
        )
    num_rows, num_features = meta["level_rows"][level], meta["features"]
    symbols = decode_indices(codings[level], payload[_RANGE_BYTES:], num_rows * num_features, bits)
    return dequantize_uniform(symbols.reshape(num_rows, num_features), minimum, step)


def decode_plain_uniform(
    meta: Mapping[str, Any], sections: Mapping[str, bytes], table: PlainTable, num_levels: int
) -> None:
    """Fills ``table.rows`` from :func:`encode_plain_uniform` sections; finer levels become zero.

    Raises:
        BitstreamError: as :func:`decode_plain_uniform_level`.
    """
    rows = torch.zeros(table.num_rows, table.num_features)  # levels not decoded stay zero
    for level, out in enumerate(rows.split(table.level_rows)[:num_levels]):
        out.copy_(torch.from_numpy(decode_plain_uniform_level(meta, sections, level)))
    with torch.no_grad():
        table.rows.copy_(rows)
