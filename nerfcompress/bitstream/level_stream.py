"""Levels of detail while a file arrives: bytes in, each newly decodable level count out.

A :class:`LevelStream` collects a file's bytes as they arrive (a download, a pipe, a file read
at a rate limit) and, after every chunk, works out how many levels of every grid its complete
sections decode (:func:`~nerfcompress.bitstream.levels.decodable_levels`). When that count
grows it returns a :class:`LevelArrival` with the sections to decode them from::

    stream = LevelStream(max_bytes=len_if_known)
    for chunk in chunks:
        arrival = stream.feed(chunk)
        if arrival is not None:
            ...  # decode arrival.levels levels from arrival.sections
    final = stream.end()  # the last levels, if the end completed them; stream.error says why not all

Damage stops the stream for good: once a prefix has parsed, any later failure (a section that
fails its CRC32, a malformed header entry, bytes beyond the last section, more than
``max_bytes``) sets :attr:`LevelStream.error` and every later chunk is ignored. The levels that
were complete before the damage are kept, even when they arrived in the same chunk as it: the
longest prefix that still parses is found by bisection. Before the first level a failure may
only mean that too little has arrived, so it is reported when the stream ends (or exceeds
``max_bytes``); until then chunks are taken :data:`FIRST_LEVEL_STEP_BYTES` at a time.

Each chunk re-parses the prefix received so far (one CRC32 pass over it), so feed what has
arrived in chunks of a reasonable size (tens of kB or more), not byte by byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from nerfcompress.bitstream.container import read_container, read_container_prefix
from nerfcompress.bitstream.levels import decodable_levels, grid_level_counts
from nerfcompress.errors import BitstreamError

DEFAULT_MAX_BYTES = 1 << 31
"""Most bytes a :class:`LevelStream` accepts unless told a bound (the file's size, say)."""
FIRST_LEVEL_STEP_BYTES = 1024
"""Until a prefix first parses, chunks are taken this many bytes at a time, so that damage just after
the first level cannot hide it (a failure then may only mean that too little has arrived)."""


@dataclass(frozen=True)
class LevelArrival:
    """A prefix of the file that decodes more levels than any before it.

    Attributes:
        levels: levels ``0 .. levels - 1`` of every grid are complete (``>= 1``).
        most_levels: the most levels of any grid in the file.
        bytes_received: the prefix's length.
        data: the prefix itself.
        header: the file's header (untrusted, as parsed).
        sections: ``name -> payload`` of the sections the prefix holds completely.
    """

    levels: int
    most_levels: int
    bytes_received: int
    data: bytes
    header: Dict[str, Any]
    sections: Mapping[str, bytes]


class LevelStream:
    """Tracks a file's bytes as they arrive and the levels of detail they decode.

    Args:
        max_bytes: refuse a stream longer than this (a file's known size, or a bound for an
            unknown one) instead of buffering without end.

    Raises:
        ValueError: if ``max_bytes`` is below 1.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, found {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._buffer = bytearray()
        self._parsed = False  # a prefix parsed: from now on every failure is damage
        self._good_bytes = 0  # the longest prefix that parsed
        self._last_failure: Optional[str] = None
        self.levels = 0
        """Levels of every grid that the bytes so far decode (0 until the first level is in)."""
        self.most_levels: Optional[int] = None
        """The most levels of any grid, once the header is in."""
        self.complete = False
        """Whether the whole file arrived and passed every check."""
        self.error: Optional[str] = None
        """Why the stream stopped refining (damage, an early end, too many bytes); None while it is fine."""
        self.header: Optional[Dict[str, Any]] = None
        """The file's header, once a prefix has parsed."""
        self.sections: Mapping[str, bytes] = {}
        """The sections received completely so far (as of the last prefix that parsed)."""

    @property
    def bytes_received(self) -> int:
        """Bytes fed so far (counted up to where the stream stopped)."""
        return len(self._buffer)

    @property
    def stopped(self) -> bool:
        """Whether nothing more will be decoded: the file is complete or the stream failed."""
        return self.complete or self.error is not None

    def feed(self, chunk: bytes) -> Optional[LevelArrival]:
        """Adds the next bytes of the file (any amount: what arrived since the last call).

        Returns:
            A :class:`LevelArrival` when the bytes so far decode more levels than before, else
            None (also once the stream has stopped: later chunks are ignored).
        """
        if self.stopped or not chunk:
            return None
        if len(self._buffer) + len(chunk) > self.max_bytes:
            reason = f" ({self._last_failure})" if not self._parsed and self._last_failure else ""
            self._stop(f"the stream holds more than {self.max_bytes:,} bytes, more than the file can have{reason}")
            return None
        arrival, start = None, 0
        while not self._parsed and start < len(chunk) and not self.stopped:  # find the first level's end
            self._buffer += chunk[start : start + FIRST_LEVEL_STEP_BYTES]
            start += FIRST_LEVEL_STEP_BYTES
            arrival = self._parse() or arrival
        if start < len(chunk) and not self.stopped:
            self._buffer += chunk[start:]
            arrival = self._parse() or arrival
        return arrival

    def end(self) -> Optional[LevelArrival]:
        """Marks the end of the stream: the file is complete, or :attr:`error` says how it fell short.

        Returns:
            A :class:`LevelArrival` if the last bytes completed more levels, else None.
        """
        if self.stopped:
            return None
        arrival = self._parse()
        if self.error is not None:
            return arrival
        try:
            read_container(bytes(self._buffer))
        except BitstreamError as exc:
            if self.levels == 0:
                reason = self._last_failure or str(exc)
                self._stop(f"the stream ended after {len(self._buffer):,} bytes without a complete level: {reason}")
            else:
                self._stop(
                    f"the stream ended after {len(self._buffer):,} bytes, before the whole file arrived ({exc}); "
                    f"showing {self.levels} of {self.most_levels} levels"
                )
            return arrival
        self.complete = True
        return arrival

    def _stop(self, reason: str) -> None:
        self.error = reason

    def _parse(self) -> Optional[LevelArrival]:
        """Re-parses the bytes so far; returns an arrival if they decode more levels than before.

        After a failure that follows a parse that worked, the longest prefix that still parses
        is found by bisection (prefixes parse up to where the damage is complete, and not after),
        so the levels complete before the damage are not lost when one chunk holds both."""
        data = bytes(self._buffer)
        parsed = _parse_prefix(data)
        if isinstance(parsed, BitstreamError) and not self._parsed:
            self._last_failure = str(parsed)
            return None
        if isinstance(parsed, BitstreamError):
            good, bad = self._good_bytes, len(data)
            best = _parse_prefix(data[:good])
            while bad - good > 1:
                middle = (good + bad) // 2
                trial = _parse_prefix(data[:middle])
                good, bad, best = (
                    (middle, bad, trial) if not isinstance(trial, BitstreamError) else (good, middle, best)
                )
            arrival = self._take(data[:good], *best)
            self._stop(f"the stream is damaged after {good:,} bytes ({parsed}); keeping {self.levels} levels")
            return arrival
        self._parsed = True
        return self._take(data, *parsed)

    def _take(
        self, data: bytes, header: Dict[str, Any], sections: Mapping[str, bytes], most_levels: int, levels: int
    ) -> Optional[LevelArrival]:
        self._good_bytes = len(data)
        self.header, self.sections, self.most_levels = header, sections, most_levels
        if levels <= self.levels:
            return None
        self.levels = levels
        return LevelArrival(levels, most_levels, len(data), data, header, sections)


def _parse_prefix(data: bytes) -> Union[Tuple[Dict[str, Any], Mapping[str, bytes], int, int], BitstreamError]:
    """``(header, sections, most_levels, levels)`` of a prefix, or the error that refuses it."""
    try:
        header, sections, _ = read_container_prefix(data)
        most_levels = max(grid_level_counts(header.get("grids")).values())
        return header, sections, most_levels, decodable_levels(header.get("grids"), list(sections))
    except BitstreamError as exc:
        return exc
