"""FeatureTables <-> file sections, through the table codec protocol.

Each grid ``g`` (the model's grids in order: main field first, then the proposal grids) gets
a JSON entry in the header's ``"grids"`` list and the sections of its table's
:class:`~nerfcompress.tables.symbols.SymbolLayout`: shared sections ``"<name>.<suffix>"`` and one
section per level, ``"<name>.l<level>"``, holding only that level (payloads as
:mod:`nerfcompress.bitstream.symbol_codec` describes). The entry is::

    {"name": str, "table": layout kind, "rows": int, "features": int,
     "level_rows": [rows of level 0, level 1, ...], **layout settings,
     "coding": [the coding of each index part, in file order]}   (only with index parts)

:func:`encode_tables` returns the sections in file order (:mod:`nerfcompress.bitstream.levels`):
the shared sections first, then the level sections of all grids interleaved, coarse level first,
so a prefix of the file decodes the coarse levels (``decode_tables(..., num_levels=k)``).

This module never touches a table's attributes: each table turns itself into symbols and back
(``to_symbols`` / ``from_symbols``), and the decoder builds nothing the rebuilt table's layout
does not call for. The stored kinds: ``plain`` (fp16 rows), ``plain-fp32`` and ``plain-uniform``
(a PlainTable written post hoc, :func:`plain_codec`), ``shacira`` and ``vqad``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from nerfcompress.bitstream.levels import order_sections
from nerfcompress.bitstream.symbol_codec import check_codings, decode_symbols, encode_symbols
from nerfcompress.entropy.context import IntegerContextModel
from nerfcompress.errors import BitstreamError
from nerfcompress.tables import FeatureTable, PlainTable
from nerfcompress.tables.plain import PLAIN_STORAGES

Sections = List[Tuple[str, bytes]]

ENTRY_FIELDS = ("name", "table", "rows", "features", "level_rows", "coding")
"""Keys of a grid entry besides its layout's settings."""


@dataclass(frozen=True)
class TableCodec:
    """A storage asked for by name, for every table of one type (e.g. a PlainTable as ``uniform8``).

    Attributes:
        table_type: the FeatureTable subclass it applies to.
        storage: one of that type's ``storages()``.
    """

    table_type: type
    storage: str


class UnsupportedTableError(ValueError):
    """A table has no stored form (or not the one asked for), so a model holding it cannot be exported."""


def plain_codec(storage: str) -> TableCodec:
    """Stores PlainTable rows as ``storage``, one of :data:`PLAIN_STORAGES`: ``"fp16"`` (the
    default), ``"fp32"`` (the true uncompressed size) or ``"uniform<b>"``. Pass it to
    :func:`encode_tables`.

    Raises:
        ValueError: on any other ``storage``.
    """
    if storage not in PLAIN_STORAGES:
        raise ValueError(f"plain storage must be one of {', '.join(PLAIN_STORAGES)}, found {storage!r}")
    return TableCodec(PlainTable, storage)


def encode_tables(
    tables: Sequence[FeatureTable],
    names: Sequence[str],
    codec: Optional[TableCodec] = None,
    context: Optional[IntegerContextModel] = None,
) -> Tuple[List[Dict[str, Any]], Sections]:
    """Header entries and sections for every grid, in grid order.

    Args:
        tables: the grids' tables (main field first, then proposals).
        names: a short unique name per grid (section prefixes), e.g. ``"g0"``.
        codec: write every table in this storage (e.g. ``plain_codec("uniform8")``) instead of
            its default; every table must then be of ``codec.table_type``.
        context: the context model the file stores, for tables with context-coded levels.

    Returns:
        ``(grids, sections)``: the header's ``"grids"`` list and the sections in file order:
        every grid's per-grid parts (grid order), then level 0 of every grid, level 1 of every
        grid, ... (:func:`~nerfcompress.bitstream.levels.order_sections`).

    Raises:
        UnsupportedTableError: if a table has no stored form, or is not of the given codec's type.
        ValueError: if names and tables differ in length.
    """
    if len(tables) != len(names):
        raise ValueError(f"expected one name per table, found {len(names)} names for {len(tables)} tables")
    if codec is not None:
        others = sorted({type(t).__name__ for t in tables if type(t) is not codec.table_type})
        if others:
            raise UnsupportedTableError(
                f"storage '{codec.storage}' writes {codec.table_type.__name__} only, "
                f"the model also holds {', '.join(others)}"
            )
    grids, sections = [], []
    for table, name in zip(tables, names):
        if not table.storages():
            raise UnsupportedTableError(
                f"{type(table).__name__} has no stored form: it does not implement the table codec protocol "
                "(storages, symbol_layout, to_symbols, from_symbols)"
            )
        storage = None if codec is None else codec.storage
        layout = table.symbol_layout(storage)
        codings, table_sections = encode_symbols(layout, table.to_symbols(storage), name, context)
        grids.append(_entry(table, layout.kind, layout.settings, name, codings))
        sections += table_sections
    return grids, order_sections(sections)


def _entry(
    table: FeatureTable, kind: str, settings: Mapping[str, int], name: str, codings: List[str]
) -> Dict[str, Any]:
    return {
        "name": name,
        "table": kind,
        "rows": table.num_rows,
        "features": table.num_features,
        "level_rows": list(table.level_rows),
        **settings,
        **({"coding": codings} if codings else {}),
    }


