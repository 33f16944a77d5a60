"""``ns-compress view``: nerfstudio's web viewer on a file while it arrives, refined level by level."""

from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import tyro
from rich.console import Console

from nerfcompress.cli.errors import CommandError, one_line_errors


@dataclass
class View:
    """Open nerfstudio's web viewer on a compressed file as soon as its first level of detail has arrived, and swap
    in each finer level as its bytes arrive. A local file read at --rate-kbps stands in for a network."""

    file: tyro.conf.Positional[str]
    """The compressed file (.ncmp): a path, an http(s) URL, or - for standard input (e.g. curl URL | ns-compress
    view -)."""
    rate_kbps: Optional[float] = None
    """Read at most this many kilobits per second (a simulated network); default: as fast as the source gives."""
    websocket_host: str = "0.0.0.0"
    """Where the viewer listens (127.0.0.1: this machine only)."""
    websocket_port: Optional[int] = None
    """The viewer's port; default: the first free one from 7007."""
    max_res: Optional[int] = None
    """Start value of the viewer's Max res slider (64..2048; nerfstudio's default 512); lower renders faster on CPU."""
    max_num_display_images: int = 100
    """Training cameras drawn in the scene, once the stored cameras have arrived."""

    def main(self) -> None:
        """Stream, decode in the background, and serve the viewer until interrupted (Ctrl+C)."""
        console = Console()
        with one_line_errors():
            if self.rate_kbps is not None and not self.rate_kbps > 0:
                raise CommandError(f"--rate-kbps must be above 0, found {self.rate_kbps}")
            if self.max_res is not None and not 64 <= self.max_res <= 2048:
                raise CommandError(f"--max-res must be in 64..2048 (the viewer's slider), found {self.max_res}")
            from nerfcompress.cli.byte_sources import open_source, rate_limited

            source = open_source(self.file)
            from nerfcompress.plugin.progressive import ProgressiveModel
            from nerfcompress.plugin.stream_viewer import start_viewer

            with tempfile.TemporaryDirectory(prefix="ncmp-view-") as work_dir:
                lock = threading.Lock()
                started = time.monotonic()
                model = ProgressiveModel(
                    rate_limited(source.read, self.rate_kbps), Path(work_dir), lock, total_bytes=source.total_bytes
                ).start()
                console.print(f"Reading {source.name}" + (f" at {self.rate_kbps:g} kbit/s" if self.rate_kbps else ""))
                model.first_level.wait()
                if model.pipeline is None:
                    raise CommandError(f"{source.name}: {model.status().error}")
                console.print(
                    f"First level of detail after {time.monotonic() - started:.1f} s: {model.status().describe()}"
                )
                viewer = start_viewer(
                    model, lock, self.websocket_host, self.websocket_port, self.max_res, self.max_num_display_images
                )
                for line in viewer.viewer_info:
                    console.print(f"[bold green]{line}[/bold green]")
                self._serve(model, console, source.close)

    @staticmethod
    def _serve(model, console: Console, close) -> None:
        """Prints each change of level and the end of the stream; returns on Ctrl+C."""
        shown = None
        try:
            while True:
                status = model.status()
                if (status.levels, status.complete, status.error) != shown:
                    shown = (status.levels, status.complete, status.error)
                    style = "bold red" if status.error else "bold"
                    console.print(f"[{style}]stream:[/{style}] {status.describe()}", highlight=False)
                time.sleep(0.2)
        except KeyboardInterrupt:
            console.print("viewer closed")
        finally:
            close()


def entrypoint() -> None:
    """Command-line entry point."""
    tyro.cli(View).main()
