"""Rate-distortion sweep: train, export real files, evaluate them on val and test, tabulate and plot.

For one dataset (Blender or nerfstudio format; the embedded synthetic scene when ``--data`` is
not given) this trains the uncompressed baseline (also at other grid learning rates, to tune it
like the others), SHACIRA over latent dims D and rate weights lambda and VQAD over bit widths
with ``ns-train``, once per ``--seeds``; writes every model as a real file with
``ns-compress export``; adds the post-hoc baselines of each seed's baseline run (fp32 and fp16
tables, uniform 8..2-bit quantisation plus entropy coding via ``ns-compress export --posthoc``,
k-means VQ via ``scripts/posthoc_kmeans.py``); evaluates every file with ``ns-compress eval`` on
the val split (to choose settings) and the test split (to report them); and writes
``results.json`` (one row per run), ``summary.json`` (mean and spread over seeds per point),
``results.csv``, ``rd.png`` (test PSNR against file bytes, log x) and ``headline.json``.

    .venv/bin/python scripts/rd_sweep.py                                  # reduced sweep, synthetic scene, CPU
    .venv/bin/python scripts/rd_sweep.py --data DATA --seeds 42 43 44     # a real scene, three seeds
    .venv/bin/python scripts/rd_sweep.py --data DATA --full               # nerfacto-default sizes and steps (GPU)

The reduced sweep uses ``configs/demo.yaml``'s flags (the CPU budget); ``--full`` uses the
methods' defaults (nerfacto's sizes, 30k steps) on CUDA. ``--set METHOD:FLAG=VALUE`` changes a
flag of every run of one method (``all:`` for every method), which is how a candidate setting
is screened. Resumable: every finished run is saved under ``OUTPUT_DIR/points/`` and not
recomputed; a run that fails is reported with the last lines of its log and the sweep goes on.
``export`` and ``eval`` run the ``ns-compress`` commands' own code in this process (one
nerfstudio import instead of one per call); training runs ``ns-train`` in a subprocess.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Literal, Optional, Sequence, Tuple

import tyro
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ns_runs import (  # noqa: E402
    CommandFailed,
    evaluate_file,
    export_file,
    final_train_psnr,
    median_step_seconds,
    ns_train_command,
    run_logged,
)

from nerfcompress.scenes.synthetic import write_synthetic_scene  # noqa: E402

CONSOLE = Console()
REPO = Path(__file__).resolve().parent.parent
RATE_WEIGHT_FLAG = "--pipeline.model.rate-weight"
VQAD_RATE_WEIGHT_FLAG = RATE_WEIGHT_FLAG  # the same field name on VQAD's config
LATENT_DIM_FLAG = "--pipeline.model.latent-dim"
GRID_LR_FLAG = "--optimizers.grids.optimizer.lr"
SPLITS = ("val", "test")


@dataclass(frozen=True)
class TrainedPoint:
    """One ns-train setting of the sweep (run once per seed)."""

    name: str
    method: str
    setting: str  # what varies, e.g. "lambda=0.001"
    flags: Dict[str, object] = field(default_factory=dict)  # method-specific ns-train flags


@dataclass(frozen=True)
class PosthocPoint:
    """A file made from a seed's baseline run without retraining."""

    name: str
    setting: str
    posthoc: Optional[str] = None  # ns-compress export --posthoc value
    kmeans_bits: Optional[int] = None  # scripts/posthoc_kmeans.py --bits


BASELINE = TrainedPoint("plain", "plain-nerfacto", "fp16 tables")


@dataclass(frozen=True)
class SweepGrid:
    """What the sweep varies: SHACIRA latents per row and rate weights, VQAD bit widths (without a
    rate term, as in the paper) and rate weights at some bit widths (entropy-constrained), the
    post-hoc uniform and k-means bit widths, and the baseline's other grid learning rates."""

    latent_dims: Tuple[int, ...]
    lambdas: Tuple[float, ...]
    bit_widths: Tuple[int, ...]
    uniform_bits: Tuple[int, ...]
    kmeans_bits: Tuple[int, ...]
    baseline_grid_lrs: Tuple[float, ...] = ()
    vqad_lambdas: Tuple[float, ...] = ()
    vqad_lambda_bits: Tuple[int, ...] = ()


