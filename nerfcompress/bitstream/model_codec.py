"""FeatureTables <-> file sections: one codec per table kind, dispatched by a registry.

Each grid ``g`` (the model's grids in order: main field first, then the proposal grids) gets
a JSON entry in the header's ``"grids"`` list (``{"name", "table", "rows", "features",
"level_rows", ...}``, ``level_rows`` being the rows of each level, level 0 first), one section
per level named ``"<name>.l<level>"`` holding only that level's rows, and possibly sections
every level needs, named ``"<name>.<part>"``:

* ``plain``: level sections of fp16 rows ``[rows_l, F]``; ``plain-fp32`` and ``plain-uniform``
  (written only when asked, :func:`plain_codec`) hold float32 rows or uniformly quantized,
  entropy-coded symbols (:mod:`nerfcompress.bitstream.plain_codecs`).
* ``shacira``: ``.cdf`` (integer coding tables shared by all levels: int32 ``lo [D]``, uint32
  ``support [D]``, then every channel's uint32 counts back to back), ``.decoder`` (the
  decoder's fp16 parameters by name: ``weight [F, D]`` and ``bias [F]`` for the shared decoder,
  ``scale [L, F]`` and ``shift [L, F]`` for the per-level one), and level sections each
  holding the level's integer latents as its own range-coded stream (channel 0 first) under
  those tables.
* ``vqad``: level sections holding the level's fp16 codebook ``[K, F]`` (``K * F * 2`` bytes),
  then its ``b``-bit indices in the coding the header entry records in ``"coding"`` (one of
  ``"packed"``/``"range"`` per level, whichever was smaller; formats in
  :mod:`nerfcompress.entropy.indices`). The entry also holds ``"bits"``.

:func:`encode_tables` returns the sections in file order (:mod:`nerfcompress.bitstream.levels`):
the per-grid parts first, then the level sections of all grids interleaved, coarse level first,
so a prefix of the file decodes the coarse levels (``decode_tables(..., num_levels=k)``).

The decoder reads only the stored integer tables (SHACIRA's: the latents' own symbol
frequencies, :meth:`~nerfcompress.tables.ShaciraTable.coding_tables`); the learned prior is
not stored. New table
kinds plug in with :func:`register_table_codec`. Each table type has a default codec; a
PlainTable can also be written post hoc as fp32 or uniform symbols (:func:`plain_codec`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from nerfcompress.bitstream.container import level_section_name, required_section
from nerfcompress.bitstream.levels import entry_level_rows, order_sections
from nerfcompress.bitstream.plain_codecs import (
    decode_plain_rows,
    decode_plain_uniform,
    encode_plain_rows,
    encode_plain_uniform,
)
from nerfcompress.bitstream.tensors import pack_tensors, unpack_tensors
from nerfcompress.entropy.coder import ChannelTables, decode_latents, encode_latents
from nerfcompress.entropy.indices import decode_indices, encode_indices
from nerfcompress.errors import BitstreamError
from nerfcompress.tables import FeatureTable, PlainTable, ShaciraTable, VqadTable
from nerfcompress.tables.uniform import MAX_BITS, MIN_BITS

Sections = List[Tuple[str, bytes]]
Encoder = Callable[[FeatureTable, str], Tuple[Dict[str, Any], Sections]]
Decoder = Callable[[Mapping[str, Any], Mapping[str, bytes], FeatureTable, int], None]


@dataclass(frozen=True)
class TableCodec:
    """How one table kind is written and read.

    Attributes:
        kind: the ``"table"`` value in the header, e.g. ``"shacira"``.
        table_type: the FeatureTable subclass it encodes.
        encode: ``(table, name) -> (meta, sections)``; meta is the JSON header entry without
            ``name``/``table``/``rows``/``features``/``level_rows``; sections are named
            ``"<name>.<part>"``, level ``l``'s rows only in ``"<name>.l<l>"`` (any order).
        decode: ``(meta, sections, table, num_levels) -> None``, fills the table's parameters
            in place from untrusted meta and sections, levels ``0 .. num_levels - 1`` from their
            sections (``1 <= num_levels <= table.num_levels``) and the finer ones with zeros;
            meta's ``level_rows`` is already checked against the table. Raises
            :class:`BitstreamError`.
    """

    kind: str
    table_type: type
    encode: Encoder
    decode: Decoder


_CODECS: Dict[str, TableCodec] = {}
_DEFAULT_CODECS: Dict[type, TableCodec] = {}


class UnsupportedTableError(ValueError):
    """A table kind has no registered codec, so a model holding it cannot be exported."""


def register_table_codec(codec: TableCodec, default: bool = True) -> None:
    """Makes a table kind known to :func:`decode_tables`, and with ``default`` the codec that
    :func:`encode_tables` uses for ``codec.table_type`` unless told otherwise."""
    _CODECS[codec.kind] = codec
    if default:
        _DEFAULT_CODECS[codec.table_type] = codec


def _codec_for(table: FeatureTable) -> TableCodec:
    if type(table) in _DEFAULT_CODECS:
        return _DEFAULT_CODECS[type(table)]
    known = ", ".join(table_type.__name__ for table_type in _DEFAULT_CODECS)
    raise UnsupportedTableError(f"no codec for {type(table).__name__}; tables that can be exported: {known}")


def _load_tensors(
    spec: Any, payload: bytes, shapes: Mapping[str, Tuple[int, ...]], where: str
) -> Dict[str, torch.Tensor]:
    """Float32 tensors from a tensor section, checked against the expected ``shapes``."""
    arrays = unpack_tensors(spec, payload)
    found = {name: tuple(a.shape) for name, a in arrays.items()}
    if found != dict(shapes):
        raise BitstreamError(f"{where} holds {found}, expected {dict(shapes)}; the file does not match its header")
    return {name: torch.from_numpy(a.astype(np.float32)) for name, a in arrays.items()}


def pack_channel_tables(tables: ChannelTables) -> bytes:
    """``lo`` int32 ``[D]``, ``support`` uint32 ``[D]``, then the counts, all little-endian."""
    support = np.asarray(tables.support, dtype="<u4")
    return b"".join(
        [tables.lo.astype("<i4").tobytes(), support.tobytes(), *(f.astype("<u4").tobytes() for f in tables.freq)]
    )


def unpack_channel_tables(payload: bytes, num_channels: int) -> ChannelTables:
    """Inverse of :func:`pack_channel_tables`; every length is checked before it is used.

    Raises:
        BitstreamError: if the payload is too short or long for its supports, or the tables
            are invalid (a zero count, a support below 2, a range outside int32).
    """
    if len(payload) < 8 * num_channels:
        raise BitstreamError(f"coding tables hold {len(payload)} bytes, need at least {8 * num_channels}")
    lo = np.frombuffer(payload, dtype="<i4", count=num_channels).astype(np.int32)
    support = np.frombuffer(payload, dtype="<u4", count=num_channels, offset=4 * num_channels).astype(np.int64)
    if 4 * (2 * num_channels + int(support.sum())) != len(payload):
        raise BitstreamError(
            f"coding tables declare supports {support.tolist()} but hold {len(payload)} bytes; the file is corrupt"
        )
    freq, offset = [], 8 * num_channels
    for s in support.tolist():
        freq.append(np.frombuffer(payload, dtype="<u4", count=s, offset=offset).astype(np.uint32))
        offset += 4 * s
    try:
        return ChannelTables(lo=lo, freq=tuple(freq))
    except ValueError as exc:
        raise BitstreamError(f"coding tables are invalid ({exc}); the file is corrupt") from exc


def _encode_shacira(table: ShaciraTable, name: str) -> Tuple[Dict[str, Any], Sections]:
    latents = table.integer_latents().cpu().numpy()  # int32 [rows, D]
    tables = table.coding_tables(latents)
    spec, decoder = pack_tensors(dict(table.decoder.named_parameters()), "<f2")
    sections = [(f"{name}.cdf", pack_channel_tables(tables)), (f"{name}.decoder", decoder)]
    for level, level_latents in enumerate(np.split(latents, np.cumsum(table.level_rows)[:-1])):
        sections.append((level_section_name(name, level), encode_latents(level_latents, tables)))
    return {"latent_dim": table.latent_dim, "decoder": spec}, sections


def decode_shacira_latents(
    meta: Mapping[str, Any], sections: Mapping[str, bytes], max_rows: int, num_levels: Optional[int] = None
) -> np.ndarray:
    """The integer latents of a SHACIRA grid's coarsest levels.

    Args:
        meta: the grid's header entry (untrusted).
        sections: the file's sections.
        max_rows: the most rows accepted (the rebuilt grid's row count).
        num_levels: decode levels ``0 .. num_levels - 1`` (``>= 1``; all levels if None or
            more than the grid has).

    Returns:
        int32 ``[rows_0 + ... + rows_{num_levels - 1}, D]``, level 0's rows first.

    Raises:
        BitstreamError: on a malformed entry, missing sections or a damaged stream.
        ValueError: if ``num_levels`` is below 1.
    """
    if num_levels is not None and num_levels < 1:
        raise ValueError(f"num_levels must be None or >= 1, found {num_levels}")
    name, rows, dim = meta["name"], meta.get("rows"), meta.get("latent_dim")
    if not isinstance(rows, int) or isinstance(rows, bool) or not 0 <= rows <= max_rows:
        raise BitstreamError(f"grid '{name}' declares rows={rows!r:.40}, expected 0 .. {max_rows}; the file is corrupt")
    if not isinstance(dim, int) or isinstance(dim, bool) or not 1 <= dim <= 64:
        raise BitstreamError(f"grid '{name}' declares latent_dim={dim!r}; the file is corrupt")
    level_rows = entry_level_rows(meta)[:num_levels]
    tables = unpack_channel_tables(required_section(sections, f"{name}.cdf"), dim)
    levels = [
        decode_latents(required_section(sections, level_section_name(name, level)), count, tables, max_rows=count)
        for level, count in enumerate(level_rows)
    ]
    return np.concatenate(levels)


def _decode_shacira(
    meta: Mapping[str, Any], sections: Mapping[str, bytes], table: ShaciraTable, num_levels: int
) -> None:
    name = meta["name"]
    if meta.get("latent_dim") != table.latent_dim:
        raise BitstreamError(
            f"grid '{name}' stores latent_dim={meta.get('latent_dim')!r}, the model has {table.latent_dim}"
        )
    latents = np.zeros((table.num_rows, table.latent_dim), np.int32)  # levels not decoded stay zero
    decoded = decode_shacira_latents(meta, sections, max_rows=table.num_rows, num_levels=num_levels)
    latents[: len(decoded)] = decoded
    params = dict(table.decoder.named_parameters())
    shapes = {key: tuple(param.shape) for key, param in params.items()}
    decoder = _load_tensors(
        meta.get("decoder"), required_section(sections, f"{name}.decoder"), shapes, f"'{name}.decoder'"
    )
    with torch.no_grad():
        table.latents.copy_(torch.from_numpy(latents).to(table.latents.dtype))
        for key, param in params.items():
            param.copy_(decoder[key])
    table.clear_cache()


def _encode_vqad(table: VqadTable, name: str) -> Tuple[Dict[str, Any], Sections]:
    indices = table.integer_indices().cpu().numpy()  # uint8 [rows]
    codebooks = table.codebooks.detach().cpu()  # [L, K, F]
    codings, sections = [], []
    for level, level_indices in enumerate(np.split(indices, np.cumsum(table.level_rows)[:-1])):
        _, codebook = pack_tensors({"codebook": codebooks[level]}, "<f2")
        coding, index_bytes = encode_indices(level_indices, table.bits)
        codings.append(coding)
        sections.append((level_section_name(name, level), codebook + index_bytes))
    return {"bits": table.bits, "coding": codings}, sections


def decode_vqad_level(
    meta: Mapping[str, Any], sections: Mapping[str, bytes], level: int, num_features: int
) -> Tuple[np.ndarray, np.ndarray]:
    """One level of a VQAD grid: ``(indices uint8 [rows_l], codebook float32 [K, F])``.

    Args:
        meta: the grid's header entry (untrusted; ``bits``/``level_rows`` already checked
            against the model by the caller).
        sections: the file's sections.
        level: which level.
        num_features: ``F``.

    Raises:
        BitstreamError: on a missing section, a section too short for its codebook, an
            unknown coding or damaged indices.
    """
    name, bits = meta["name"], meta["bits"]
    codings = meta.get("coding")
    if not isinstance(codings, list) or len(codings) != len(meta["level_rows"]):
        raise BitstreamError(f"grid '{name}' records codings {codings!r:.80}, expected one per level")
    payload = required_section(sections, level_section_name(name, level))
    codebook_bytes = 2 * (1 << bits) * num_features
    if len(payload) < codebook_bytes:
        raise BitstreamError(
            f"section '{name}.l{level}' holds {len(payload)} bytes, its codebook alone needs {codebook_bytes}; "
            "the file is truncated or corrupt"
        )
    codebook = np.frombuffer(payload, dtype="<f2", count=codebook_bytes // 2).astype(np.float32)
    if not np.isfinite(codebook).all():
        raise BitstreamError(f"codebook of '{name}.l{level}' holds NaN or infinity; the file is corrupt")
    indices = decode_indices(codings[level], payload[codebook_bytes:], meta["level_rows"][level], bits)
    return indices, codebook.reshape(1 << bits, num_features)


def _decode_vqad(meta: Mapping[str, Any], sections: Mapping[str, bytes], table: VqadTable, num_levels: int) -> None:
    if meta.get("bits") != table.bits:
        raise BitstreamError(f"grid '{meta['name']}' stores bits={meta.get('bits')!r:.20}, the model has {table.bits}")
    indices = np.zeros(table.num_rows, np.uint8)  # levels not decoded stay zero
    codebooks = np.zeros(tuple(table.codebooks.shape), np.float32)  # [L, K, F]
    offset = 0
    for level in range(num_levels):
        level_indices, codebooks[level] = decode_vqad_level(meta, sections, level, table.num_features)
        indices[offset : offset + len(level_indices)] = level_indices
        offset += len(level_indices)
    table.assign_codes(torch.from_numpy(indices), torch.from_numpy(codebooks).to(table.codebooks.device))


register_table_codec(
    TableCodec("plain", PlainTable, partial(encode_plain_rows, dtype="<f2"), partial(decode_plain_rows, dtype="<f2"))
)
register_table_codec(
    TableCodec(
        "plain-fp32", PlainTable, partial(encode_plain_rows, dtype="<f4"), partial(decode_plain_rows, dtype="<f4")
    ),
    default=False,
)
register_table_codec(
    TableCodec("plain-uniform", PlainTable, partial(encode_plain_uniform, bits=8), decode_plain_uniform),
    default=False,
)
register_table_codec(TableCodec("shacira", ShaciraTable, _encode_shacira, _decode_shacira))
register_table_codec(TableCodec("vqad", VqadTable, _encode_vqad, _decode_vqad))

PLAIN_STORAGES = ("fp16", "fp32", *(f"uniform{bits}" for bits in range(MIN_BITS, MAX_BITS + 1)))
"""What :func:`plain_codec` accepts: fp16 or fp32 rows, or ``uniform<b>`` symbols."""


def plain_codec(storage: str) -> TableCodec:
    """The codec that stores PlainTable rows as ``storage`` (one of :data:`PLAIN_STORAGES`).

    ``"fp16"`` is the default ``plain`` kind, ``"fp32"`` the ``plain-fp32`` kind (the true
    uncompressed size) and ``"uniform<b>"`` the ``plain-uniform`` kind with ``b`` bits (see
    :mod:`nerfcompress.bitstream.plain_codecs`). Pass it to :func:`encode_tables`.

    Raises:
        ValueError: on any other ``storage``.
    """
    if storage not in PLAIN_STORAGES:
        raise ValueError(f"plain storage must be one of {', '.join(PLAIN_STORAGES)}, found {storage!r}")
    if storage == "fp16":
        return _CODECS["plain"]
    if storage == "fp32":
        return _CODECS["plain-fp32"]
    bits = int(storage[len("uniform") :])
    return replace(_CODECS["plain-uniform"], encode=partial(encode_plain_uniform, bits=bits))


def encode_tables(
    tables: Sequence[FeatureTable], names: Sequence[str], codec: Optional[TableCodec] = None
) -> Tuple[List[Dict[str, Any]], Sections]:
    """Header entries and sections for every grid, in grid order.

    Args:
        tables: the grids' tables (main field first, then proposals).
        names: a short unique name per grid (section prefixes), e.g. ``"g0"``.
        codec: write every table with this codec (e.g. ``plain_codec("uniform8")``) instead of
            its kind's default; every table must then be of ``codec.table_type``.

    Returns:
        ``(grids, sections)``: the header's ``"grids"`` list and the sections in file order:
        every grid's per-grid parts (grid order), then level 0 of every grid, level 1 of every
        grid, ... (:func:`~nerfcompress.bitstream.levels.order_sections`).

    Raises:
        UnsupportedTableError: if a table kind has no codec, or is not the given codec's.
        ValueError: if names and tables differ in length.
    """
    if len(tables) != len(names):
        raise ValueError(f"expected one name per table, found {len(names)} names for {len(tables)} tables")
    if codec is not None:
        others = sorted({type(t).__name__ for t in tables if type(t) is not codec.table_type})
        if others:
            raise UnsupportedTableError(
                f"codec '{codec.kind}' writes {codec.table_type.__name__} only, "
                f"the model also holds {', '.join(others)}"
            )
    grids, sections = [], []
    for table, name in zip(tables, names):
        table_codec = codec or _codec_for(table)
        meta, table_sections = table_codec.encode(table, name)
        level_sections = {level_section_name(name, level) for level in range(table.num_levels)}
        assert level_sections <= {section for section, _ in table_sections}, (name, table_sections)
        grids.append(
            {
                "name": name,
                "table": table_codec.kind,
                "rows": table.num_rows,
                "features": table.num_features,
                "level_rows": list(table.level_rows),
                **meta,
            }
        )
        sections += table_sections
    return grids, order_sections(sections)


def _check_entry(entry: Any, table: FeatureTable, index: int) -> TableCodec:
    if (
        not isinstance(entry, dict)
        or not isinstance(entry.get("name"), str)
        or not isinstance(entry.get("table"), str)  # a list or dict is unhashable: `in` would raise TypeError
        or entry["table"] not in _CODECS
    ):
        known = ", ".join(_CODECS)
        raise BitstreamError(
            f"grid #{index} entry is malformed or of an unknown table kind (known: {known}): {entry!r:.200}"
        )
    codec = _CODECS[entry["table"]]
    if type(table) is not codec.table_type:
        raise BitstreamError(
            f"grid '{entry['name']}' is stored as '{codec.kind}' but the model builds a {type(table).__name__}"
        )
    if entry.get("rows") != table.num_rows or entry.get("features") != table.num_features:
        raise BitstreamError(
            f"grid '{entry['name']}' stores [{entry.get('rows')!r}, {entry.get('features')!r}] rows, "
            f"the model's layout has [{table.num_rows}, {table.num_features}]"
        )
    if entry.get("level_rows") != list(table.level_rows):
        raise BitstreamError(
            f"grid '{entry['name']}' stores level_rows={entry.get('level_rows')!r:.200}, "
            f"the model's layout has {list(table.level_rows)}"
        )
    return codec


def decode_tables(
    grids: Any, sections: Mapping[str, bytes], tables: Sequence[FeatureTable], num_levels: Optional[int] = None
) -> None:
    """Fills ``tables`` in place from the header's ``"grids"`` list and the sections.

    Args:
        grids: the header's ``"grids"`` list (untrusted).
        sections: the file's sections (a prefix's complete sections will do for the levels
            decoded, see :func:`~nerfcompress.bitstream.levels.decodable_levels`).
        tables: freshly built tables of the rebuilt model, in grid order.
        num_levels: decode levels ``0 .. num_levels - 1`` of every grid (a grid with fewer
            levels decodes all of them); the rows of finer levels are set to zero, which is
            harmless when the grids render only the decoded levels. None: every level.

    Raises:
        BitstreamError: if the entries do not match the tables or anything fails to decode.
        ValueError: if ``num_levels`` is not None or an int >= 1.
    """
    if num_levels is not None and (isinstance(num_levels, bool) or not isinstance(num_levels, int) or num_levels < 1):
        raise ValueError(f"num_levels must be None or an int >= 1, found {num_levels!r}")
    if not isinstance(grids, list) or len(grids) != len(tables):
        count = len(grids) if isinstance(grids, list) else type(grids).__name__
        raise BitstreamError(f"header lists {count} grids, the model has {len(tables)}; the file is corrupt")
    for index, (entry, table) in enumerate(zip(grids, tables)):
        levels = table.num_levels if num_levels is None else min(num_levels, table.num_levels)
        _check_entry(entry, table, index).decode(entry, sections, table, levels)