def implied_entries(tables: Sequence[FeatureTable], names: Sequence[str], codings: Any) -> List[Dict[str, Any]]:
    """The ``"grids"`` entries of tables written in their default storage, for a file whose
    model settings alone fix every table (an image file): only each grid's index-part codings
    (the list :func:`encode_tables` puts in an entry's ``"coding"``, ``[]`` for none) need storing.

    Args:
        tables: the rebuilt model's tables.
        names: their section prefixes.
        codings: the file's codings per grid (untrusted; None: no grid has index parts).

    Returns:
        Entries for :func:`decode_tables`, which checks the codings against each layout.

    Raises:
        BitstreamError: unless ``codings`` is None or a list of one list per table.
    """
    codings = [[] for _ in tables] if codings is None else codings
    if not (isinstance(codings, list) and len(codings) == len(tables) and all(isinstance(c, list) for c in codings)):
        raise BitstreamError(
            f"file records codings {codings!r:.80}, expected a list of one list per grid ({len(tables)}); "
            "the file is corrupt"
        )
    entries = []
    for table, name, table_codings in zip(tables, names, codings):
        layout = table.symbol_layout()
        entries.append(_entry(table, layout.kind, layout.settings, name, table_codings))
    return entries


def _check_entry(entry: Any, table: FeatureTable, index: int) -> Optional[str]:
    """The storage of ``table`` that wrote ``entry`` (untrusted), checked against the table."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not isinstance(entry.get("table"), str):
        raise BitstreamError(f"grid #{index} entry is malformed: {entry!r:.200}; the file is corrupt")
    name = entry["name"]
    settings = {key: value for key, value in entry.items() if key not in ENTRY_FIELDS}
    if any(isinstance(value, bool) or not isinstance(value, int) for value in settings.values()):
        raise BitstreamError(f"grid '{name:.40}' records settings {settings!r:.80}, expected ints; the file is corrupt")
    storage = table.storage_for(entry["table"], settings)
    if storage is None:
        kinds = sorted({table.symbol_layout(s).kind for s in table.storages()})
        raise BitstreamError(
            f"grid '{name:.40}' is stored as '{entry['table']:.40}' with settings {settings!r:.80} but the model "
            f"builds a {type(table).__name__} (stored as {', '.join(kinds) or 'nothing'}); the file is corrupt "
            "or from another version"
        )
    if entry.get("rows") != table.num_rows or entry.get("features") != table.num_features:
        raise BitstreamError(
            f"grid '{name:.40}' stores [{entry.get('rows')!r:.40}, {entry.get('features')!r:.40}] rows, "
            f"the model's layout has [{table.num_rows}, {table.num_features}]"
        )
    if entry.get("level_rows") != list(table.level_rows):
        raise BitstreamError(
            f"grid '{name:.40}' stores level_rows={entry.get('level_rows')!r:.200}, "
            f"the model's layout has {list(table.level_rows)}"
        )
    return storage


def check_tables(
    grids: Any, sections: Mapping[str, bytes], tables: Sequence[FeatureTable], num_levels: Optional[int] = None
) -> None:
    """Checks the header's ``"grids"`` list and the sections against ``tables`` without decoding:
    what :func:`decode_tables` checks before it allocates anything (entries, codings, section
    lengths, streams against the rows their words can hold). ``tables`` may live on the meta
    device (built without storage), so an importer can refuse a file before it builds its model.

    Raises:
        BitstreamError: as :func:`decode_tables`, for everything but damage inside a stream.
        ValueError: if ``num_levels`` is not None or an int >= 1.
    """
    _decode(grids, sections, tables, num_levels, check=True)


def decode_tables(
    grids: Any,
    sections: Mapping[str, bytes],
    tables: Sequence[FeatureTable],
    num_levels: Optional[int] = None,
    context: Optional[IntegerContextModel] = None,
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
        context: the file's context model (decoded from its own section), for tables with
            context-coded levels.

    Raises:
        BitstreamError: if the entries do not match the tables or anything fails to decode.
        ValueError: if ``num_levels`` is not None or an int >= 1.
    """
    _decode(grids, sections, tables, num_levels, check=False, context=context)


def _decode(
    grids: Any,
    sections: Mapping[str, bytes],
    tables: Sequence[FeatureTable],
    num_levels,
    check: bool,
    context: Optional[IntegerContextModel] = None,
) -> None:
    if num_levels is not None and (isinstance(num_levels, bool) or not isinstance(num_levels, int) or num_levels < 1):
        raise ValueError(f"num_levels must be None or an int >= 1, found {num_levels!r}")
    if not isinstance(grids, list) or len(grids) != len(tables):
        count = len(grids) if isinstance(grids, list) else type(grids).__name__
        raise BitstreamError(f"header lists {count} grids, the model has {len(tables)}; the file is corrupt")
    for index, (entry, table) in enumerate(zip(grids, tables)):
        levels = table.num_levels if num_levels is None else min(num_levels, table.num_levels)
        storage = _check_entry(entry, table, index)
        layout = table.symbol_layout(storage)
        codings = check_codings(entry.get("coding"), layout, entry["name"])
        symbols = decode_symbols(layout, sections, codings, entry["name"], levels, check, context)
        if not check:
            table.from_symbols(symbols, storage)
