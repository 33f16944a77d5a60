"""The ``.ncmp`` file container: magic, version, a small JSON header, CRC-checked sections.

Layout (all integers little-endian)::

    offset  size  field
    0       4     magic b"NCMP"
    4       2     format version, uint16 (this code writes FORMAT_VERSION, reads OLDEST_READ_VERSION on)
    6       4     header length H, uint32 (at most MAX_HEADER_BYTES)
    10      4     CRC32 of the H header bytes, uint32
    14      4     number of sections, uint32
    18      H     header: a UTF-8 JSON object (keys sorted, no spaces), raw-deflated under the
                  preset dictionary HEADER_DICTIONARY (formats 6 and 7: a zlib stream without
                  one); at most MAX_HEADER_BYTES once inflated, and inflating stops there, so a
                  zip bomb costs nothing
    then per section, in file order:
            1     name length n, uint8 (1 .. MAX_NAME_BYTES)
            n     name, printable ASCII
            8     payload length P, uint64
            4     CRC32 of the name length, name, payload length and payload, uint32
            P     payload

Nothing follows the last section. Every length read from the file is checked against the
bytes that remain before anything is allocated, so a corrupt or hostile file costs at most its
own size in memory. Everything that is wrong with a file raises :class:`BitstreamError`.

Level of detail: a section named ``"<prefix>.l<level>"`` (:func:`level_section_name`) is a
*level section*, holding one level of one grid. Writers put the sections every level needs
first, then the level sections coarse level first, then the sections only a viewer needs (see
:mod:`nerfcompress.bitstream.levels`), so a prefix of the file (``data[:n]``, e.g. a partial
download) that reaches the level sections decodes to a lower level of detail:
:func:`read_container_prefix` returns the sections it holds completely.

Example:
    >>> data = write_container({"method": "shacira-nerfacto"}, [("cameras", b"...")])
    >>> header, sections = read_container(data)
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from nerfcompress.bitstream.header_dictionary import EXAMPLE_HEADERS
from nerfcompress.errors import BitstreamError

MAGIC = b"NCMP"
FORMAT_VERSION = 8
"""8: the header deflated under a preset dictionary (:mod:`nerfcompress.bitstream.header_dictionary`);
7: an image file may code its dense levels under a context model (``context_hidden``);
6: coding tables in variable-length integers at the cheapest count precision, SHACIRA's per level;
5: a checksum of the decoded symbols in every range-coded section, the coder's record in the header;
4: networks quantised and range-coded, compact cameras, a header of allow-listed settings;
3: grid entries without tensor specs (shapes come from the rebuilt tables' layouts);
2: per-level sections, coarse level first; 1: one stream per grid."""
OLDEST_READ_VERSION = 6
"""The oldest format this code reads: a format-6 file is a format-7 file without context models, and
a format-7 file a format-8 file whose header is a zlib stream without the preset dictionary."""
FIRST_DICTIONARY_VERSION = 8
"""The first format whose header is deflated under :data:`HEADER_DICTIONARY`."""
MAX_HEADER_BYTES = 1 << 20
MAX_NAME_BYTES = 64

_PREAMBLE = struct.Struct("<4sHIII")  # magic, version, header length, header CRC32, section count
_SECTION_FIXED = struct.Struct("<QI")  # payload length, payload CRC32
_MIN_SECTION_BYTES = 1 + 1 + _SECTION_FIXED.size  # a one-character name and an empty payload
_LEVEL_SUFFIX = re.compile(r"\.l(0|[1-9][0-9]{0,2})$")


@dataclass(frozen=True)
class SectionIndex:
    """Where one section's payload lies in the file.

    Attributes:
        name: the section name.
        offset: first byte of the payload in the file.
        length: payload bytes.
        crc32: the CRC32 the file declares for the section (see :func:`_section_crc`).
    """

    name: str
    offset: int
    length: int
    crc32: int


def level_section_name(prefix: str, level: int) -> str:
    """Name of the section that holds ``level`` of ``prefix`` (a grid), e.g. ``"main.l3"``."""
    return f"{prefix}.l{int(level)}"


def split_level_section(name: str) -> Optional[Tuple[str, int]]:
    """``(prefix, level)`` of a level section's name, None for any other section."""
    match = _LEVEL_SUFFIX.search(name)
    if match is None or match.start() == 0:
        return None
    return name[: match.start()], int(match.group(1))


def required_section(sections: Mapping[str, bytes], name: str) -> bytes:
    """The payload of section ``name``.

    Raises:
        BitstreamError: if the file has no such section.
    """
    if name not in sections:
        raise BitstreamError(f"section '{name}' is missing; the file is truncated or corrupt")
    return sections[name]


def section_frame_bytes(name: str) -> int:
    """Bytes a section costs in the file besides its payload (name and length/CRC fields)."""
    return 1 + len(_check_name(name)) + _SECTION_FIXED.size


def _section_crc(name_bytes: bytes, payload) -> int:
    """CRC32 of a section's name length, name, payload length and payload, so a damaged
    name or length is caught as surely as damaged data."""
    prefix = bytes([len(name_bytes)]) + name_bytes + struct.pack("<Q", len(payload))
    return zlib.crc32(payload, zlib.crc32(prefix))


def _check_name(name: str) -> bytes:
    """ASCII bytes of a section name; raises ValueError on a bad name."""
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_BYTES:
        raise ValueError(f"section name must be a str of 1..{MAX_NAME_BYTES} characters, found {name!r}")
    if not all(33 <= ord(ch) <= 126 for ch in name):
        raise ValueError(f"section name must be printable ASCII without spaces, found {name!r}")
    return name.encode("ascii")


def _header_text(header: Dict[str, Any]) -> bytes:
    """A header's JSON text as files hold it: UTF-8, keys sorted, no spaces, strict (no NaN)."""
    return json.dumps(header, allow_nan=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


HEADER_DICTIONARY = b"".join(_header_text(example) for example in EXAMPLE_HEADERS)
"""The preset dictionary of format-8 headers: the text of
:data:`~nerfcompress.bitstream.header_dictionary.EXAMPLE_HEADERS`, concatenated."""


def _deflate(text: bytes) -> bytes:
    """Raw deflate (no zlib wrapper: the container's CRC checks the bytes) of a header's text
    under :data:`HEADER_DICTIONARY`."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, HEADER_DICTIONARY)
    return deflater.compress(text) + deflater.flush()


def _encode_header(header: Dict[str, Any]) -> bytes:
    """The deflated JSON bytes of a header (see :func:`write_container`)."""
    if not isinstance(header, dict):
        raise ValueError(f"header must be a dict, found {type(header).__name__}")
    text = _header_text(header)
    if len(text) > MAX_HEADER_BYTES:
        raise ValueError(f"header is {len(text)} bytes once encoded, the limit is {MAX_HEADER_BYTES}")
    return _deflate(text)


def header_size_bytes(header: Dict[str, Any]) -> int:
    """Bytes the preamble and ``header`` take in a file: what :func:`write_container` writes
    before the first section.

    Raises:
        ValueError: as :func:`write_container`.
    """
    return _PREAMBLE.size + len(_encode_header(header))


def write_container(header: Dict[str, Any], sections: Sequence[Tuple[str, bytes]]) -> bytes:
    """Serialises a header and named sections into one file.

    The file is ``header_size_bytes(header) + sum(section_frame_bytes(name) + len(payload))`` bytes.

    Args:
        header: a JSON-serialisable dict (no NaN or infinity), at most ``MAX_HEADER_BYTES``
            once encoded.
        sections: ``(name, payload)`` pairs in file order; names unique, printable ASCII.

    Returns:
        The file bytes.

    Raises:
        ValueError: if the header is not a dict, is not strict JSON, or is too large; or a
            section name is invalid or repeated.
    """
    header_data = _encode_header(header)
    names = [name for name, _ in sections]
    if len(set(names)) != len(names):
        raise ValueError(f"section names must be unique, found {names}")
    parts = [_PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(header_data), zlib.crc32(header_data), len(sections))]
    parts.append(header_data)
    for name, payload in sections:
        name_bytes = _check_name(name)
        payload = bytes(payload)
        crc = _section_crc(name_bytes, payload)
        parts += [bytes([len(name_bytes)]), name_bytes, _SECTION_FIXED.pack(len(payload), crc)]
        parts.append(payload)
    return b"".join(parts)


def _reject_constant(name: str) -> None:
    raise BitstreamError(f"header holds the non-JSON constant {name}; the file is corrupt")


def _unique_keys(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise BitstreamError(f"header repeats a key among {sorted(keys)}; the file is corrupt")
    return dict(pairs)


def _inflate_header(header_bytes: bytes, version: int) -> bytes:
    """The JSON bytes of a format-``version`` file's deflated header, inflating at most ``MAX_HEADER_BYTES``."""
    if version >= FIRST_DICTIONARY_VERSION:
        inflater = zlib.decompressobj(-15, zdict=HEADER_DICTIONARY)
    else:
        inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(header_bytes, MAX_HEADER_BYTES)
    except zlib.error as exc:
        raise BitstreamError(f"header is not deflate data ({exc}); the file is corrupt") from exc
    if inflater.unconsumed_tail:
        raise BitstreamError(f"header inflates beyond {MAX_HEADER_BYTES} bytes; the file is corrupt")
    if not inflater.eof or inflater.unused_data:
        raise BitstreamError("header's deflate stream is incomplete or followed by junk; the file is corrupt")
    return text


def _parse_header(header_bytes: bytes, version: int) -> Dict[str, Any]:
    try:
        text = _inflate_header(header_bytes, version).decode("utf-8")
        header = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BitstreamError(f"header is not valid UTF-8 JSON ({exc}); the file is corrupt") from exc
    if not isinstance(header, dict):
        raise BitstreamError(f"header must be a JSON object, found {type(header).__name__}; the file is corrupt")
    return header


def read_container_index(data: bytes) -> Tuple[Dict[str, Any], List[SectionIndex]]:
    """Parses the header and locates every section without copying or checking payloads.

    Args:
        data: the whole file.

    Returns:
        ``(header, sections)`` with the sections in file order.

    Raises:
        BitstreamError: if the file is not a nerfcompress file, has an unsupported version,
            a damaged header, or a length that runs past the end of the file.
    """
    header, sections, _ = _parse_index(data, prefix=False)
    return header, sections


def _parse_preamble(view: memoryview, prefix: bool) -> Tuple[Dict[str, Any], int, int]:
    """``(header, offset of the first section entry, declared section count)``."""
    size = len(view)
    kind = "prefix" if prefix else "file"
    if size < _PREAMBLE.size:
        if bytes(view[:4]) != MAGIC[: min(size, 4)]:
            raise BitstreamError(f"not a nerfcompress file (magic {bytes(view[:4])!r}, expected {MAGIC!r})")
        raise BitstreamError(
            f"{kind} ends after {size} bytes, inside the {_PREAMBLE.size}-byte preamble; it is truncated"
        )
    magic, version, header_len, header_crc, num_sections = _PREAMBLE.unpack_from(view, 0)
    if magic != MAGIC:
        raise BitstreamError(f"not a nerfcompress file (magic {magic!r}, expected {MAGIC!r})")
    if version > FORMAT_VERSION:
        raise BitstreamError(
            f"format version {version} is newer than this nerfcompress (supports {FORMAT_VERSION}): upgrade"
        )
    if version < OLDEST_READ_VERSION:
        raise BitstreamError(
            f"format version {version} is older than this nerfcompress reads ({OLDEST_READ_VERSION} to "
            f"{FORMAT_VERSION}): re-export the "
            "trained run with this version (ns-compress export --load-config outputs/<run>/config.yml), or decode "
            "the file with the nerfcompress release that wrote it"
        )
    if header_len > MAX_HEADER_BYTES:
        raise BitstreamError(
            f"header declares {header_len} bytes, the limit is {MAX_HEADER_BYTES}; the file is corrupt"
        )
    offset = _PREAMBLE.size
    if header_len > size - offset:
        raise BitstreamError(
            f"{kind} ends after {size} bytes but the header declares {header_len} bytes from offset {offset}; "
            + (f"a prefix must hold at least the first {offset + header_len} bytes" if prefix else "it is truncated")
        )
    header_bytes = bytes(view[offset : offset + header_len])
    if zlib.crc32(header_bytes) != header_crc:
        raise BitstreamError("header CRC32 mismatch; the file is corrupt (re-export it or check the download)")
    return _parse_header(header_bytes, version), offset + header_len, num_sections


def _parse_index(data: bytes, prefix: bool) -> Tuple[Dict[str, Any], List[SectionIndex], int]:
    """``(header, sections, declared section count)``; with ``prefix``, the sections are those
    the data holds completely and parsing stops at the first one it does not."""
    view = memoryview(data)
    size = len(view)
    header, offset, num_sections = _parse_preamble(view, prefix)
    if not prefix and num_sections > (size - offset) // _MIN_SECTION_BYTES:
        raise BitstreamError(
            f"file declares {num_sections} sections but only {size - offset} bytes follow the header; "
            "it is truncated or corrupt"
        )
    sections: List[SectionIndex] = []
    for index in range(num_sections):
        if size - offset < (1 if prefix else _MIN_SECTION_BYTES):
            if prefix:
                _check_prefix_end(sections, None, index, num_sections, size)
                break
            raise BitstreamError(f"file ends after {size} bytes, inside the entry of section #{index}; it is truncated")
        name_len = view[offset]
        entry_cut = 1 + name_len + _SECTION_FIXED.size > size - offset
        if not 1 <= name_len <= MAX_NAME_BYTES or (entry_cut and not prefix):
            raise BitstreamError(
                f"section #{index} at offset {offset} declares a {name_len}-byte name; the file is truncated or corrupt"
            )
        if entry_cut:  # a prefix that ends inside this entry; its name may be whole
            name_is_whole = 1 + name_len <= size - offset
            name = _ascii_name(bytes(view[offset + 1 : offset + 1 + name_len]), index) if name_is_whole else None
            _check_prefix_end(sections, name, index, num_sections, size)
            break
        name = _ascii_name(bytes(view[offset + 1 : offset + 1 + name_len]), index)
        offset += 1 + name_len
        length, crc = _SECTION_FIXED.unpack_from(view, offset)
        offset += _SECTION_FIXED.size
        if any(s.name == name for s in sections):
            raise BitstreamError(f"section '{name}' appears twice; the file is corrupt")
        if length > size - offset:
            if prefix:
                _check_prefix_end(sections, name, index, num_sections, size)
                break
            raise BitstreamError(
                f"file ends after {size} bytes but section '{name}' declares {length} bytes from offset {offset}; "
                "it is truncated"
            )
        sections.append(SectionIndex(name=name, offset=offset, length=length, crc32=crc))
        offset += length
    else:
        if offset != size:
            raise BitstreamError(f"{size - offset} bytes follow the last section; the file is corrupt")
    return header, sections, num_sections


def _ascii_name(name_bytes: bytes, index: int) -> str:
    if not all(33 <= b <= 126 for b in name_bytes):
        raise BitstreamError(f"section #{index} has a non-ASCII name {name_bytes!r}; the file is corrupt")
    return name_bytes.decode("ascii")


def _check_prefix_end(
    complete: List[SectionIndex], cut_name: Optional[str], index: int, num_sections: int, size: int
) -> None:
    """Raises unless a prefix that ends inside section #``index`` holds every section that comes
    before the level sections: the cut section must be a level section, or a complete one must
    (writers put the sections every level needs first, then the levels, then what only a viewer
    needs). (A prefix that ends inside the name of the first level section is refused too; it
    decodes no level anyway.)"""
    if cut_name is not None and split_level_section(cut_name) is not None:
        return
    if any(split_level_section(entry.name) is not None for entry in complete):
        return
    where = f"inside section '{cut_name}'" if cut_name is not None else "before the name of the next section"
    raise BitstreamError(
        f"prefix of {size} bytes ends {where} (#{index} of {num_sections}) without reaching a level section; "
        "a prefix must hold the header and every section written before the first level ('<grid>.l<level>'): "
        "`ns-compress info` on the whole file lists the bytes each level needs"
    )


def _payloads(data: bytes, index: List[SectionIndex]) -> "OrderedDict[str, bytes]":
    """``name -> payload`` of the indexed sections, every CRC32 checked."""
    view = memoryview(data)
    sections: "OrderedDict[str, bytes]" = OrderedDict()
    for entry in index:
        payload = bytes(view[entry.offset : entry.offset + entry.length])
        if _section_crc(entry.name.encode("ascii"), payload) != entry.crc32:
            raise BitstreamError(
                f"section '{entry.name}' fails its CRC32 check; the file is corrupt "
                "(re-export it or check the download)"
            )
        sections[entry.name] = payload
    return sections


def read_container(data: bytes) -> Tuple[Dict[str, Any], "OrderedDict[str, bytes]"]:
    """Parses a file written by :func:`write_container` and checks every CRC32.

    Args:
        data: the whole file.

    Returns:
        ``(header, sections)``, the sections as ``name -> payload`` in file order.

    Raises:
        BitstreamError: as :func:`read_container_index`, or on a payload CRC32 mismatch.
    """
    header, index = read_container_index(data)
    return header, _payloads(data, index)


def read_container_prefix(data: bytes) -> Tuple[Dict[str, Any], "OrderedDict[str, bytes]", int]:
    """Parses a prefix of a file (``file[:n]``, e.g. a partial download), or a whole file.

    Only truncation is forgiven: the sections the prefix holds completely are returned, and
    parsing stops at the first one it does not; everything else is checked as in
    :func:`read_container` (a damaged header, name or length, or a complete section that fails
    its CRC32, still raises).

    Args:
        data: the prefix.

    Returns:
        ``(header, sections, num_sections)``: the complete sections as ``name -> payload`` in
        file order, and how many sections the whole file declares (``len(sections)`` when
        ``data`` is the whole file).

    Raises:
        BitstreamError: if the prefix ends before the header ends, or before the first level
            section (see the module docstring); or as :func:`read_container`.
    """
    header, index, num_sections = _parse_index(data, prefix=True)
    return header, _payloads(data, index), num_sections
