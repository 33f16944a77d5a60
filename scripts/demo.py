"""The README's main job: synthetic scene -> ns-train (baseline and SHACIRA) -> ns-compress export -> eval.

Trains every method of ``configs/demo.yaml`` with nerfstudio's real ``ns-train`` (side by side,
each with an equal share of the CPU's threads), writes each trained model as a real file with
``ns-compress export``, decodes and evaluates that file on the held-out test views with
``ns-compress eval``, and prints PSNR/SSIM of the decoded files next to their exact bytes and the
size the model estimated during training.

    .venv/bin/python scripts/demo.py [--config configs/demo.yaml] [--output-dir outputs/demo] [--methods M ...]
        [--seeds 42 43 44]

At this budget one run is a noisy sample (the same flags have given the baseline anything from
22 to 26.5 dB). Several ``--seeds`` train every method once per seed and report the mean and
standard deviation of each metric.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import tyro
import yaml
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ns_runs import (  # noqa: E402
    CommandFailed,
    evaluate_file,
    export_file,
    final_estimate_bytes,
    ns_train_command,
    run_logged_concurrently,
)

from nerfcompress.scenes.synthetic import write_synthetic_scene  # noqa: E402

CONSOLE = Console()
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Demo:
    """Train, export and evaluate every method of the demo config on the synthetic scene."""

    config: Path = REPO / "configs" / "demo.yaml"
    """Demo settings (scene, shared ns-train flags, per-method flags)."""
    output_dir: Path = REPO / "outputs" / "demo"
    """Where the scene, runs, files, logs and results go."""
    methods: Optional[Tuple[str, ...]] = None
    """Methods to run instead of the config's list (same flags); results merge into summary.json."""
    seeds: Tuple[int, ...] = (42,)
    """ns-train's --machine.seed of each run (42 is nerfstudio's default); several seeds give mean and spread."""

    def main(self) -> None:
        started = time.perf_counter()
        settings = yaml.safe_load(self.config.read_text())
        self.output_dir.mkdir(parents=True, exist_ok=True)
        scene_dir = self.output_dir / "scene"
        write_synthetic_scene(scene_dir, **settings["scene"])
        CONSOLE.print(f"scene: {scene_dir} ({time.perf_counter() - started:.1f} s)")
        summary_path = self.output_dir / "summary.json"
        results = json.loads(summary_path.read_text()) if self.methods and summary_path.exists() else {}
        methods = list(self.methods or settings["methods"])
        runs: Dict[str, Dict[str, dict]] = {method: {} for method in methods}
        try:
            for seed in self.seeds:
                for method, run in self.train_export_evaluate(methods, settings, scene_dir, seed).items():
                    runs[method][str(seed)] = run
        except CommandFailed as error:
            CONSOLE.print(f"[bold red]{error}")
            sys.exit(1)
        results.update({method: summarize_runs(method_runs) for method, method_runs in runs.items()})
        summary_path.write_text(json.dumps(results, indent=2))
        self.print_summary(results)
        CONSOLE.print(f"demo finished in {(time.perf_counter() - started) / 60:.1f} min")

    def train_export_evaluate(self, methods: list, settings: dict, scene_dir: Path, seed: int) -> Dict[str, dict]:
        """Trains every method (side by side), then exports and evaluates each file; returns the runs."""
        run_dir = self.output_dir / "runs"
        names = {method: "demo" if len(self.seeds) == 1 else f"seed{seed}" for method in methods}
        prefixes = {method: method if len(self.seeds) == 1 else f"{method}-seed{seed}" for method in methods}
        commands = []
        for method in methods:
            flags = {**settings["train_flags"], **settings.get("method_flags", {}).get(method, {})}
            command = ns_train_command(method, flags, scene_dir, run_dir, "synthetic", names[method], seed)
            commands.append((command, self.output_dir / f"{prefixes[method]}-train.log"))
        train_seconds = run_logged_concurrently(commands)
        out = {}
        for method, seconds in zip(methods, train_seconds):
            method_dir = run_dir / "synthetic" / method / names[method]
            file = self.output_dir / f"{prefixes[method]}.ncmp"
            export_seconds = export_file(method_dir / "config.yml", file)
            metrics = evaluate_file(file, scene_dir, self.output_dir / f"{prefixes[method]}-eval.json")
            estimate = final_estimate_bytes(method_dir)
            CONSOLE.print(
                f"{method} (seed {seed}): decoded file {file.stat().st_size:,} bytes, PSNR {metrics['psnr']:.2f} dB; "
                f"trained in {seconds:.0f} s"
            )
            out[method] = {
                "psnr": metrics["psnr"],
                "ssim": metrics["ssim"],
                "file_bytes": file.stat().st_size,
                "estimated_size_bytes": estimate["total"],
                "estimated_grid_size_bytes": estimate["grids"],
                "train_seconds": seconds,
                "export_seconds": export_seconds,
                "step_seconds": mean_step_seconds(self.output_dir / f"{prefixes[method]}-train.log"),
            }
        return out

    def print_summary(self, results: Dict[str, dict]) -> None:
        baseline = results.get("plain-nerfacto", {})
        num_runs = max(len(r.get("runs", {0: r})) for r in results.values())
        title = "Synthetic scene, held-out test views, decoded files (est.: the size estimated in training)"
        if num_runs > 1:
            title += f"; mean ± std over {num_runs} seeds"
        table = Table(title=title)
        columns = ("method", "PSNR (dB)", "SSIM", "file bytes", "est. bytes", "est. grid bytes", "smaller", "step ms")
        for column in columns:
            table.add_column(column, justify="right", no_wrap=True)
        for method, r in results.items():
            ratio = baseline.get("file_bytes", 0) / r["file_bytes"]
            step_ratio = (r.get("step_seconds") or 0.0) / (baseline.get("step_seconds") or float("inf"))
            table.add_row(
                method,
                f"{r['psnr']:.2f}" + (f" ± {r['psnr_seed_std']:.2f}" if num_runs > 1 else ""),
                f"{r['ssim']:.4f}",
                f"{r['file_bytes']:,.0f}",
                _bytes(r.get("estimated_size_bytes")),
                _bytes(r.get("estimated_grid_size_bytes")),
                f"{ratio:.1f}x" if ratio else "-",
                f"{1e3 * r['step_seconds']:.0f} ({step_ratio:.2f}x)" if step_ratio else "-",
            )
        Console(width=max(CONSOLE.width, 120)).print(table)  # rich assumes 80 columns when piped
        CONSOLE.print("smaller: plain-nerfacto's file over this file; step: nerfstudio's mean Trainer.train_iteration")
        CONSOLE.print("time (trainings ran side by side) and its ratio to plain-nerfacto's")
        CONSOLE.print(f"results: {self.output_dir / 'summary.json'}")


def _bytes(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:,.0f}"


def mean_step_seconds(train_log: Path) -> Optional[float]:
    """nerfstudio's own mean ``Trainer.train_iteration`` time, from the profiler stats it prints at the end."""
    found = re.findall(r"Trainer\.train_iteration: ([0-9.]+)", train_log.read_text(errors="replace"))
    return float(found[-1]) if found else None


def summarize_runs(runs: Dict[str, dict]) -> dict:
    """Mean over the runs (keyed by seed) of every metric that all of them report as a number,
    ``psnr_seed_std`` (the standard deviation across seeds; 0 for one run) and the runs themselves."""
    keys = [k for k, v in next(iter(runs.values())).items() if isinstance(v, (int, float))]
    summary: dict = {
        k: statistics.fmean(r[k] for r in runs.values())
        for k in keys
        if all(isinstance(r.get(k), (int, float)) for r in runs.values())
    }
    summary["psnr_seed_std"] = statistics.stdev(r["psnr"] for r in runs.values()) if len(runs) > 1 else 0.0
    summary["runs"] = runs
    return summary


if __name__ == "__main__":
    tyro.cli(Demo).main()
