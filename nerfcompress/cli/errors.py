"""One-line error reporting shared by the ``ns-compress`` subcommands."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from rich.console import Console

from nerfcompress.errors import BitstreamError, ExportError

EXIT_USAGE = 2
"""Exit status of a command that stops on a user-facing error."""


class CommandError(ValueError):
    """A problem the user can fix (a path, a flag); reported as one line."""


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Turns expected failures into one red line on stderr and exit status 2 (no traceback).

    Expected failures are ``CommandError``, ``BitstreamError`` (files that are not ours or are
    damaged), ``ExportError`` (runs that cannot be exported) and ``OSError`` (paths that cannot
    be read or written). Anything else is a bug and keeps its traceback.
    """
    try:
        yield
    except (CommandError, BitstreamError, ExportError, OSError) as exc:
        _report(exc)


def _report(exc: BaseException) -> None:
    message = str(exc) if not isinstance(exc, OSError) or not exc.filename else f"{exc.strerror}: {exc.filename}"
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/bold red] {message}", markup=True, highlight=False)
    raise SystemExit(EXIT_USAGE)


def writable_file(path: Path) -> Path:
    """Checks, before any heavy work, that ``path`` can be written as a file.

    Creates missing parent directories.

    Raises:
        CommandError: if ``path`` is a directory or its directory cannot be created or written.
    """
    if path.is_dir():
        raise CommandError(f"output {path} is a directory; pass a file path such as {path / 'scene.ncmp'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"cannot create the directory of output {path} ({exc.strerror})") from exc
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise CommandError(f"output {path} cannot be written (permission denied)")
    return path


def readable_file(path: Path) -> bytes:
    """The bytes of ``path``.

    Raises:
        CommandError: if it does not exist or is not a file.
    """
    if not path.is_file():
        raise CommandError(f"{path} does not exist or is not a file")
    return path.read_bytes()
