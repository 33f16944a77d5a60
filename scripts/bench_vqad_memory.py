"""Peak memory of one VQAD training step against batch size and against bit width b.

Each configuration runs in a fresh subprocess: build a VqadTable on the demo's main-grid layout,
decode it (straight-through, training mode), interpolate N points, backpropagate. The peak
resident set size of that subprocess minus the peak of the same subprocess that stops before
the step is what the step costs. The straight-through lookup is computed once per step at table
level, so memory should grow with rows x 2^b and only slowly (no 2^b factor) with N.

    .venv/bin/python scripts/bench_vqad_memory.py [--output outputs/bench/vqad_memory.json]
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import tyro
from rich.console import Console
from rich.table import Table

CONSOLE = Console()


def measure(bits: int, num_points: int, run_step: bool) -> float:
    """Peak RSS in MB of a subprocess that builds the table and optionally runs one step."""
    code = f"""
import resource, torch
from nerfcompress.grid import GridLayout, interp_torch
from nerfcompress.tables import VqadTable
torch.manual_seed(0)
layout = GridLayout.from_resolution_range(3, 12, 16, 512, 15, 2)
table = VqadTable(layout.level_rows, layout.features_per_level, bits={bits}).train()
x = torch.rand({num_points}, 3)
if {run_step}:
    features = interp_torch(layout, table(), x)
    features.square().sum().backward()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


@dataclass
class BenchVqadMemory:
    """Peak memory of a VQAD step: sweep b at a fixed batch, sweep the batch at b = 4."""

    bits: Tuple[int, ...] = (1, 2, 4, 6, 8)
    """Bit widths for the sweep over b."""
    points: Tuple[int, ...] = (1 << 12, 1 << 14, 1 << 16, 1 << 18)
    """Batch sizes (interpolated points per step) for the sweep over N."""
    fixed_points: int = 1 << 16
    """Batch size used in the sweep over b."""
    output: Optional[Path] = None
    """Optional JSON file for the measurements."""

    def main(self) -> None:
        rows = []
        for bits in self.bits:
            rows.append(self._row(bits, self.fixed_points))
        for num_points in self.points:
            rows.append(self._row(4, num_points))
        table = Table(title="VQAD step peak memory (MB, RSS above the same process without the step)")
        for column in ("b", "points", "table only", "step (above table)"):
            table.add_column(column, justify="right")
        for r in rows:
            table.add_row(str(r["bits"]), str(r["points"]), f"{r['table_mb']:.0f}", f"{r['step_mb']:.0f}")
        CONSOLE.print(table)
        CONSOLE.print(f"peak RSS of this driver: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
        if self.output is not None:
            self.output.parent.mkdir(parents=True, exist_ok=True)
            self.output.write_text(json.dumps(rows, indent=2))

    @staticmethod
    def _row(bits: int, num_points: int) -> dict:
        without_step = measure(bits, num_points, run_step=False)
        with_step = measure(bits, num_points, run_step=True)
        return {"bits": bits, "points": num_points, "table_mb": without_step, "step_mb": with_step - without_step}


if __name__ == "__main__":
    tyro.cli(BenchVqadMemory).main()
