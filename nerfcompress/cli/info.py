"""``ns-compress info``: what a compressed file holds, without decoding it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict

import tyro
from rich.console import Console
from rich.table import Table

from nerfcompress.bitstream.container import read_container_index, section_frame_bytes
from nerfcompress.bitstream.levels import grid_level_counts, level_prefix_bytes
from nerfcompress.cli.errors import one_line_errors, readable_file
from nerfcompress.errors import BitstreamError


def _bits(entry: Dict[str, Any]) -> str:
    """``", 8 bits"`` for a grid entry that records its symbol width (VQAD, uniform rows)."""
    bits = entry.get("bits")
    return f", {bits} bits" if isinstance(bits, int) and not isinstance(bits, bool) else ""


def _joined(widths: Any) -> str:
    return "-".join(str(w) for w in widths)[:40] if isinstance(widths, list) else f"{widths!s:.40}"


def _image_summary(header: Dict[str, Any]) -> str:
    """One line on an image file's picture and model, from its (untrusted, unchecked) header."""
    model = header.get("model") if isinstance(header.get("model"), dict) else {}
    size = " x ".join(f"{header.get(key)!s:.12}" for key in ("width", "height", "channels"))
    context = model.get("context_hidden")
    coding = (
        f"context model {_joined(context)} (dense levels coded from their decoded neighbours)"
        if context
        else "no context model (each level under its own frequency table)"
    )
    if model.get("method") == "vqad":
        coding = f"{model.get('bits')!s:.4}-bit codebook indices"
    return f"picture {size}; model {model.get('num_levels')!s:.4} levels, MLP {_joined(model.get('hidden'))}, {coding}"


@dataclass
class Info:
    """Print a compressed file's header, its sections with their exact sizes and bits per grid row, and the
    prefix length that decodes each level of detail."""

    file: tyro.conf.Positional[Path]
    """The compressed file (.ncmp)."""

    def main(self) -> None:
        """Parse the header and section index (no entropy decoding) and print them."""
        with one_line_errors():
            data = readable_file(self.file)
            header, index = read_container_index(data)
        console = Console()
        versions = header.get("versions") if isinstance(header.get("versions"), dict) else {}
        coder = header.get("coder") if isinstance(header.get("coder"), dict) else {}
        step = f"step {header['step']!s}, " if "step" in header else ""  # image files have none
        console.print(
            f"[bold]{self.file}[/bold]: {len(data):,} bytes, method {header.get('method')!s}, {step}"
            f"written by {', '.join(f'{k} {v}' for k, v in versions.items())}, "
            f"range-coded by constriction {coder.get('constriction')!s}"
        )
        listed = header.get("grids") if isinstance(header.get("grids"), list) else []
        grids = [g for g in listed if isinstance(g, dict)]
        grid_rows: Dict[str, int] = {str(g.get("name")): g["rows"] for g in grids if isinstance(g.get("rows"), int)}
        grid_kinds = {str(g.get("name")): f"{g.get('table')}{_bits(g)}" for g in grids}
        table = Table(title="sections (bytes include name, length and CRC fields)")
        for column in ("section", "bytes", "share"):
            table.add_column(column, justify="left" if column == "section" else "right")
        header_bytes = len(data) - sum(section_frame_bytes(e.name) + e.length for e in index)
        table.add_row("header", f"{header_bytes:,}", f"{100 * header_bytes / len(data):.1f}%")
        grid_bytes: Dict[str, int] = {}
        for entry in index:
            size = section_frame_bytes(entry.name) + entry.length
            grid = entry.name.split(".")[0]
            grid_bytes[grid] = grid_bytes.get(grid, 0) + size
            table.add_row(entry.name, f"{size:,}", f"{100 * size / len(data):.1f}%")
        table.add_row("[bold]total[/bold]", f"[bold]{len(data):,}[/bold]", "100.0%")
        console.print(table)
        for name, rows in grid_rows.items():
            bits = 8 * grid_bytes.get(name, 0)
            console.print(
                f"grid {name} ({grid_kinds.get(name)}): {rows:,} rows, {bits / max(rows, 1):.3f} bits per row"
            )
        if "grids" not in header:  # an image file: its model settings fix the grids, one level each
            console.print(_image_summary(header))
            console.print("levels of detail: none (an image file decodes whole)")
            return
        try:
            prefix_bytes = level_prefix_bytes(header.get("grids"), index)
            counts = grid_level_counts(header.get("grids"))
        except BitstreamError as exc:  # a file without level sections: nothing to stream
            console.print(f"levels of detail: not available ({exc})")
            return
        levels = Table(title="levels of detail: a prefix of the file this long decodes levels 0 .. L-1 of every grid")
        for column in ("levels L", "prefix bytes", "share"):
            levels.add_column(column, justify="right")
        for count, size in enumerate(prefix_bytes, start=1):
            levels.add_row(f"{count}", f"{size:,}", f"{100 * size / len(data):.1f}%")
        console.print(levels)
        console.print("levels per grid: " + ", ".join(f"{name} {count}" for name, count in counts.items()))


def entrypoint() -> None:
    """Command-line entry point."""
    tyro.cli(Info).main()
