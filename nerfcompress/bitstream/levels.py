"""Level of detail in a file: which sections hold which level, their order, what a prefix decodes.

Every grid's header entry lists its ``"level_rows"`` (rows of each level, level 0 first), and
level ``l`` of grid ``g`` lives in the section ``"<g>.l<l>"``
(:func:`~nerfcompress.bitstream.container.level_section_name`). A file holds, in this order:

1. the sections every level needs (networks, decoders);
2. the level sections interleaved across grids, coarse level first (:func:`order_sections`),
   each with what its level alone needs (a SHACIRA level's coding tables, a VQAD level's codebook);
3. the sections that only a viewer needs (the training cameras), which a prefix may lack::

    networks, main.decoder, prop0.decoder, ..., main.l0, prop0.l0, prop1.l0,
    main.l1, prop0.l1, prop1.l1, ..., main.l11, cameras

so a prefix of the file that ends inside level ``k``'s sections decodes levels ``0 .. k-1`` of
every grid (:func:`decodable_levels`); grids with fewer levels simply stop contributing
sections. :func:`level_prefix_bytes` gives the prefix length each level count needs: the
sections of part 1 and the level sections, never those of part 3.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from nerfcompress.bitstream.container import SectionIndex, level_section_name, section_frame_bytes, split_level_section
from nerfcompress.errors import BitstreamError

MAX_LEVELS = 64
"""Most levels a grid entry may declare (GridLayout allows 32)."""


def entry_level_rows(entry: Any) -> Tuple[int, ...]:
    """The validated ``"level_rows"`` of a grid's header entry (untrusted).

    Raises:
        BitstreamError: if the entry is not a dict with a ``name``, or its ``level_rows`` is
            not a list of 1..MAX_LEVELS positive ints summing to its ``rows``.
    """
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise BitstreamError(f"grid entry is malformed ({entry!r:.120}); the file is corrupt")
    level_rows, rows = entry.get("level_rows"), entry.get("rows")
    valid = isinstance(level_rows, list) and 1 <= len(level_rows) <= MAX_LEVELS
    valid = valid and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in level_rows)
    if not valid or sum(level_rows) != rows:
        raise BitstreamError(
            f"grid '{entry['name']:.40}' declares level_rows={level_rows!r:.120} for rows={rows!r:.40}, expected "
            f"1..{MAX_LEVELS} positive counts summing to rows; the file is corrupt"
        )
    return tuple(level_rows)


def grid_level_counts(grids: Any) -> Dict[str, int]:
    """``grid name -> number of levels`` from the header's ``"grids"`` list (untrusted).

    Raises:
        BitstreamError: if the list or an entry is malformed, or two grids share a name.
    """
    if not isinstance(grids, list) or not grids:
        raise BitstreamError(f"header's grids entry is {grids!r:.80}, expected a non-empty list; the file is corrupt")
    counts: Dict[str, int] = {}
    for entry in grids:
        count = len(entry_level_rows(entry))
        if entry["name"] in counts:
            raise BitstreamError(f"header names grid '{entry['name']:.40}' twice; the file is corrupt")
        counts[entry["name"]] = count
    return counts


def order_sections(sections: Sequence[Tuple[str, bytes]]) -> List[Tuple[str, bytes]]:
    """Sections in file order: every non-level section in the given order, then the level
    sections by level and, within a level, in the order their grids first appear."""
    fixed = [s for s in sections if split_level_section(s[0]) is None]
    levelled = [(split_level_section(name), name, payload) for name, payload in sections]
    levelled = [(where, name, payload) for where, name, payload in levelled if where is not None]
    grid_rank: Dict[str, int] = {}
    for (grid, _), _, _ in levelled:
        grid_rank.setdefault(grid, len(grid_rank))
    levelled.sort(key=lambda item: (item[0][1], grid_rank[item[0][0]]))
    return [*fixed, *((name, payload) for _, name, payload in levelled)]


def decodable_levels(grids: Any, section_names: Sequence[str]) -> int:
    """How many levels the given sections decode: the largest ``L`` such that levels
    ``0 .. min(L, L_g) - 1`` of every grid ``g`` are present (``L_g``: the grid's level count).

    Args:
        grids: the header's ``"grids"`` list (untrusted).
        section_names: the sections at hand (e.g. those a prefix holds completely).

    Returns:
        ``0 .. max_g L_g``; the maximum means every level of every grid is present.

    Raises:
        BitstreamError: if ``grids`` is malformed.
    """
    counts = grid_level_counts(grids)
    present = set(section_names)
    levels = 0
    while levels < max(counts.values()) and all(
        level_section_name(grid, levels) in present for grid, count in counts.items() if levels < count
    ):
        levels += 1
    return levels


def levels_to_decode(
    grids: Any, section_names: Optional[Sequence[str]] = None, max_levels: Optional[int] = None
) -> Tuple[int, int]:
    """How many levels of every grid to decode, and the most levels any grid of the file has.

    Args:
        grids: the header's ``"grids"`` list (untrusted).
        section_names: the complete sections of a prefix; None for a whole file (every level;
            a missing section is an error when the tables are decoded).
        max_levels: decode at most this many levels (None: as many as there are).

    Returns:
        ``(levels, most_levels)``: the fewer of :func:`decodable_levels` and ``max_levels``,
        ``1 <= levels <= most_levels``.

    Raises:
        BitstreamError: if ``grids`` is malformed or the sections hold no complete level 0 of
            every grid.
        ValueError: if ``max_levels`` is not None or an int in ``1 .. most_levels``.
    """
    most_levels = max(grid_level_counts(grids).values())
    if max_levels is not None and (
        isinstance(max_levels, bool) or not isinstance(max_levels, int) or not 1 <= max_levels <= most_levels
    ):
        raise ValueError(f"max_levels must be in 1..{most_levels} (the most levels of any grid), found {max_levels!r}")
    available = most_levels if section_names is None else decodable_levels(grids, section_names)
    if available == 0:
        raise BitstreamError(
            "the prefix holds no complete level: every grid's level-0 section ('<grid>.l0') is needed; "
            "`ns-compress info` on the whole file lists the bytes each level needs"
        )
    return min(available, max_levels or most_levels), most_levels


def level_prefix_bytes(grids: Any, index: Sequence[SectionIndex]) -> List[int]:
    """Prefix length that decodes each level count, from a whole file's section index.

    Args:
        grids: the header's ``"grids"`` list (untrusted).
        index: the file's sections, from
            :func:`~nerfcompress.bitstream.container.read_container_index`.

    Returns:
        ``[bytes for 1 level, bytes for 2 levels, ...]`` up to the most levels of any grid: the
        end of the last section that those levels need, and of every non-level section before
        the first level section (the sections after the levels, such as the cameras, only a
        viewer needs); the last entry is where the file's last level section ends.

    Raises:
        BitstreamError: if ``grids`` is malformed or a level section is missing.
    """
    counts = grid_level_counts(grids)
    ends: Mapping[str, int] = {entry.name: entry.offset + entry.length for entry in index}
    header_end = index[0].offset - section_frame_bytes(index[0].name) if index else 0
    first_level = next((i for i, entry in enumerate(index) if split_level_section(entry.name)), len(index))
    fixed_end = max((entry.offset + entry.length for entry in index[:first_level]), default=header_end)
    out, end = [], fixed_end
    for level in range(max(counts.values())):
        for grid, count in counts.items():
            if level < count:
                name = level_section_name(grid, level)
                if name not in ends:
                    raise BitstreamError(f"section '{name}' is missing; the file is truncated or corrupt")
                end = max(end, ends[name])
        out.append(end)
    return out
