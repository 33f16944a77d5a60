"""The table codec protocol: what a table stores, in a few generic codings.

Every FeatureTable describes the form it is stored in as a :class:`SymbolLayout`, a function of
its configuration alone (shapes and widths, never values), and turns itself into
:class:`TableSymbols` (``to_symbols``) and back (``from_symbols``). The file writer
(:mod:`nerfcompress.bitstream.symbol_codec`) knows only the part kinds below and never touches
a table's attributes, so the NeRF exporter and the image codec share one codec.

A layout has *shared sections* (what every level needs, e.g. SHACIRA's coding tables and
decoder) and one *level section* per grid level, so that a prefix of a file decodes the coarse
levels. A section is an ordered list of named parts:

* :class:`FloatPart`: float32 values stored as fp16 or fp32 (rows, decoders, codebooks).
* :class:`CodingTablesPart`: integer coding tables (:class:`~nerfcompress.entropy.coder.ChannelTables`)
  that the encoder derives from a learned prior; stored, so the decoder never evaluates a float model.
* :class:`RangePart`: int32 symbols ``[rows, channels]`` range-coded under the coding tables of
  a shared section or of its own section (a level that carries its own tables).
* :class:`IndexPart`: uint8 symbols in ``[0, 2**bits)``, bit-packed or range-coded with their
  own histogram, whichever is smaller.
* :class:`ContextPart`: int32 latents of a dense 2D level (``count`` of them, row-major in rows of
  ``cols``), coded under the file's context model (:mod:`nerfcompress.entropy.context`; the
  image codec's).

Values are numpy arrays (float32, int32 or uint8 as above) or ChannelTables. Only a part whose
bytes delimit themselves may be followed by another part in its section: a :class:`RangePart`,
:class:`IndexPart` or :class:`ContextPart` comes last.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Tuple, Union

FLOAT_DTYPES = ("<f2", "<f4")
"""On-disk dtypes of a :class:`FloatPart`."""

MAX_INDEX_BITS = 8
"""Widest :class:`IndexPart` (its symbols are uint8)."""


@dataclass(frozen=True)
class FloatPart:
    """float32 values of ``shape``, stored as ``dtype`` (one of :data:`FLOAT_DTYPES`)."""

    shape: Tuple[int, ...]
    dtype: str = "<f2"

    def __post_init__(self) -> None:
        if self.dtype not in FLOAT_DTYPES or any(int(n) < 0 for n in self.shape):
            raise ValueError(f"FloatPart needs a dtype in {FLOAT_DTYPES} and a shape of sizes >= 0, got {self}")


@dataclass(frozen=True)
class CodingTablesPart:
    """Integer coding tables of ``channels`` channels, for the :class:`RangePart` s that name its section."""

    channels: int


@dataclass(frozen=True)
class RangePart:
    """int32 ``[rows, channels]`` range-coded under the :class:`CodingTablesPart` of section ``tables``
    (a shared section's suffix, or ``"l<level>"`` of the part's own level section)."""

    rows: int
    channels: int
    tables: str


@dataclass(frozen=True)
class IndexPart:
    """uint8 ``[count]`` in ``[0, 2**bits)``, ``1 <= bits <= 8``."""

    count: int
    bits: int

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= MAX_INDEX_BITS or self.count < 0:
            raise ValueError(f"IndexPart needs 1 <= bits <= {MAX_INDEX_BITS} and count >= 0, got {self}")


@dataclass(frozen=True)
class ContextPart:
    """int32 ``[count]``: one channel of a dense 2D level, row-major in rows of ``cols`` (the last
    row may be short), coded under the context model the file stores (each latent's distribution
    predicted from its decoded neighbours)."""

    count: int
    cols: int
    level: int
    """The context model's level index (its own offsets of centre and spread)."""

    def __post_init__(self) -> None:
        if self.count < 1 or self.cols < 1 or self.level < 0:
            raise ValueError(f"ContextPart needs rows, cols >= 1, got {self}")


def level_suffix(level: int) -> str:
    """The suffix of level ``level``'s section within its table's layout, ``"l<level>"`` (a
    :class:`RangePart` of the level names it to use the level's own tables)."""
    return f"l{level}"


Part = Union[FloatPart, CodingTablesPart, RangePart, IndexPart, ContextPart]
Section = Mapping[str, Part]
"""Named parts in storage order."""


@dataclass(frozen=True)
class SymbolLayout:
    """The stored form of one table.

    Attributes:
        kind: what the header records as the grid's ``"table"``, e.g. ``"shacira"``.
        settings: integer settings the header records beside it (e.g. ``{"latent_dim": 2}``);
            a file's entry must match them exactly.
        shared: ``suffix -> section``, the sections every level needs (file section
            ``"<grid>.<suffix>"``), in storage order.
        levels: one section per level, level 0 first (file section ``"<grid>.l<level>"``).

    Raises:
        ValueError: if a range- or index-coded part is followed by another part, a
            :class:`RangePart` names neither a shared section nor its own, or a section without
            exactly one :class:`CodingTablesPart` of its width, or a suffix looks like a level
            section's.
    """

    kind: str
    settings: Mapping[str, int]
    shared: Mapping[str, Section]
    levels: Tuple[Section, ...]

    def __post_init__(self) -> None:
        for suffix in self.shared:
            if not suffix or suffix.startswith("l") and suffix[1:].isdigit():
                raise ValueError(f"shared section suffix {suffix!r} is empty or reads like a level section")
        for where, section in self.sections():
            parts = list(section.values())
            for index, part in enumerate(parts):
                if isinstance(part, (RangePart, IndexPart, ContextPart)) and index != len(parts) - 1:
                    raise ValueError(f"section {where}: a {type(part).__name__} must be the section's last part")
                if isinstance(part, RangePart):
                    source = section if part.tables == where else self.shared.get(part.tables, {})
                    tables = [p for p in source.values() if isinstance(p, CodingTablesPart)]
                    if tables != [CodingTablesPart(part.channels)]:
                        raise ValueError(f"section {where}: {part} needs one table of its width in '{part.tables}'")

    def sections(self) -> List[Tuple[str, Section]]:
        """``(suffix, section)`` in file order within the table: shared ones, then ``"l<level>"``."""
        return [*self.shared.items(), *((level_suffix(level), section) for level, section in enumerate(self.levels))]


@dataclass
class TableSymbols:
    """The values of a :class:`SymbolLayout`: ``part name -> value`` for each section.

    Attributes:
        shared: ``suffix -> {part name -> value}``.
        levels: per level, ``{part name -> value}``; a decoder may hand fewer levels than the
            layout has (a prefix of the file), level 0 first.
    """

    shared: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    levels: List[Dict[str, Any]] = field(default_factory=list)
