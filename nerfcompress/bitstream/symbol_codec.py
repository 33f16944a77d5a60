"""The generic codings of the table codec protocol: a table's symbols <-> section payloads.

A table's :class:`~nerfcompress.tables.symbols.SymbolLayout` lists sections of named parts;
each section's payload is its parts' bytes back to back, in layout order:

* ``FloatPart``: ``prod(shape)`` little-endian fp16 or fp32 values, row-major.
* ``CodingTablesPart``: every channel's ``lo``, support and counts in variable-length integers
  (:func:`~nerfcompress.entropy.coder.pack_tables`).
* ``RangePart``: the symbols' channels one after another (channel 0 first) in one
  range-coder stream of little-endian uint32 words under the coding tables of the section it
  names: a shared section, or its own level's section, whose tables come first
  (:func:`~nerfcompress.entropy.coder.encode_latents`).
* ``ContextPart``: the level's latents coded under the file's context model
  (:func:`~nerfcompress.entropy.context.encode_raster`; the caller passes the model as ``context``).
* ``IndexPart``: ``"packed"`` or ``"range"`` bytes (:mod:`nerfcompress.entropy.indices`),
  whichever is smaller; the choice is returned as the part's *coding*, and the header keeps
  the codings of a table's index parts in a list, in file order.

A section with a range-coded part (a ``RangePart`` or ``ContextPart``, or an ``IndexPart`` coded ``"range"``)
starts with a uint32 CRC32 of the symbols those parts decode to (each part's symbols as
little-endian int32 for a ``RangePart``, uint8 for an ``IndexPart``, in part order). The
container's CRC32 guards the bytes; this one guards the decoding: a stream that a different
coder (or a damaged one) decodes to other symbols is refused (:func:`symbols_checksum`).

Decoding reads only the layout (shapes, widths, from the rebuilt model) and the untrusted
bytes: every length is checked against the bytes that remain before anything is allocated, and
a section must hold exactly its parts.
"""

from __future__ import annotations

import math
import struct
import zlib
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from nerfcompress.bitstream.container import required_section
from nerfcompress.entropy.coder import (
    ChannelTables,
    check_stream,
    decode_latents,
    encode_latents,
    pack_tables,
    unpack_tables,
)
from nerfcompress.entropy.context import IntegerContextModel, decode_raster, encode_raster
from nerfcompress.entropy.indices import CODINGS, check_indices, decode_indices, encode_indices
from nerfcompress.errors import BitstreamError
from nerfcompress.tables.symbols import (
    CodingTablesPart,
    ContextPart,
    FloatPart,
    IndexPart,
    RangePart,
    Section,
    SymbolLayout,
    TableSymbols,
)

_CHECKSUM = struct.Struct("<I")


def _entropy_coded(part, coding: Optional[str]) -> bool:
    return isinstance(part, (RangePart, ContextPart)) or (isinstance(part, IndexPart) and coding == "range")


def symbols_checksum(symbols: Sequence[np.ndarray]) -> int:
    """CRC32 of decoded symbols: int32 arrays as little-endian int32, uint8 arrays as bytes, in order."""
    crc = 0
    for array in symbols:
        stored = array.astype("<i4") if array.dtype != np.uint8 else array
        crc = zlib.crc32(np.ascontiguousarray(stored).tobytes(), crc)
    return crc


def _needs_context(context: Optional[IntegerContextModel], where: str) -> IntegerContextModel:
    if context is None:
        raise ValueError(f"{where} is context-coded but no context model was given")
    return context


