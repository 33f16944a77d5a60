"""The README's main job: synthetic scene -> ns-train (baseline and SHACIRA) -> ns-eval -> summary.

Runs nerfstudio's real commands with the flags in ``configs/demo.yaml`` and prints PSNR/SSIM on
the held-out test views next to each model's estimated compressed size and the uncompressed
baseline's fp16 grid size.

    .venv/bin/python scripts/demo.py [--config configs/demo.yaml] [--output-dir outputs/demo] [--methods M ...]
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import tyro
import yaml
from rich.console import Console
from rich.table import Table

from nerfcompress.scenes.synthetic import write_synthetic_scene

CONSOLE = Console()
REPO = Path(__file__).resolve().parent.parent


def flags_to_args(flags: Dict[str, object]) -> List[str]:
    """``{"--a": 1, "--b": [2, 3]}`` -> ``["--a", "1", "--b", "2", "3"]``."""
    args: List[str] = []
    for flag, value in flags.items():
        values = value if isinstance(value, list) else [value]
        args += [flag, *(str(v) for v in values)]
    return args


def run(command: List[str], log_path: Path) -> float:
    """Runs a command with its output in ``log_path``; returns seconds, exits on failure."""
    start = time.perf_counter()
    with log_path.open("w") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    if result.returncode != 0:
        tail = "\n".join(log_path.read_text().splitlines()[-25:])
        CONSOLE.print(f"[bold red]{command[0]} failed (exit {result.returncode}); last lines of {log_path}:\n{tail}")
        sys.exit(1)
    return time.perf_counter() - start


@dataclass
class Demo:
    """Train and evaluate every method of the demo config on the synthetic scene."""

    config: Path = REPO / "configs" / "demo.yaml"
    """Demo settings (scene, shared ns-train flags, per-method flags)."""
    output_dir: Path = REPO / "outputs" / "demo"
    """Where the scene, runs, logs and results go."""
    methods: Optional[Tuple[str, ...]] = None
    """Methods to run instead of the config's list (same flags); results merge into summary.json."""

    def main(self) -> None:
        settings = yaml.safe_load(self.config.read_text())
        self.output_dir.mkdir(parents=True, exist_ok=True)
        scene_dir = self.output_dir / "scene"
        start = time.perf_counter()
        write_synthetic_scene(scene_dir, **settings["scene"])
        CONSOLE.print(f"scene: {scene_dir} ({time.perf_counter() - start:.1f} s)")
        bin_dir = Path(sys.executable).parent
        summary_path = self.output_dir / "summary.json"
        results = json.loads(summary_path.read_text()) if self.methods and summary_path.exists() else {}
        for method in self.methods or settings["methods"]:
            flags = {**settings["train_flags"], **settings.get("method_flags", {}).get(method, {})}
            run_dir = self.output_dir / "runs"
            train_seconds = run(
                [
                    str(bin_dir / "ns-train"),
                    method,
                    *flags_to_args(flags),
                    "--output-dir", str(run_dir),
                    "--experiment-name", "synthetic",
                    "--timestamp", "demo",
                    "--data", str(scene_dir),
                ],
                self.output_dir / f"{method}-train.log",
            )
            config_path = run_dir / "synthetic" / method / "demo" / "config.yml"
            eval_path = self.output_dir / f"{method}-eval.json"
            eval_seconds = run(
                [str(bin_dir / "ns-eval"), "--load-config", str(config_path), "--output-path", str(eval_path)],
                self.output_dir / f"{method}-eval.log",
            )
            metrics = json.loads(eval_path.read_text())["results"]
            results[method] = {**metrics, "train_seconds": train_seconds, "eval_seconds": eval_seconds}
            CONSOLE.print(f"{method}: trained in {train_seconds:.0f} s, evaluated in {eval_seconds:.0f} s")
        summary_path.write_text(json.dumps(results, indent=2))
        self.print_summary(results)

    def print_summary(self, results: Dict[str, dict]) -> None:
        baseline_grid = results.get("plain-nerfacto", {}).get("estimated_grid_size_bytes")
        table = Table(title="Synthetic scene, held-out test views (sizes are estimates, not files)")
        columns = ("method", "PSNR", "SSIM", "est. size (KB)", "est. grid size (KB)", "grid vs fp16", "train (s)")
        for column in columns:
            table.add_column(column, justify="right")
        for method, r in results.items():
            ratio = f"{baseline_grid / r['estimated_grid_size_bytes']:.1f}x smaller" if baseline_grid else "-"
            table.add_row(
                method,
                f"{r['psnr']:.2f}",
                f"{r['ssim']:.4f}",
                f"{r['estimated_size_bytes'] / 1e3:.1f}",
                f"{r['estimated_grid_size_bytes'] / 1e3:.1f}",
                ratio,
                f"{r['train_seconds']:.0f}",
            )
        CONSOLE.print(table)
        CONSOLE.print(f"results: {self.output_dir / 'summary.json'}")


if __name__ == "__main__":
    tyro.cli(Demo).main()