REDUCED = SweepGrid(
    latent_dims=(2,),
    lambdas=(3e-3, 1e-2, 3e-2),
    bit_widths=(2, 4),
    uniform_bits=(8, 6, 4),
    kmeans_bits=(4,),
)
FULL = SweepGrid(
    latent_dims=(1, 2),
    lambdas=(3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
    bit_widths=(2, 3, 4, 5, 6, 8),
    uniform_bits=(8, 6, 5, 4, 3, 2),
    kmeans_bits=(2, 3, 4, 5, 6, 8),
)


def sweep_points(grid: SweepGrid) -> Tuple[List[TrainedPoint], List[PosthocPoint]]:
    """The sweep: the baseline first (the post-hoc points need it), then SHACIRA and VQAD."""
    trained = [BASELINE]
    trained += [
        TrainedPoint(f"plain-lr{lr:g}", "plain-nerfacto", f"grid lr={lr:g}", {GRID_LR_FLAG: lr})
        for lr in grid.baseline_grid_lrs
    ]
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
    trained += [
        TrainedPoint(
            f"vqad-b{bits}-lambda{lam:g}",
            "vqad-nerfacto",
            f"b={bits}, lambda={lam:g}",
            {"--pipeline.model.bits": bits, VQAD_RATE_WEIGHT_FLAG: lam},
        )
        for bits in grid.vqad_lambda_bits
        for lam in grid.vqad_lambdas
    ]
    posthoc = [
        PosthocPoint("plain-fp32", "fp32 tables", posthoc="fp32"),
        *(PosthocPoint(f"plain-uniform{b}", f"uniform {b}-bit + entropy coding", posthoc=f"uniform{b}")
          for b in grid.uniform_bits),
        *(PosthocPoint(f"kmeans-b{bits}", f"k-means b={bits}", kmeans_bits=bits) for bits in grid.kmeans_bits),
    ]  # fmt: skip
    return trained, posthoc


def parse_overrides(overrides: Sequence[str]) -> Dict[str, Dict[str, str]]:
    """``["shacira-nerfacto:--pipeline.model.x=1", "all:--y=2"]`` -> ``{method: {flag: value}}``.

    Raises:
        ValueError: an override is not ``METHOD:--FLAG=VALUE``.
    """
    out: Dict[str, Dict[str, str]] = {}
    for override in overrides:
        method, sep, assignment = override.partition(":")
        flag, eq, value = assignment.partition("=")
        if not sep or not eq or not method or not flag.startswith("--"):
            raise ValueError(f"--set takes METHOD:--FLAG=VALUE (METHOD may be 'all'), found {override!r}")
        out.setdefault(method, {})[flag] = value
    return out


def run_name(point_name: str, seed: int, seeds: Sequence[int]) -> str:
    """A run's name: the point's, with ``-s<seed>`` when the sweep has several seeds."""
    return point_name if len(seeds) == 1 else f"{point_name}-s{seed}"


def device_description(device_type: str) -> str:
    """What the sweep ran on, e.g. "cpu: x86_64, 2 threads" or "cuda: NVIDIA H100 80GB HBM3"."""
    import torch

    if device_type == "cuda" and torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu: {platform.machine()}, {torch.get_num_threads()} threads"


@dataclass
class RdSweep:
    """Train, export and evaluate a rate-distortion sweep; write results, summary, plot and headline."""

    data: Optional[Path] = None
    """Dataset (Blender or nerfstudio format); default: configs/demo.yaml's synthetic scene in OUTPUT_DIR/scene."""
    output_dir: Path = REPO / "outputs" / "rd"
    """Runs, files, per-run results, tables and the plot."""
    full: bool = False
    """nerfacto-default sizes and step counts on CUDA (a GPU machine) instead of the CPU demo budget."""
    config: Path = REPO / "configs" / "demo.yaml"
    """Shared ns-train flags of the reduced sweep (and the synthetic scene's settings)."""
    seeds: Tuple[int, ...] = (42,)
    """ns-train --machine.seed of each run; every point runs once per seed (mean and spread in summary.json)."""
    max_num_iterations: Optional[int] = None
    """Override the training steps of every run (default: the config's, or 30000 with --full)."""
    latent_dims: Optional[Tuple[int, ...]] = None
    """SHACIRA latents per row to sweep (default: 2; with --full 1 2)."""
    lambdas: Optional[Tuple[float, ...]] = None
    """SHACIRA rate weights to sweep, for every latent dim (default: 3e-3 1e-2 3e-2; more with --full)."""
    bit_widths: Optional[Tuple[int, ...]] = None
    """VQAD index widths to sweep without a rate term, as in the paper (default: 2 4; more with --full)."""
    vqad_lambdas: Tuple[float, ...] = ()
    """VQAD rate weights (entropy-constrained indices) to sweep at each of --vqad-lambda-bits."""
    vqad_lambda_bits: Tuple[int, ...] = (3,)
    """VQAD index widths of the --vqad-lambdas points."""
    uniform_bits: Optional[Tuple[int, ...]] = None
    """Post-hoc uniform quantisation widths (default: 8 6 4; with --full 8 6 5 4 3 2)."""
    kmeans_bits: Optional[Tuple[int, ...]] = None
    """Post-hoc k-means index widths (default: 4; with --full the VQAD widths)."""
    baseline_grid_lrs: Tuple[float, ...] = ()
    """Also train the baseline at these grid learning rates (points plain-lr<x>), to tune it on val."""
    set: Tuple[str, ...] = ()
    """Flag overrides METHOD:--FLAG=VALUE (METHOD a method name or all), applied to every run of that method."""
    device_type: Optional[Literal["cpu", "cuda"]] = None
    """Training device (default: cuda with --full, else cpu)."""
    jobs: int = 1
    """Trainings that run at the same time (each with an equal share of the CPU's threads); export and eval
    of finished runs go on meanwhile. Step times are then measured under each other's load."""
    only: Optional[Tuple[str, ...]] = None
    """Run only these points (names as in summary.json, e.g. plain shacira-D2-lambda0.01 vqad-b4)."""

    def main(self) -> None:
        started = time.perf_counter()
        settings = yaml.safe_load(self.config.read_text())
        data = self.data if self.data is not None else self._synthetic_scene(settings["scene"])
        if not data.exists():
            CONSOLE.print(f"[bold red]rd_sweep:[/bold red] dataset {data} does not exist")
            sys.exit(2)
        try:
            overrides = parse_overrides(self.set)
        except ValueError as error:
            CONSOLE.print(f"[bold red]rd_sweep:[/bold red] {error}")
            sys.exit(2)
        device_type = self.device_type or ("cuda" if self.full else "cpu")
        defaults = FULL if self.full else REDUCED
        trained, posthoc = sweep_points(
            SweepGrid(
                latent_dims=self.latent_dims or defaults.latent_dims,
                lambdas=self.lambdas or defaults.lambdas,
                bit_widths=self.bit_widths or defaults.bit_widths,
                uniform_bits=self.uniform_bits or defaults.uniform_bits,
                kmeans_bits=self.kmeans_bits or defaults.kmeans_bits,
                baseline_grid_lrs=self.baseline_grid_lrs,
                vqad_lambdas=self.vqad_lambdas,
                vqad_lambda_bits=self.vqad_lambda_bits,
            )
        )
        if self.only is not None:
            known = {p.name for p in trained} | {p.name for p in posthoc}
            unknown = sorted(set(self.only) - known)
            if unknown:
                CONSOLE.print(f"[bold red]rd_sweep:[/bold red] unknown points {unknown}; known: {sorted(known)}")
                sys.exit(2)
            trained = [p for p in trained if p.name in self.only]
            posthoc = [p for p in posthoc if p.name in self.only]
        points_dir = self.output_dir / "points"
        points_dir.mkdir(parents=True, exist_ok=True)
        shared_flags = self._shared_flags(settings, device_type)
        device = device_description(device_type)

        tasks: List[Tuple[str, Callable[[], Dict[str, Any]]]] = []
        trainings: List[Tuple[str, List[str]]] = []
        for seed in self.seeds:  # seed-major: a first full curve before the other seeds
            for point in trained:
                name = run_name(point.name, seed, self.seeds)
                flags = {**shared_flags, **self._method_flags(point, settings, overrides), **point.flags}
                tasks.append((name, lambda p=point, s=seed, f=flags: self._trained_run(p, s, data, f, device)))
                if not (points_dir / f"{name}.json").exists() and not self._has_checkpoint(name, point.method):
                    trainings.append((name, ns_train_command(point.method, flags, data, self.output_dir / "runs", "rd",
                                                             name, seed)))  # fmt: skip
            for point in posthoc:
                name = run_name(point.name, seed, self.seeds)
                tasks.append((name, lambda p=point, s=seed: self._posthoc_run(p, s, data, device)))
        threads = max(1, (os.cpu_count() or 1) // self.jobs)
        executor = ThreadPoolExecutor(max_workers=self.jobs)
        self._trainings: Dict[str, Future] = {
            name: executor.submit(run_logged, command, self.output_dir / "logs" / f"{name}-train.log",
                                  threads if self.jobs > 1 else None)
            for name, command in trainings
        }  # fmt: skip

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
                except CommandFailed as error:
                    failures[name] = str(error)
                    progress.console.print(f"[bold red]{name} failed:[/bold red] {error}")
                except Exception:  # one broken run must not lose the others
                    failures[name] = traceback.format_exc(limit=3).strip().splitlines()[-1]
                    progress.console.print(f"[bold red]{name} failed:[/bold red] {failures[name]}")
                else:
                    result_path.write_text(json.dumps(result, indent=2))
                    progress.console.print(
                        f"{name}: {result['file_bytes']:,} bytes, PSNR val {result['val']['psnr']:.2f} / "
                        f"test {result['psnr']:.2f} dB (total {time.perf_counter() - started:.0f} s)"
                    )
                progress.advance(bar)

        executor.shutdown()
        results = [json.loads(path.read_text()) for path in sorted(points_dir.glob("*.json"))]
        self._write_outputs(results, time.perf_counter() - started)
        if failures:
            CONSOLE.print(f"[bold red]{len(failures)} run(s) failed[/bold red] (rerun to retry only them):")
            for name, error in failures.items():
                CONSOLE.print(f"  {name}: {error}")
            sys.exit(1)

    # ------------------------------------------------------------------------------------- runs

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

    def _method_flags(
        self, point: TrainedPoint, settings: Dict[str, Any], overrides: Dict[str, Dict[str, str]]
    ) -> Dict[str, object]:
        """The config's flags for the point's method (none with --full), then the overrides."""
        flags: Dict[str, object] = {} if self.full else dict(settings.get("method_flags", {}).get(point.method, {}))
        flags.update(overrides.get("all", {}))
        flags.update(overrides.get(point.method, {}))
        return flags

    def _run_dir(self, name: str, method: str) -> Path:
        return self.output_dir / "runs" / "rd" / method / name

    def _has_checkpoint(self, name: str, method: str) -> bool:
        return bool(list((self._run_dir(name, method) / "nerfstudio_models").glob("step-*.ckpt")))

    def _trained(self, name: str) -> Optional[float]:
        """Waits for a run's training (if this sweep started it); returns its seconds."""
        training = self._trainings.get(name)
        return None if training is None else training.result()

    def _trained_run(
        self, point: TrainedPoint, seed: int, data: Path, flags: Dict[str, object], device: str
    ) -> Dict[str, Any]:
        name = run_name(point.name, seed, self.seeds)
        run_dir = self._run_dir(name, point.method)
        train_seconds = self._trained(name)
        file = self.output_dir / "files" / f"{name}.ncmp"
        export_seconds = export_file(run_dir / "config.yml", file)
        return {
            "name": name,
            "point": point.name,
            "seed": seed,
            "method": point.method,
            "setting": point.setting,
            "kind": "trained",
            **self._evaluate(file, data, name),
            "train_seconds": train_seconds,
            "step_seconds": median_step_seconds(run_dir),
            "train_psnr_final": final_train_psnr(run_dir),
            "iterations": int(flags.get("--max-num-iterations", 30000)),
            "export_seconds": export_seconds,
            "device": device,
            "train_flags": {key: str(value) for key, value in flags.items()},
        }

    def _posthoc_run(self, point: PosthocPoint, seed: int, data: Path, device: str) -> Dict[str, Any]:
        name = run_name(point.name, seed, self.seeds)
        baseline_name = run_name(BASELINE.name, seed, self.seeds)
        try:
            self._trained(baseline_name)
        except CommandFailed:
            pass  # reported with the baseline's own run
        baseline_config = self._run_dir(baseline_name, BASELINE.method) / "config.yml"
        if not baseline_config.exists():
            raise CommandFailed(f"needs the baseline run ({baseline_config} is missing: the 'plain' point failed?)")
        file = self.output_dir / "files" / f"{name}.ncmp"
        if point.kmeans_bits is not None:
            from posthoc_kmeans import PosthocKmeans

            kmeans_dir = self.output_dir / "runs" / "kmeans" / name
            if not (kmeans_dir / "config.yml").exists():
                PosthocKmeans(load_config=baseline_config, output_dir=kmeans_dir, bits=point.kmeans_bits).main()
            export_seconds = export_file(kmeans_dir / "config.yml", file)
            method = "kmeans-vq"
        else:
            export_seconds = export_file(baseline_config, file, posthoc=point.posthoc)
            method = "plain-nerfacto (post-hoc)"
        return {
            "name": name,
            "point": point.name,
            "seed": seed,
            "method": method,
            "setting": point.setting,
            "kind": "posthoc",
            **self._evaluate(file, data, name),
            "train_seconds": None,
            "step_seconds": None,
            "train_psnr_final": None,
            "iterations": None,
            "export_seconds": export_seconds,
            "device": device,
        }

    def _evaluate(self, file: Path, data: Path, name: str) -> Dict[str, Any]:
        """``ns-compress eval`` on val and test: the file's bytes and, per split, PSNR, SSIM and
        LPIPS (when available); ``psnr``/``ssim``/``lpips`` at top level are test's."""
        out: Dict[str, Any] = {"file": str(file), "file_bytes": file.stat().st_size}
        for split in SPLITS:
            metrics = evaluate_file(file, data, self.output_dir / "evals" / f"{name}-{split}.json", split=split)
            out[split] = {key: metrics.get(key) for key in ("psnr", "ssim", "lpips")}
        out["psnr"], out["ssim"], out["lpips"] = (out["test"][k] for k in ("psnr", "ssim", "lpips"))
        return out

    # ------------------------------------------------------------------------------- outputs

    def _write_outputs(self, results: List[Dict[str, Any]], seconds: float) -> None:
        if not results:
            return
        (self.output_dir / "results.json").write_text(json.dumps(results, indent=2))
        summary = summarize(results)
        (self.output_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        columns = ["name", "point", "seed", "method", "setting", "kind", "file_bytes", "psnr", "ssim", "lpips",
                   "train_psnr_final", "train_seconds", "step_seconds", "iterations", "export_seconds",
                   "device"]  # fmt: skip
        with (self.output_dir / "results.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=[*columns, "psnr_val"], extrasaction="ignore")
            writer.writeheader()
            writer.writerows({**row, "psnr_val": row.get("val", {}).get("psnr")} for row in results)
        plot_rate_distortion(summary, self.output_dir / "rd.png", self.data.name if self.data else "synthetic scene")
        headline = headline_ratios(summary)
        headline["dominance"] = dominance_over_posthoc(summary)
        (self.output_dir / "headline.json").write_text(json.dumps(headline, indent=2))

        table = Table(title=f"rate-distortion sweep ({seconds / 60:.1f} min this time; mean ± std over seeds)")
        for column in ("point", "setting", "runs", "file bytes", "PSNR val", "PSNR test", "SSIM test", "step (s)"):
            table.add_column(column, justify="left" if column in ("point", "setting") else "right")
        for row in sorted(summary, key=lambda r: (r["method"], r["file_bytes"])):
            step = "" if row["step_seconds"] is None else f"{row['step_seconds']:.3f}"
            table.add_row(row["point"], row["setting"], str(row["runs"]), f"{row['file_bytes']:,.0f}",
                          f"{row['psnr_val']:.2f} ± {row['psnr_val_std']:.2f}",
                          f"{row['psnr']:.2f} ± {row['psnr_std']:.2f}", f"{row['ssim']:.4f}", step)  # fmt: skip
        CONSOLE.print(table)
        for method, entry in headline.items():
            if method != "dominance":
                CONSOLE.print(f"{method}: {entry['note']}")
        for method, entry in headline["dominance"].items():
            CONSOLE.print(f"{method} against post-hoc: {entry['note']}")
        CONSOLE.print(f"Wrote {self.output_dir / 'results.json'}, summary.json, results.csv, rd.png and headline.json")


def _mean_std(values: Sequence[float]) -> Tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(results: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One row per point: mean and standard deviation over its runs (seeds) of bytes and metrics."""
    by_point: Dict[str, List[Dict[str, Any]]] = {}
    for row in results:
        by_point.setdefault(row.get("point", row["name"]), []).append(row)
    summary = []
    for point, rows in by_point.items():
        first = rows[0]
        entry: Dict[str, Any] = {
            "point": point,
            "method": first["method"],
            "setting": first["setting"],
            "kind": first["kind"],
            "runs": len(rows),
            "seeds": sorted(r.get("seed") for r in rows if r.get("seed") is not None),
            "train_flags": first.get("train_flags", {}),
            "device": first.get("device"),
        }
        entry["file_bytes"], entry["file_bytes_std"] = _mean_std([r["file_bytes"] for r in rows])
        entry["psnr"], entry["psnr_std"] = _mean_std([r["psnr"] for r in rows])
        entry["ssim"], _ = _mean_std([r["ssim"] for r in rows])
        val = [r["val"]["psnr"] for r in rows if r.get("val")]
        entry["psnr_val"], entry["psnr_val_std"] = _mean_std(val) if val else (float("nan"), 0.0)
        steps = [r["step_seconds"] for r in rows if r.get("step_seconds") is not None]
        entry["step_seconds"] = statistics.fmean(steps) if steps else None
        summary.append(entry)
    return summary


def headline_ratios(summary: List[Dict[str, Any]], tolerance_db: float = 0.5) -> Dict[str, Dict[str, Any]]:
    """Per method: the smallest mean file whose mean test PSNR is within ``tolerance_db`` of the
    baseline's, and the baseline's mean bytes over that file's (the ratio at near-baseline quality).
    The baseline is the ``plain`` point (the method's defaults, tuned on val)."""
    baseline = next((r for r in summary if r["point"] == BASELINE.name), None)
    if baseline is None:
        return {}
    out: Dict[str, Dict[str, Any]] = {}
    for method in sorted({r["method"] for r in summary} - {baseline["method"]}):
        rows = [r for r in summary if r["method"] == method]
        good = [r for r in rows if r["psnr"] >= baseline["psnr"] - tolerance_db]
        if not good:
            best = max(rows, key=lambda r: r["psnr"])
            note = (f"no point within {tolerance_db} dB of the baseline's {baseline['psnr']:.2f} dB "
                    f"(best {best['psnr']:.2f} dB at {best['file_bytes']:,.0f} bytes)")  # fmt: skip
            out[method] = {"point": None, "ratio": None, "note": note}
            continue
        smallest = min(good, key=lambda r: r["file_bytes"])
        ratio = baseline["file_bytes"] / smallest["file_bytes"]
        note = (f"{ratio:.1f}x smaller than the fp16 baseline ({baseline['file_bytes']:,.0f} bytes, "
                f"{baseline['psnr']:.2f} dB) at {smallest['point']}: {smallest['file_bytes']:,.0f} bytes, "
                f"{smallest['psnr']:.2f} dB")  # fmt: skip
        out[method] = {"point": smallest["point"], "ratio": ratio, "note": note}
    return out


def pareto_front(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The points no other point beats on both bytes and test PSNR, by increasing bytes."""
    front: List[Dict[str, Any]] = []
    for row in sorted(rows, key=lambda r: (r["file_bytes"], -r["psnr"])):
        if not front or row["psnr"] > front[-1]["psnr"]:
            front.append(row)
    return front


def interpolate_log_bytes(front: List[Dict[str, Any]], size: float) -> Optional[float]:
    """Test PSNR of a curve at ``size`` bytes, linear in log bytes; None outside its span."""
    for left, right in zip(front, front[1:]):
        if left["file_bytes"] <= size <= right["file_bytes"]:
            t = math.log(size / left["file_bytes"]) / math.log(right["file_bytes"] / left["file_bytes"])
            return left["psnr"] + t * (right["psnr"] - left["psnr"])
    if front and math.isclose(size, front[0]["file_bytes"]):
        return front[0]["psnr"]
    return None


POSTHOC_FAMILIES = {"uniform": "plain-nerfacto (post-hoc)", "k-means": "kmeans-vq"}


def dominance_over_posthoc(summary: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """Whether each learned method's curve (the Pareto front of its mean points) lies above each
    post-hoc family's at every size both span: the smallest margin in dB (learned minus post-hoc)
    where the spans overlap, and the sizes it was checked at (the points of either curve)."""
    out: Dict[str, Dict[str, Any]] = {}
    for method in ("shacira-nerfacto", "vqad-nerfacto"):
        learned = pareto_front([r for r in summary if r["method"] == method])
        if len(learned) < 1:
            continue
        margins: Dict[str, Optional[float]] = {}
        for family, family_method in POSTHOC_FAMILIES.items():
            rows = [r for r in summary if r["method"] == family_method and r["point"] != "plain-fp32"]
            posthoc = pareto_front(rows)
            checks = []
            for row in posthoc:  # post-hoc points inside the learned curve's span
                value = interpolate_log_bytes(learned, row["file_bytes"])
                if value is not None:
                    checks.append(value - row["psnr"])
            for row in learned:  # learned points inside the post-hoc curve's span
                value = interpolate_log_bytes(posthoc, row["file_bytes"])
                if value is not None:
                    checks.append(row["psnr"] - value)
            margins[family] = min(checks) if checks else None
        verdicts = [f"{family}: " + ("no overlapping sizes" if m is None else f"smallest margin {m:+.2f} dB")
                    for family, m in margins.items()]  # fmt: skip
        out[method] = {"margins_db": margins, "note": "; ".join(verdicts)}
    return out


def plot_series(row: Dict[str, Any]) -> Optional[str]:
    """The plot line a point belongs to: its method; for SHACIRA its latent dim (one curve per D);
    for VQAD with a rate weight its bit width. None for the baseline's tuning runs (not plotted)."""
    flags = row.get("train_flags", {})
    if row["method"] == "shacira-nerfacto" and LATENT_DIM_FLAG in flags:
        return f"{row['method']} D={flags[LATENT_DIM_FLAG]}"
    if row["method"] == "vqad-nerfacto" and VQAD_RATE_WEIGHT_FLAG in flags:
        return f"{row['method']} b={flags.get('--pipeline.model.bits')} + rate"
    if row["kind"] == "trained" and row["method"] == BASELINE.method:
        return "plain-nerfacto (fp16)" if row["point"] == BASELINE.name else None
    return row["method"]


def plot_rate_distortion(summary: List[Dict[str, Any]], path: Path, scene: str) -> None:
    """Mean test PSNR against mean file bytes (log x), error bars one std over seeds, one line per series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    for series in sorted({plot_series(r) for r in summary} - {None}):
        rows = sorted((r for r in summary if plot_series(r) == series), key=lambda r: r["file_bytes"])
        style = "o-" if rows[0]["kind"] == "trained" and series != "plain-nerfacto (fp16)" else "s"
        axes.errorbar([r["file_bytes"] for r in rows], [r["psnr"] for r in rows], yerr=[r["psnr_std"] for r in rows],
                      fmt=style, capsize=2, label=series)  # fmt: skip
        for index, row in enumerate(rows):
            label = row["point"].removeprefix("plain-") if row["kind"] == "posthoc" else row["setting"]
            axes.annotate(label, (row["file_bytes"], row["psnr"]), textcoords="offset points",
                          xytext=(4, 4 if index % 2 == 0 else -11), fontsize=7)  # fmt: skip
    axes.set_xscale("log")
    axes.set_xlabel("file size (bytes, everything included)")
    axes.set_ylabel("PSNR (dB, test views, mean over seeds)")
    runs = max(r["runs"] for r in summary)
    devices = sorted({str(r["device"]) for r in summary})
    axes.set_title(f"rate-distortion, {scene} ({runs} seed(s); {'; '.join(devices)})", fontsize=9)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    lo = min(r["file_bytes"] for r in summary)
    hi = max(r["file_bytes"] for r in summary)
    axes.set_xlim(10 ** (math.log10(lo) - 0.1), 10 ** (math.log10(hi) + 0.1))
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


if __name__ == "__main__":
    tyro.cli(RdSweep).main()
