"""The README's main job: synthetic scene -> ns-train (baseline and SHACIRA) -> ns-eval -> summary.

Runs nerfstudio's real commands with the flags in ``configs/demo.yaml`` and prints PSNR/SSIM on
the held-out test views next to each model's estimated compressed size and the uncompressed
baseline's fp16 grid size.

    .venv/bin/python scripts/demo.py [--config configs/demo.yaml] [--output-dir outputs/demo] [--methods M ...]
        [--seeds 42 43 44]

At this budget one run is a noisy sample: the same flags have given the baseline anything from
23.5 to 25.4 dB. Several ``--seeds`` train every method once per seed and report the mean and
standard deviation of each metric.
"""

from __future__ import annotations

import json
import re
import statistics
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
    seeds: Tuple[int, ...] = (42,)
    """ns-train's --machine.seed of each run (42 is nerfstudio's default); several seeds give mean and spread."""

    def main(self) -> None:
        settings = yaml.safe_load(self.config.read_text())
        self.output_dir.mkdir(parents=True, exist_ok=True)
        scene_dir = self.output_dir / "scene"
        start = time.perf_counter()
        write_synthetic_scene(scene_dir, **settings["scene"])
        CONSOLE.print(f"scene: {scene_dir} ({time.perf_counter() - start:.1f} s)")
        summary_path = self.output_dir / "summary.json"
        results = json.loads(summary_path.read_text()) if self.methods and summary_path.exists() else {}
        for method in self.methods or settings["methods"]:
            flags = {**settings["train_flags"], **settings.get("method_flags", {}).get(method, {})}
            runs = {str(seed): self.train_and_evaluate(method, flags, scene_dir, seed) for seed in self.seeds}
            results[method] = summarize_runs(runs)
        summary_path.write_text(json.dumps(results, indent=2))
        self.print_summary(results)

    def train_and_evaluate(self, method: str, flags: Dict[str, object], scene_dir: Path, seed: int) -> dict:
        """One ns-train + ns-eval run; returns ns-eval's metrics, seconds and the mean step time."""
        bin_dir = Path(sys.executable).parent
        run_dir = self.output_dir / "runs"
        name = "demo" if len(self.seeds) == 1 else f"seed{seed}"
        prefix = method if len(self.seeds) == 1 else f"{method}-seed{seed}"
        train_log = self.output_dir / f"{prefix}-train.log"
        train_seconds = run(
            [
                str(bin_dir / "ns-train"),
                method,
                *flags_to_args(flags),
                "--machine.seed",
                str(seed),
                "--output-dir",
                str(run_dir),
                "--experiment-name",
                "synthetic",
                "--timestamp",
                name,
                "--data",
                str(scene_dir),
            ],
            train_log,
        )
        config_path = run_dir / "synthetic" / method / name / "config.yml"
        eval_path = self.output_dir / f"{prefix}-eval.json"
        eval_seconds = run(
            [str(bin_dir / "ns-eval"), "--load-config", str(config_path), "--output-path", str(eval_path)],
            self.output_dir / f"{prefix}-eval.log",
        )
        metrics = json.loads(eval_path.read_text())["results"]
        CONSOLE.print(f"{method} (seed {seed}): PSNR {metrics['psnr']:.2f}, trained in {train_seconds:.0f} s")
        return {
            **metrics,
            "train_seconds": train_seconds,
            "eval_seconds": eval_seconds,
            "step_seconds": mean_step_seconds(train_log),
        }

    def print_summary(self, results: Dict[str, dict]) -> None:
        baseline = results.get("plain-nerfacto", {})
        num_runs = max(len(r.get("runs", {0: r})) for r in results.values())
        title = "Synthetic scene, held-out test views (sizes are estimates, not files)"
        if num_runs > 1:
            title += f"; mean ± std over {num_runs} seeds"
        table = Table(title=title)
        columns = ("method", "PSNR (dB)", "SSIM", "est. KB", "est. grid KB", "grid smaller", "step ms")
        for column in columns:
            table.add_column(column, justify="right", no_wrap=True)
        for method, r in results.items():
            grid_ratio = baseline.get("estimated_grid_size_bytes", 0) / r["estimated_grid_size_bytes"]
            step_ratio = r.get("step_seconds", 0.0) / baseline.get("step_seconds", float("inf"))
            table.add_row(
                method,
                f"{r['psnr']:.2f}" + (f" ± {r['psnr_seed_std']:.2f}" if num_runs > 1 else ""),
                f"{r['ssim']:.4f}",
                f"{r['estimated_size_bytes'] / 1e3:.1f}",
                f"{r['estimated_grid_size_bytes'] / 1e3:.1f}",
                f"{grid_ratio:.1f}x" if grid_ratio else "-",
                f"{1e3 * r['step_seconds']:.0f} ({step_ratio:.2f}x)" if step_ratio else "-",
            )
        Console(width=max(CONSOLE.width, 110)).print(table)  # rich assumes 80 columns when piped
        CONSOLE.print("grid smaller: than plain-nerfacto's fp16 grid; step: nerfstudio's mean")
        CONSOLE.print("Trainer.train_iteration time, and its ratio to plain-nerfacto's")
        CONSOLE.print(f"results: {self.output_dir / 'summary.json'}")


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
