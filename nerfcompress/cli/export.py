"""``ns-compress export``: write a trained run as one compressed file."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro
from rich.console import Console
from rich.table import Table

from nerfcompress.cli.errors import one_line_errors, writable_file

Posthoc = Literal[
    "none", "fp32", "fp16", "uniform8", "uniform7", "uniform6", "uniform5", "uniform4", "uniform3", "uniform2"
]
"""``--posthoc`` choices, largest file first (the same values as ``POSTHOC_CHOICES``)."""


@dataclass
class Export:
    """Compress a trained shacira-, vqad- or plain- nerfacto/instant-ngp run into one file; print its size by section.

    Post-hoc baselines for an uncompressed run (plain-nerfacto, plain-nerfacto-big, plain-instant-ngp): --posthoc fp32
    stores the grid rows as float32 (the true uncompressed size), fp16 as float16, uniformB quantizes every level
    uniformly to 2^B values between its min and max and entropy-codes them. ns-compress import, eval and info read
    these files too.
    """

    load_config: Path
    """config.yml of the trained run (outputs/<experiment>/<method>/<timestamp>/config.yml)."""
    output: Path = Path("scene.ncmp")
    """File to write."""
    posthoc: Posthoc = "none"
    """Post-hoc baseline for an uncompressed run (see above); none: the method's own coding."""

    def main(self) -> None:
        """Export, write the file, print the exact bytes of every section."""
        with one_line_errors():
            from nerfcompress.plugin.export import check_run, export_run

            check_run(self.load_config, self.posthoc)
            writable_file(self.output)
            start_s = time.perf_counter()
            data, parts = export_run(self.load_config, self.posthoc)
            self.output.write_bytes(data)
        elapsed_s = time.perf_counter() - start_s
        grids = "" if self.posthoc == "none" else f"; grids post hoc as {self.posthoc}"
        table = Table(title=f"{self.output} (exact bytes, framing included{grids})")
        for column in ("part", "bytes", "share"):
            table.add_column(column, justify="left" if column == "part" else "right")
        for name, size in parts:
            table.add_row(name, f"{size:,}", f"{100 * size / len(data):.1f}%")
        table.add_row("[bold]total file[/bold]", f"[bold]{len(data):,}[/bold]", "100.0%")
        console = Console()
        console.print(table)
        console.print(
            f"[bold green]Wrote[/bold green] {self.output}: {len(data):,} bytes ({len(data) / 1e6:.3f} MB) "
            f"in {elapsed_s:.1f} s"
        )


def entrypoint() -> None:
    """Command-line entry point."""
    tyro.cli(Export).main()
