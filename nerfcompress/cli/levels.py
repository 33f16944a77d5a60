"""Level-of-detail options shared by ``ns-compress import`` and ``ns-compress eval``.

Checks ``--max-levels`` and a truncated input against the file's header before nerfstudio is
imported, so that a wrong flag or a foreign, damaged or too short file costs nothing.
"""

from __future__ import annotations

from typing import Optional, Tuple

from nerfcompress.bitstream.container import read_container_index, read_container_prefix
from nerfcompress.bitstream.levels import grid_level_counts, levels_to_decode
from nerfcompress.cli.errors import CommandError
from nerfcompress.errors import BitstreamError


def check_levels(data: bytes, max_levels: Optional[int], prefix: bool, prefix_flag: str) -> Tuple[int, int]:
    """How many levels a decode of ``data`` will have, or a one-line reason why it cannot work.

    Args:
        data: the file, or with ``prefix`` a prefix of it.
        max_levels: the ``--max-levels`` value.
        prefix: whether the user accepted a truncated file.
        prefix_flag: the option that accepts one (named in the hint for a truncated file).

    Returns:
        ``(levels, most_levels)``: the levels the import will render (fewer if the file's model
        config stores fewer ``active_levels``) and the most levels of any grid in the file.

    Raises:
        CommandError: ``--max-levels`` below 1 or above the file's levels.
        BitstreamError: a foreign or damaged file, a truncated one without ``prefix`` (the
            message then names ``prefix_flag`` when the prefix holds a level), or a prefix that
            holds no complete level.
    """
    if max_levels is not None and max_levels < 1:
        raise CommandError(f"--max-levels must be at least 1, found {max_levels}")
    if prefix:
        header, sections, _ = read_container_prefix(data)
        names = list(sections)
    else:
        try:
            header, _ = read_container_index(data)
        except BitstreamError as exc:
            try:
                read_container_prefix(data)  # only truncation is forgiven there
            except BitstreamError:
                raise exc from None
            raise BitstreamError(f"{exc}; to decode the levels it holds, pass {prefix_flag}") from exc
        names = None
    counts = grid_level_counts(header.get("grids"))
    most_levels = max(counts.values())
    if max_levels is not None and max_levels > most_levels:
        per_grid = ", ".join(f"{name} {count}" for name, count in counts.items())
        raise CommandError(f"--max-levels {max_levels} is more than the file's grids have ({per_grid})")
    levels, most_levels = levels_to_decode(header.get("grids"), names, max_levels)
    model = header.get("model") if isinstance(header.get("model"), dict) else {}
    stored = model.get("active_levels")  # an export of a lower level of detail renders no more
    if isinstance(stored, int) and not isinstance(stored, bool) and 1 <= stored < levels:
        levels = stored
    return levels, most_levels