def _encode_part(
    part, value, tables: Mapping[str, ChannelTables], where: str, context: Optional[IntegerContextModel]
) -> Tuple[bytes, List[str]]:
    if isinstance(part, FloatPart):
        array = np.asarray(value, dtype=np.float32)
        if array.shape != tuple(part.shape):
            raise ValueError(f"{where}: expected float values of shape {part.shape}, found {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"{where} holds NaN or infinity")
        with np.errstate(over="ignore"):
            stored = array.astype(part.dtype)
        if not np.isfinite(stored).all():
            raise ValueError(f"{where} overflows {part.dtype}")
        return stored.tobytes(), []
    if isinstance(part, CodingTablesPart):
        if not isinstance(value, ChannelTables) or value.num_channels != part.channels:
            raise ValueError(f"{where}: expected ChannelTables of {part.channels} channels, found {value!r:.80}")
        return pack_tables(value), []
    if isinstance(part, RangePart):
        shape = (part.rows, part.channels)
        if not (isinstance(value, np.ndarray) and value.dtype == np.int32 and value.shape == shape):
            raise ValueError(f"{where}: expected int32 [{part.rows}, {part.channels}], found {value!r:.80}")
        return encode_latents(value, tables[part.tables]), []
    if isinstance(part, ContextPart):
        if not (isinstance(value, np.ndarray) and value.dtype == np.int32 and value.shape == (part.count,)):
            raise ValueError(f"{where}: expected int32 [{part.count}], found {value!r:.80}")
        return encode_raster(value, part.cols, _needs_context(context, where), part.level), []
    if not (isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.shape == (part.count,)):
        raise ValueError(f"{where}: expected uint8 [{part.count}], found {value!r:.80}")
    coding, data = encode_indices(value, part.bits)
    return data, [coding]


def encode_symbols(
    layout: SymbolLayout, symbols: TableSymbols, name: str, context: Optional[IntegerContextModel] = None
) -> Tuple[List[str], List[Tuple[str, bytes]]]:
    """Section payloads of one table.

    Args:
        layout: the table's layout.
        symbols: its values, every level present.
        name: the grid's name, the prefix of its sections.
        context: the context model of the file, for a layout with context-coded parts.

    Returns:
        ``(codings, sections)``: the coding of every index part in file order, and
        ``(section name, payload)`` in layout order (shared sections, then level 0, 1, ...).

    Raises:
        ValueError: if the symbols do not match the layout.
    """
    if len(symbols.levels) != len(layout.levels) or set(symbols.shared) != set(layout.shared):
        raise ValueError(f"grid '{name}': symbols of {len(symbols.levels)} levels do not match the layout")
    tables: Dict[str, ChannelTables] = {}
    codings: List[str] = []
    sections = []
    values = [*(symbols.shared[suffix] for suffix in layout.shared), *symbols.levels]
    for (suffix, section), section_values in zip(layout.sections(), values):
        if set(section_values) != set(section):
            found = sorted(section_values)
            raise ValueError(f"grid '{name}' section {suffix}: parts {found}, expected {list(section)}")
        parts, coded = [], []
        for part_name, part in section.items():
            value = section_values[part_name]
            data, part_codings = _encode_part(part, value, tables, f"'{name}.{suffix}' {part_name}", context)
            parts.append(data)
            codings += part_codings
            if _entropy_coded(part, part_codings[0] if part_codings else None):
                coded.append(value)
            if isinstance(part, CodingTablesPart):
                tables[suffix] = value
        if coded:
            parts.insert(0, _CHECKSUM.pack(symbols_checksum(coded)))
        sections.append((f"{name}.{suffix}", b"".join(parts)))
    return codings, sections


def _decode_part(
    part,
    payload: memoryview,
    coding: Optional[str],
    tables: Mapping[str, ChannelTables],
    where: str,
    check: bool,
    context: Optional[IntegerContextModel],
) -> Tuple[Any, int]:
    """``(value, bytes used)`` of the part at the start of ``payload``; with ``check``, streams
    are only checked against the bytes they have (no value, nothing allocated)."""
    if isinstance(part, FloatPart) and check:
        size = math.prod(part.shape) * np.dtype(part.dtype).itemsize
        if size > len(payload):
            raise BitstreamError(
                f"{where} needs {size} bytes, the section holds {len(payload)}; the file is truncated or corrupt"
            )
        return None, size
    if isinstance(part, FloatPart):
        itemsize = np.dtype(part.dtype).itemsize
        count = math.prod(part.shape)
        if count * itemsize > len(payload):
            raise BitstreamError(
                f"{where} needs {count * itemsize} bytes, the section holds {len(payload)}; "
                "the file is truncated or corrupt"
            )
        array = np.frombuffer(payload, dtype=part.dtype, count=count).astype(np.float32).reshape(part.shape)
        if not np.isfinite(array).all():
            raise BitstreamError(f"{where} holds NaN or infinity; the file is corrupt")
        return array, count * itemsize
    if isinstance(part, CodingTablesPart):
        return unpack_tables(payload, 0, part.channels, where)
    if isinstance(part, RangePart) and check:
        check_stream(bytes(payload), part.rows, tables[part.tables], max_rows=part.rows)
        return None, len(payload)
    if isinstance(part, RangePart):
        symbols = decode_latents(bytes(payload), part.rows, tables[part.tables], max_rows=part.rows)
        return symbols, len(payload)
    if isinstance(part, ContextPart) and check:
        return None, len(payload)
    if isinstance(part, ContextPart):
        if context is None:
            raise BitstreamError(f"{where} is context-coded but the file holds no context model; the file is corrupt")
        return decode_raster(bytes(payload), part.count, part.cols, context, part.level), len(payload)
    if check:
        check_indices(coding, bytes(payload), part.count, part.bits)
        return None, len(payload)
    return decode_indices(coding, bytes(payload), part.count, part.bits), len(payload)


def decode_section(
    section: Section,
    payload: bytes,
    codings: Sequence[str],
    tables: Dict[str, ChannelTables],
    where: str,
    suffix: str,
    check: bool = False,
    context: Optional[IntegerContextModel] = None,
) -> Dict[str, Any]:
    """``part name -> value`` of one section.

    Args:
        section: the section's layout (from the rebuilt model).
        payload: the section's bytes (untrusted).
        codings: the codings of the section's index parts, in order (validated).
        tables: the coding tables decoded so far, by section suffix; this section's are added.
        where: the section's name, for messages.
        suffix: the section's suffix in its table's layout (a range-coded part may name its own
            section's tables).
        check: only check the payload's lengths (streams against what their words can hold);
            the values of floats and streams are then None.
        context: the file's context model, for context-coded parts.

    Raises:
        BitstreamError: if the payload does not hold exactly the section's parts, or the
            range-coded parts decode to symbols whose checksum is not the stored one.
    """
    coding_of = dict(zip([n for n, p in section.items() if isinstance(p, IndexPart)], codings))
    checked = any(_entropy_coded(part, coding_of.get(name)) for name, part in section.items())
    view = memoryview(payload)
    offset = _CHECKSUM.size if checked else 0
    if len(payload) < offset:
        raise BitstreamError(f"section '{where}' holds {len(payload)} bytes, too few for its checksum; corrupt file")
    values: Dict[str, Any] = {}
    for part_name, part in section.items():
        coding = coding_of.get(part_name)
        values[part_name], used = _decode_part(
            part, view[offset:], coding, tables, f"'{where}' {part_name}", check, context
        )
        offset += used
        if isinstance(part, CodingTablesPart):
            tables[suffix] = values[part_name]
    if offset != len(payload):
        raise BitstreamError(
            f"section '{where}' holds {len(payload) - offset} bytes beyond its parts; the file is corrupt"
        )
    if checked and not check:
        coded = [values[name] for name, part in section.items() if _entropy_coded(part, coding_of.get(name))]
        if symbols_checksum(coded) != _CHECKSUM.unpack_from(payload)[0]:
            raise BitstreamError(
                f"section '{where}' decodes to symbols whose checksum differs from the one stored: the file is "
                "corrupt, or its range coder decodes differently from the one that wrote it"
            )
    return values


def index_part_count(layout: SymbolLayout) -> int:
    """How many index parts (and so recorded codings) a layout has."""
    return sum(isinstance(part, IndexPart) for _, section in layout.sections() for part in section.values())


def check_codings(codings: Any, layout: SymbolLayout, name: str) -> List[str]:
    """The validated ``"coding"`` list of a grid entry (untrusted; None when there is none).

    Raises:
        BitstreamError: unless it is a list of one of :data:`~nerfcompress.entropy.indices.CODINGS`
            per index part of the layout (or absent for a layout without index parts).
    """
    expected = index_part_count(layout)
    if codings is None and expected == 0:
        return []
    if not (isinstance(codings, list) and len(codings) == expected and all(c in CODINGS for c in codings)):
        raise BitstreamError(
            f"grid '{name}' records codings {codings!r:.80}, expected a list of {expected} of {CODINGS}; "
            "the file is corrupt"
        )
    return codings


def decode_symbols(
    layout: SymbolLayout,
    sections: Mapping[str, bytes],
    codings: Sequence[str],
    name: str,
    num_levels: int,
    check: bool = False,
    context: Optional[IntegerContextModel] = None,
) -> TableSymbols:
    """The symbols of one table's shared sections and its levels ``0 .. num_levels - 1``.

    Args:
        layout: the rebuilt table's layout.
        sections: the file's sections (untrusted).
        codings: the validated codings (:func:`check_codings`).
        name: the grid's name.
        num_levels: ``1 .. len(layout.levels)``.
        check: only check lengths (see :func:`decode_section`), allocating nothing the layout
            sizes call for.
        context: the file's context model, for context-coded parts.

    Raises:
        BitstreamError: on a missing or damaged section.
    """
    remaining = list(codings)

    def section_codings(section: Section) -> List[str]:
        count = sum(isinstance(part, IndexPart) for part in section.values())
        taken = remaining[:count]
        del remaining[:count]
        return taken

    tables: Dict[str, ChannelTables] = {}
    symbols = TableSymbols()
    for suffix, section in layout.sections()[: len(layout.shared) + num_levels]:  # file order, as encoded
        where = f"{name}.{suffix}"
        values = decode_section(
            section, required_section(sections, where), section_codings(section), tables, where, suffix, check, context
        )
        if suffix in layout.shared:
            symbols.shared[suffix] = values
        else:
            symbols.levels.append(values)
    return symbols
