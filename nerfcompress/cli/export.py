"""``ns-compress export``: write a trained run as one compressed file."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import tyro
from rich.console import Console
from rich.table import Table

from nerfcompress.cli.errors import one_line_errors, writable_file


@dataclass
class Export:
    """Compress a trained shacira-nerfacto / plain-nerfacto run into one file and print its size by section."""

    load_config: Path
    """config.yml of the trained run (outputs/<experiment>/<method>/<timestamp>/config.yml)."""
    output: Path = Path("scene.ncmp")
    """File to write."""

    def main(self) -> None:
        """Export, write the file, print the exact bytes of every section."""
        with one_line_errors():
            from nerfcompress.plugin.export import check_run, export_run

            check_run(self.load_config)
            writable_file(self.output)
            start_s = time.perf_counter()
            data, parts = export_run(self.load_config)
            self.output.write_bytes(data)
        elapsed_s = time.perf_counter() - start_s
        table = Table(title=f"{self.output} (exact bytes, framing included)")
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
