"""Rate-distortion sweep: train, export real files, evaluate them, tabulate and plot bytes against PSNR.

For one dataset (Blender or nerfstudio format; the embedded synthetic scene when ``--data`` is
not given) this trains the uncompressed baseline, SHACIRA at several rate weights (lambda) and
VQAD at several bit widths with ``ns-train``; writes every model as a real file with
``ns-compress export``; adds the post-hoc baselines of the baseline run (fp32 and fp16 tables,
uniform 8- and 6-bit quantisation plus entropy coding via ``ns-compress export --posthoc``, and
k-means VQ via ``scripts/posthoc_kmeans.py``); evaluates every file with ``ns-compress eval``; and
writes ``results.json``, ``results.csv`` and ``rd.png`` (PSNR against file size, log x).

    .venv/bin/python scripts/rd_sweep.py                       # reduced sweep, synthetic scene, CPU
    .venv/bin/python scripts/rd_sweep.py --data DATA --full    # nerfacto-default sizes and steps (GPU)

The reduced sweep uses ``configs/demo.yaml``'s flags (the CPU budget); ``--full`` uses the
methods' defaults (nerfacto's sizes, 30k steps) on CUDA; ``--latent-dims``, ``--lambdas``,
``--bit-widths`` and ``--kmeans-bits`` change what is swept. Resumable: every finished point is saved
under ``OUTPUT_DIR/points/`` and not recomputed; a point that fails is reported with the last
lines of its log and the sweep goes on with the others. ``export`` and ``eval`` run the
``ns-compress`` commands' own code in this process (one nerfstudio import instead of one per call);
training runs ``ns-train`` in a subprocess, as a user would.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Literal, Optional, Tuple

import tyro
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo import flags_to_args  # noqa: E402

from nerfcompress.scenes.synthetic import write_synthetic_scene  # noqa: E402

CONSOLE = Console()
REPO = Path(__file__).resolve().parent.parent
RATE_WEIGHT_FLAG = "--pipeline.model.rate-weight"
LATENT_DIM_FLAG = "--pipeline.model.latent-dim"
TRAIN_TIME_TAG = "Train Iter (time)"  # nerfstudio's EventName.ITER_TRAIN_TIME, seconds per step


@dataclass(frozen=True)
class TrainedPoint:
    """One ns-train run of the sweep."""

    name: str
    method: str
    setting: str  # what varies, e.g. "lambda=0.001"
    flags: Dict[str, object] = field(default_factory=dict)  # method-specific ns-train flags


@dataclass(frozen=True)
class PosthocPoint:
    """A file made from the baseline run without retraining."""

    name: str
    setting: str
    posthoc: Optional[str] = None  # ns-compress export --posthoc value
    kmeans_bits: Optional[int] = None  # scripts/posthoc_kmeans.py --bits


BASELINE = TrainedPoint("plain", "plain-nerfacto", "fp16 tables")


@dataclass(frozen=True)
class SweepGrid:
    """What the sweep varies: SHACIRA latents per row and rate weights, VQAD bit widths, k-means bits."""

    latent_dims: Tuple[int, ...]
    lambdas: Tuple[float, ...]
    bit_widths: Tuple[int, ...]
    kmeans_bits: Tuple[int, ...]


REDUCED = SweepGrid(latent_dims=(1,), lambdas=(1e-4, 1e-3, 1e-2), bit_widths=(2, 4, 6), kmeans_bits=(4,))
FULL = SweepGrid(
    latent_dims=(1, 2),
    lambdas=(3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
    bit_widths=(2, 3, 4, 5, 6, 8),
    kmeans_bits=(2, 3, 4, 5, 6, 8),
)


def sweep_points(grid: SweepGrid) -> Tuple[List[TrainedPoint], List[PosthocPoint]]:
    """The sweep: the baseline first (the post-hoc points need it), then SHACIRA and VQAD."""
    trained = [BASELINE]
    trained += [
        TrainedPoint(
            f"shacira-D{dim}-lambda{lam:g}",
            "shacira-nerfacto",
            f"D={dim}, lambda={lam:g}",
            {LATENT_DIM_FLAG: dim, RATE_WEIGHT_FLAG: lam},
        )
        for dim in grid.latent_dims
        for lam in grid.lambdas
    ]
    trained += [
        TrainedPoint(f"vqad-b{bits}", "vqad-nerfacto", f"b={bits}", {"--pipeline.model.bits": bits})
        for bits in grid.bit_widths
    ]
    posthoc = [
        PosthocPoint("plain-fp32", "fp32 tables", posthoc="fp32"),
        PosthocPoint("plain-uniform8", "uniform 8-bit + entropy coding", posthoc="uniform8"),
        PosthocPoint("plain-uniform6", "uniform 6-bit + entropy coding", posthoc="uniform6"),
    ]
    posthoc += [PosthocPoint(f"kmeans-b{bits}", f"k-means b={bits}", kmeans_bits=bits) for bits in grid.kmeans_bits]
    return trained, posthoc


def median_step_seconds(run_dir: Path) -> Optional[float]:
    """Median of nerfstudio's logged per-step training time (tensorboard events), first 10% skipped."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = sorted(run_dir.glob("events.out.tfevents.*"))
    if not events:
        return None
    accumulator = EventAccumulator(str(events[-1]), size_guidance={"scalars": 0})
    accumulator.Reload()
    if TRAIN_TIME_TAG not in accumulator.Tags().get("scalars", []):
        return None
    values = [event.value for event in accumulator.Scalars(TRAIN_TIME_TAG)]
    return statistics.median(values[len(values) // 10 :]) if values else None


def device_description(device_type: str) -> str:
    """What the sweep ran on, e.g. "cpu: x86_64, 2 threads" or "cuda: NVIDIA H100 80GB HBM3"."""
    import torch

    if device_type == "cuda" and torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu: {platform.machine()}, {torch.get_num_threads()} threads"


class PointFailed(Exception):
    """A point of the sweep failed; the message says where to look."""


@dataclass
class RdSweep:
    """Train, export and evaluate a rate-distortion sweep; write results.json/.csv and rd.png."""

    data: Optional[Path] = None
    """Dataset (Blender or nerfstudio format); default: configs/demo.yaml's synthetic scene in OUTPUT_DIR/scene."""
    output_dir: Path = REPO / "outputs" / "rd"
    """Runs, files, per-point results, tables and the plot."""
    full: bool = False
    """nerfacto-default sizes and step counts on CUDA (a GPU machine) instead of the CPU demo budget."""
    config: Path = REPO / "configs" / "demo.yaml"
    """Shared ns-train flags of the reduced sweep (and the synthetic scene's settings)."""
    max_num_iterations: Optional[int] = None
    """Override the training steps of every run (default: the config's, or 30000 with --full)."""
    latent_dims: Optional[Tuple[int, ...]] = None
    """SHACIRA latents per row to sweep (default: 1; with --full 1 2)."""
    lambdas: Optional[Tuple[float, ...]] = None
    """SHACIRA rate weights to sweep, for every latent dim (default: 1e-4 1e-3 1e-2; more with --full)."""
    bit_widths: Optional[Tuple[int, ...]] = None
    """VQAD index widths to sweep (default: 2 4 6; more with --full)."""
    kmeans_bits: Optional[Tuple[int, ...]] = None
    """Post-hoc k-means index widths (default: 4; with --full the VQAD widths)."""
    device_type: Optional[Literal["cpu", "cuda"]] = None
    """Training device (default: cuda with --full, else cpu)."""
    only: Optional[Tuple[str, ...]] = None
    """Run only these points (names as in results.json, e.g. plain shacira-D1-lambda0.001 vqad-b4)."""

    def main(self) -> None:
        started = time.perf_counter()
        settings = yaml.safe_load(self.config.read_text())
        data = self.data if self.data is not None else self._synthetic_scene(settings["scene"])
        if not data.exists():
            CONSOLE.print(f"[bold red]rd_sweep:[/bold red] dataset {data} does not exist")
            sys.exit(2)
        device_type = self.device_type or ("cuda" if self.full else "cpu")
        defaults = FULL if self.full else REDUCED
        trained, posthoc = sweep_points(
            SweepGrid(
                latent_dims=self.latent_dims or defaults.latent_dims,
                lambdas=self.lambdas or defaults.lambdas,
                bit_widths=self.bit_widths or defaults.bit_widths,
                kmeans_bits=self.kmeans_bits or defaults.kmeans_bits,
            )
        )
        if self.only is not None:
            known = {p.name for p in trained} | {p.name for p in posthoc}
            unknown = sorted(set(self.only) - known)
            if unknown:
                CONSOLE.print(f"[bold red]rd_sweep:[/bold red] unknown points {unknown}; known: {sorted(known)}")
                sys.exit(2)
        points_dir = self.output_dir / "points"
        points_dir.mkdir(parents=True, exist_ok=True)
        shared_flags = self._shared_flags(settings, device_type)
        device = device_description(device_type)

        tasks: List[Tuple[str, Callable[[], Dict[str, Any]]]] = []
        for point in trained:
            tasks.append((point.name, lambda p=point: self._trained_point(p, data, shared_flags, settings, device)))
        for point in posthoc:
            tasks.append((point.name, lambda p=point: self._posthoc_point(p, data, device)))
        if self.only is not None:
            tasks = [(name, run) for name, run in tasks if name in self.only]

        failures: Dict[str, str] = {}
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=CONSOLE) as progress:
            bar = progress.add_task("rate-distortion sweep", total=len(tasks))
            for name, run in tasks:
                result_path = points_dir / f"{name}.json"
                if result_path.exists():
                    progress.console.print(f"{name}: done before, kept ({result_path})")
                    progress.advance(bar)
                    continue
                progress.update(bar, description=f"rate-distortion sweep: {name}")
                try:
                    result = run()
                except PointFailed as error:
                    failures[name] = str(error)
                    progress.console.print(f"[bold red]{name} failed:[/bold red] {error}")
                except Exception:  # one broken point must not lose the others
                    failures[name] = traceback.format_exc(limit=3).strip().splitlines()[-1]
                    progress.console.print(f"[bold red]{name} failed:[/bold red] {failures[name]}")
                else:
                    result_path.write_text(json.dumps(result, indent=2))
                    progress.console.print(
                        f"{name}: {result['file_bytes']:,} bytes, PSNR {result['psnr']:.2f} dB "
                        f"(total {time.perf_counter() - started:.0f} s)"
                    )
                progress.advance(bar)

        results = [json.loads(path.read_text()) for path in sorted(points_dir.glob("*.json"))]
        self._write_outputs(results, time.perf_counter() - started)
        if failures:
            CONSOLE.print(f"[bold red]{len(failures)} point(s) failed[/bold red] (rerun to retry only them):")
            for name, error in failures.items():
                CONSOLE.print(f"  {name}: {error}")
            sys.exit(1)

    # ----------------------------------------------------------------------------------- points

    def _synthetic_scene(self, scene_settings: Dict[str, Any]) -> Path:
        scene = self.output_dir / "scene"
        if not (scene / "transforms_train.json").exists():
            write_synthetic_scene(scene, **scene_settings)
        return scene

    def _shared_flags(self, settings: Dict[str, Any], device_type: str) -> Dict[str, object]:
        if self.full:
            flags: Dict[str, object] = {
                "--machine.device-type": device_type,
                "--vis": "tensorboard",
                "--viewer.quit-on-train-completion": "True",
                "--steps-per-eval-all-images": 1000000,
            }
        else:
            flags = {**settings["train_flags"], "--machine.device-type": device_type}
        if self.max_num_iterations is not None:
            flags["--max-num-iterations"] = self.max_num_iterations
        iterations = int(flags.get("--max-num-iterations", 30000))
        flags["--steps-per-save"] = iterations  # one checkpoint, at the end
        return flags

    def _run_dir(self, point: TrainedPoint) -> Path:
        return self.output_dir / "runs" / "rd" / point.method / point.name

    def _trained_point(
        self,
        point: TrainedPoint,
        data: Path,
        shared_flags: Dict[str, object],
        settings: Dict[str, Any],
        device: str,
    ) -> Dict[str, Any]:
        run_dir = self._run_dir(point)
        config_path = run_dir / "config.yml"
        method_flags = {} if self.full else dict(settings.get("method_flags", {}).get(point.method, {}))
        flags = {**shared_flags, **method_flags, **point.flags}
        train_seconds = None
        if not list((run_dir / "nerfstudio_models").glob("step-*.ckpt")):
            command = [
                str(Path(sys.executable).parent / "ns-train"),
                point.method,
                *flags_to_args(flags),
                "--output-dir", str(self.output_dir / "runs"),
                "--experiment-name", "rd",
                "--timestamp", point.name,
                "--data", str(data),
            ]  # fmt: skip
            train_seconds = self._run(command, self.output_dir / "logs" / f"{point.name}-train.log")
        file = self.output_dir / "files" / f"{point.name}.ncmp"
        export_seconds = self._export(config_path, file, posthoc=None)
        result = self._evaluate(file, data, point.name)
        return {
            "name": point.name,
            "method": point.method,
            "setting": point.setting,
            "kind": "trained",
            **result,
            "train_seconds": train_seconds,
            "step_seconds": median_step_seconds(run_dir),
            "iterations": int(flags.get("--max-num-iterations", 30000)),
            "export_seconds": export_seconds,
            "device": device,
            "train_flags": {key: str(value) for key, value in flags.items()},
        }

    def _posthoc_point(self, point: PosthocPoint, data: Path, device: str) -> Dict[str, Any]:
        baseline_config = self._run_dir(BASELINE) / "config.yml"
        if not baseline_config.exists():
            raise PointFailed(f"needs the baseline run ({baseline_config} is missing: the 'plain' point failed?)")
        file = self.output_dir / "files" / f"{point.name}.ncmp"
        if point.kmeans_bits is not None:
            from posthoc_kmeans import PosthocKmeans

            kmeans_dir = self.output_dir / "runs" / "kmeans" / point.name
            if not (kmeans_dir / "config.yml").exists():
                PosthocKmeans(load_config=baseline_config, output_dir=kmeans_dir, bits=point.kmeans_bits).main()
            export_seconds = self._export(kmeans_dir / "config.yml", file, posthoc=None)
            method = "kmeans-vq"
        else:
            export_seconds = self._export(baseline_config, file, posthoc=point.posthoc)
            method = "plain-nerfacto (post-hoc)"
        result = self._evaluate(file, data, point.name)
        return {
            "name": point.name,
            "method": method,
            "setting": point.setting,
            "kind": "posthoc",
            **result,
            "train_seconds": None,
            "step_seconds": None,
            "iterations": None,
            "export_seconds": export_seconds,
            "device": device,
        }

    # ------------------------------------------------------------------------------ commands

    def _run(self, command: List[str], log_path: Path) -> float:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        with log_path.open("w") as log:
            result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
            raise PointFailed(f"{Path(command[0]).name} exited with {result.returncode}: {lines[-1] if lines else ''} "
                              f"(log: {log_path})")  # fmt: skip
        return time.perf_counter() - start

    def _export(self, config_path: Path, file: Path, posthoc: Optional[str]) -> float:
        """``ns-compress export`` in this process; returns its seconds."""
        from nerfcompress.cli.export import Export

        file.parent.mkdir(parents=True, exist_ok=True)
        options = {} if posthoc is None else {"posthoc": posthoc}
        start = time.perf_counter()
        self._command(lambda: Export(load_config=config_path, output=file, **options).main(), "ns-compress export")
        return time.perf_counter() - start

    def _evaluate(self, file: Path, data: Path, name: str) -> Dict[str, Any]:
        """``ns-compress eval`` in this process: PSNR, SSIM, LPIPS (when available) and the file's bytes."""
        from nerfcompress.cli.evaluate import Evaluate

        output = self.output_dir / "evals" / f"{name}.json"
        output.parent.mkdir(parents=True, exist_ok=True)
        self._command(lambda: Evaluate(file=file, data=data, output_path=output).main(), "ns-compress eval")
        metrics = json.loads(output.read_text())["metrics"]
        return {
            "file": str(file),
            "file_bytes": file.stat().st_size,
            "psnr": metrics["psnr"],
            "ssim": metrics["ssim"],
            "lpips": metrics.get("lpips"),
        }

    @staticmethod
    def _command(run: Callable[[], None], name: str) -> None:
        try:
            run()
        except SystemExit as exit_:  # the ns-compress commands exit 2 after printing one line
            if exit_.code not in (None, 0):
                raise PointFailed(f"{name} failed (its message is above)") from None

    # ------------------------------------------------------------------------------- outputs

    def _write_outputs(self, results: List[Dict[str, Any]], seconds: float) -> None:
        if not results:
            return
        (self.output_dir / "results.json").write_text(json.dumps(results, indent=2))
        columns = ["name", "method", "setting", "kind", "file_bytes", "psnr", "ssim", "lpips", "train_seconds",
                   "step_seconds", "iterations", "export_seconds", "device"]  # fmt: skip
        with (self.output_dir / "results.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(results)
        plot_rate_distortion(results, self.output_dir / "rd.png")
        headline = headline_ratios(results)
        (self.output_dir / "headline.json").write_text(json.dumps(headline, indent=2))

        table = Table(title=f"rate-distortion sweep ({seconds / 60:.1f} min this time)")
        for column in ("point", "setting", "file bytes", "PSNR", "SSIM", "step (s)"):
            table.add_column(column, justify="left" if column in ("point", "setting") else "right")
        for row in sorted(results, key=lambda r: (r["method"], r["file_bytes"])):
            step = "" if row["step_seconds"] is None else f"{row['step_seconds']:.3f}"
            table.add_row(row["name"], row["setting"], f"{row['file_bytes']:,}", f"{row['psnr']:.2f}",
                          f"{row['ssim']:.4f}", step)  # fmt: skip
        CONSOLE.print(table)
        for method, entry in headline.items():
            CONSOLE.print(f"{method}: {entry['note']}")
        CONSOLE.print(f"Wrote {self.output_dir / 'results.json'}, results.csv, rd.png and headline.json")


def headline_ratios(results: List[Dict[str, Any]], tolerance_db: float = 0.5) -> Dict[str, Dict[str, Any]]:
    """Per method: the smallest file within ``tolerance_db`` of the fp16 baseline's PSNR, and the
    baseline's bytes over that file's bytes (the compression ratio at near-baseline quality)."""
    baseline = next((r for r in results if r["name"] == BASELINE.name), None)
    if baseline is None:
        return {}
    out: Dict[str, Dict[str, Any]] = {}
    for method in sorted({r["method"] for r in results} - {baseline["method"]}):
        rows = [r for r in results if r["method"] == method]
        good = [r for r in rows if r["psnr"] >= baseline["psnr"] - tolerance_db]
        if not good:
            best = max(rows, key=lambda r: r["psnr"])
            note = (f"no point within {tolerance_db} dB of the baseline's {baseline['psnr']:.2f} dB "
                    f"(best {best['psnr']:.2f} dB at {best['file_bytes']:,} bytes)")  # fmt: skip
            out[method] = {"point": None, "ratio": None, "note": note}
            continue
        smallest = min(good, key=lambda r: r["file_bytes"])
        ratio = baseline["file_bytes"] / smallest["file_bytes"]
        note = (f"{ratio:.1f}x smaller than the fp16 baseline ({baseline['file_bytes']:,} bytes, "
                f"{baseline['psnr']:.2f} dB) at {smallest['name']}: {smallest['file_bytes']:,} bytes, "
                f"{smallest['psnr']:.2f} dB")  # fmt: skip
        out[method] = {"point": smallest["name"], "ratio": ratio, "note": note}
    return out


def plot_series(row: Dict[str, Any]) -> str:
    """The plot line a point belongs to: its method, and for SHACIRA its latent dim (one curve per D)."""
    latent_dim = row.get("train_flags", {}).get(LATENT_DIM_FLAG)
    return row["method"] if latent_dim is None else f"{row['method']} D={latent_dim}"


def plot_rate_distortion(results: List[Dict[str, Any]], path: Path) -> None:
    """PSNR against file bytes (log x), one line per method, post-hoc baselines as markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    for series in sorted({plot_series(r) for r in results}):
        rows = sorted((r for r in results if plot_series(r) == series), key=lambda r: r["file_bytes"])
        style = "o-" if rows[0]["kind"] == "trained" else "s"
        axes.plot([r["file_bytes"] for r in rows], [r["psnr"] for r in rows], style, label=series)
        for index, row in enumerate(rows):
            label = row["name"].removeprefix("plain-") if row["kind"] == "posthoc" else row["setting"]
            axes.annotate(label, (row["file_bytes"], row["psnr"]), textcoords="offset points",
                          xytext=(4, 4 if index % 2 == 0 else -11), fontsize=7)  # fmt: skip
    axes.set_xscale("log")
    axes.set_xlabel("file size (bytes, everything included)")
    axes.set_ylabel("PSNR (dB, test views)")
    devices = sorted({r["device"] for r in results})
    axes.set_title(f"rate-distortion ({'; '.join(devices)})", fontsize=9)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    lo = min(r["file_bytes"] for r in results)
    hi = max(r["file_bytes"] for r in results)
    axes.set_xlim(10 ** (math.log10(lo) - 0.1), 10 ** (math.log10(hi) + 0.1))
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


if __name__ == "__main__":
    tyro.cli(RdSweep).main()
