"""Where ``ns-compress view`` reads a file from: a path, standard input, or an HTTP(S) URL, at a rate limit.

A local file read at ``--rate-kbps`` stands in for a network: :func:`rate_limited` yields each
chunk when its last byte would have arrived at that rate.
"""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Optional

from nerfcompress.cli.errors import CommandError

UNLIMITED_CHUNK_BYTES = 1 << 16
"""Chunk size without a rate limit."""
CHUNKS_PER_SECOND = 10
"""With a rate limit, chunks are sized to arrive about this often (at least 1 KiB each)."""
URL_TIMEOUT_SECONDS = 30.0


@dataclass
class ByteSource:
    """An open source of a file's bytes.

    Attributes:
        name: what it is, for messages.
        read: ``read(n) -> bytes``, at most ``n`` bytes, ``b""`` at the end; may return fewer
            bytes as soon as some are available (pipes, sockets).
        total_bytes: the file's size if known (a local file, an HTTP Content-Length).
        close: releases it.
    """

    name: str
    read: Callable[[int], bytes]
    total_bytes: Optional[int]
    close: Callable[[], None]


def _reader(stream: BinaryIO) -> Callable[[int], bytes]:
    """``stream.read1`` where it exists (returns what is available instead of waiting for ``n``)."""
    return getattr(stream, "read1", stream.read)


def open_source(spec: str) -> ByteSource:
    """Opens ``spec``: ``"-"`` for standard input, an ``http://`` or ``https://`` URL, or a path.

    Raises:
        CommandError: if the path is not a file or the URL cannot be opened.
    """
    if spec == "-":
        return ByteSource("standard input", _reader(sys.stdin.buffer), None, lambda: None)
    if spec.startswith(("http://", "https://")):
        try:
            response = urllib.request.urlopen(spec, timeout=URL_TIMEOUT_SECONDS)  # noqa: S310 (scheme checked)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise CommandError(f"cannot open {spec} ({getattr(exc, 'reason', exc)})") from exc
        length = response.headers.get("Content-Length")
        total = int(length) if length is not None and length.isdigit() else None
        return ByteSource(spec, _reader(response), total, response.close)
    path = Path(spec)
    if not path.is_file():
        raise CommandError(f"{path} does not exist or is not a file (pass a path, an http(s) URL, or - for stdin)")
    handle = path.open("rb")
    return ByteSource(str(path), handle.read, path.stat().st_size, handle.close)


def rate_limited(read: Callable[[int], bytes], rate_kbps: Optional[float]) -> Iterator[bytes]:
    """The bytes of ``read`` in chunks, each yielded when its last byte would arrive at ``rate_kbps``.

    Args:
        read: as :attr:`ByteSource.read`.
        rate_kbps: kilobits (1000 bits) per second; None reads as fast as the source allows.

    Raises:
        ValueError: if ``rate_kbps`` is not None or a positive number.
    """
    if rate_kbps is not None and not rate_kbps > 0:
        raise ValueError(f"rate_kbps must be None or > 0, found {rate_kbps}")
    bytes_per_second = None if rate_kbps is None else rate_kbps * 1000 / 8
    chunk_bytes = UNLIMITED_CHUNK_BYTES
    if bytes_per_second is not None:
        chunk_bytes = max(1024, int(bytes_per_second / CHUNKS_PER_SECOND))
    start, received = time.monotonic(), 0
    while chunk := read(chunk_bytes):
        received += len(chunk)
        if bytes_per_second is not None:
            time.sleep(max(0.0, start + received / bytes_per_second - time.monotonic()))
        yield chunk
