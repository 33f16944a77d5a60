"""``ns-compress import``: decode a compressed file into a run that ns-viewer / ns-render load."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import tyro
from rich.console import Console

from nerfcompress.bitstream.container import read_container_prefix
from nerfcompress.cli.errors import CommandError, one_line_errors, readable_file


@dataclass
class Import:
    """Decode a compressed file into DIR/config.yml + DIR/nerfstudio_models/ (no training images needed)."""

    file: tyro.conf.Positional[Path]
    """The compressed file (.ncmp)."""
    output_dir: Path = Path("decoded")
    """Directory to write; then run `ns-viewer --load-config DIR/config.yml`."""
    max_levels: Optional[int] = None
    """Decode only the coarsest N levels of every grid (a lower level of detail); the import renders those only."""
    prefix: bool = False
    """Accept a truncated FILE (a partial download) and decode the levels it holds completely."""

    def main(self) -> None:
        """Decode and write the run directory."""
        with one_line_errors():
            data = readable_file(self.file)
            if self.output_dir.exists() and not self.output_dir.is_dir():
                raise CommandError(f"output directory {self.output_dir} is a file")
            from nerfcompress.cli.levels import check_levels

            # a foreign or truncated file or a wrong flag fails here, before nerfstudio builds anything
            levels, most_levels = check_levels(data, self.max_levels, self.prefix, "--prefix")
            from nerfcompress.plugin.import_model import import_file

            start_s = time.perf_counter()
            config_path = import_file(data, self.output_dir, max_levels=self.max_levels, prefix=self.prefix)
            cameras = not self.prefix or "cameras" in read_container_prefix(data)[1]
        Console().print(
            f"[bold green]Decoded[/bold green] {self.file} into {self.output_dir} ({levels} of {most_levels} levels) "
            f"in {time.perf_counter() - start_s:.1f} s; view it with: ns-viewer --load-config {config_path}"
        )
        if not cameras:
            Console().print(
                "The prefix ends before the stored training cameras (the last section): the import has stand-in "
                "cameras, all at one pose above the scene (ns-viewer draws them there)."
            )


def entrypoint() -> None:
    """Command-line entry point."""
    tyro.cli(Import).main()
