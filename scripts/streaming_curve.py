"""Streaming curve: PSNR of a file's prefix against the bytes received, one point per level of detail.

For one dataset (the embedded synthetic scene when ``--data`` is not given) and each method, this
trains a model with coarse-to-fine (``--pipeline.model.coarse-to-fine-min-levels``) using the
flags of ``configs/demo.yaml``, exports it with ``ns-compress export``, and evaluates the prefix
that each level count needs (``ns-compress info`` lists them) with ``ns-compress eval
--prefix-bytes``. With ``--baseline`` (the default) it also trains each method without
coarse-to-fine and evaluates that file whole, so that the cost of coarse-to-fine on the full file
can be read off over several ``--seeds``. It writes ``SCENE-SPLIT.json``, a Markdown table
``SCENE-SPLIT.md`` and a plot ``SCENE-SPLIT.png`` (PSNR against bytes received, log x).

    .venv/bin/python scripts/streaming_curve.py                                   # synthetic scene, test views
    .venv/bin/python scripts/streaming_curve.py --data DATA --seeds 42 43 44      # curves for seed 42, cost on 3
    .venv/bin/python scripts/streaming_curve.py --data DATA --split val --min-levels 1 2 4   # choose on val

Resumable: every trained run, exported file and evaluated point is kept under ``--output-dir``
and not recomputed (delete a point's JSON, file or run directory to redo it); a point that fails
is reported and the others go on. Training runs ``ns-train`` in a subprocess as a user would;
export and eval run the ``ns-compress`` commands' own code in this process.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Literal, Optional, Tuple

import numpy as np
import tyro
import yaml
from PIL import Image
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ns_runs import flags_to_args  # noqa: E402

from nerfcompress.bitstream.container import read_container_index  # noqa: E402
from nerfcompress.bitstream.levels import level_prefix_bytes  # noqa: E402
from nerfcompress.scenes.synthetic import write_synthetic_scene  # noqa: E402

CONSOLE = Console()
REPO = Path(__file__).resolve().parent.parent
MIN_LEVELS_FLAG = "--pipeline.model.coarse-to-fine-min-levels"


@dataclass(frozen=True)
class Run:
    """One ns-train run: a method, a seed, and coarse-to-fine's minimum level count (None: off)."""

    method: str
    seed: int
    min_levels: Optional[int]
    tag: str = ""

    @property
    def name(self) -> str:
        """``c2f<min>-s<seed>`` or ``full-s<seed>`` (no coarse-to-fine), then ``-<tag>``."""
        kind = "full" if self.min_levels is None else f"c2f{self.min_levels}"
        return f"{kind}-s{self.seed}" + (f"-{self.tag}" if self.tag else "")


class PointFailed(Exception):
    """A run or point failed; the message says where to look."""


def extra_flag(text: str) -> Tuple[str, str]:
    """``"pipeline.model.x=3"`` -> ``("--pipeline.model.x", "3")``.

    Raises:
        ValueError: without ``=`` or a name.
    """
    name, equals, value = text.partition("=")
    if not equals or not name.strip("-"):
        raise ValueError(f"--extra-flags takes NAME=VALUE (e.g. pipeline.model.rate-weight=0.003), found {text!r}")
    return "--" + name.lstrip("-"), value


def background_psnr(data: Path, split: str, background: float = 1.0) -> Optional[float]:
    """Mean PSNR of an image of background colour alone against a Blender split's views (RGBA
    composited on that background), the score of a prefix that renders nothing; None for other
    dataset formats."""
    transforms = data / f"transforms_{split}.json"
    if not transforms.is_file():
        return None
    scores = []
    for frame in json.loads(transforms.read_text())["frames"]:
        path = data / f"{frame['file_path']}"
        path = path if path.suffix else path.with_suffix(".png")
        rgba = np.asarray(Image.open(path).convert("RGBA"), np.float64) / 255.0
        rgb = rgba[..., :3] * rgba[..., 3:] + background * (1.0 - rgba[..., 3:])
        mse = float(((rgb - background) ** 2).mean())
        scores.append(10 * np.log10(1.0 / max(mse, 1e-10)))
    return statistics.fmean(scores)


@dataclass
class StreamingCurve:
    """Train with coarse-to-fine, export, and evaluate every level-of-detail prefix of the file."""

    data: Optional[Path] = None
    """Dataset (Blender or nerfstudio format); default: configs/demo.yaml's synthetic scene in OUTPUT_DIR."""
    scene_name: Optional[str] = None
    """Label of the dataset in run and output names (default: the dataset directory's name)."""
    output_dir: Path = REPO / "outputs" / "streaming"
    """Runs, files, per-point results, tables and plots."""
    config: Path = REPO / "configs" / "demo.yaml"
    """Shared ns-train flags and per-method flags (and the synthetic scene's settings)."""
    methods: Tuple[str, ...] = ("shacira-nerfacto", "vqad-nerfacto")
    """Methods to train."""
    seeds: Tuple[int, ...] = (42,)
    """--machine.seed of the runs; every seed trains each method with (and, with --baseline, without) coarse-to-fine."""
    curve_seeds: Optional[Tuple[int, ...]] = None
    """Seeds whose coarse-to-fine files get every level evaluated (default: the first of --seeds); the others
    are evaluated whole."""
    min_levels: Tuple[int, ...] = (1,)
    """Coarse-to-fine minimum level counts to train (several: to choose one on --split val)."""
    baseline: bool = True
    """Also train each method without coarse-to-fine and evaluate its whole file (the cost of coarse-to-fine)."""
    split: Literal["test", "val"] = "test"
    """Views to evaluate on: test to report, val to choose settings on."""
    max_num_iterations: Optional[int] = None
    """Override the training steps of every run (default: the config's)."""
    extra_flags: Tuple[str, ...] = ()
    """More ns-train flags for every run, NAME=VALUE without the dashes (e.g. pipeline.model.rate-weight=0.003)."""
    tag: str = ""
    """Suffix of the run names, to keep runs with --extra-flags apart from the others."""

    def main(self) -> None:
        settings = yaml.safe_load(self.config.read_text())
        data = self.data if self.data is not None else self._synthetic_scene(settings["scene"])
        if not data.exists():
            CONSOLE.print(f"[bold red]streaming_curve:[/bold red] dataset {data} does not exist")
            sys.exit(2)
        scene = self.scene_name or (data.name if self.data is not None else "synthetic")
        curve_seeds = set(self.curve_seeds if self.curve_seeds is not None else self.seeds[:1])
        runs = [Run(m, s, k, self.tag) for m in self.methods for s in self.seeds for k in self.min_levels]
        if self.baseline:
            runs += [Run(m, s, None, self.tag) for m in self.methods for s in self.seeds]
        failures: Dict[str, str] = {}
        for run in runs:
            label = f"{run.method}/{run.name}"
            try:
                file = self._trained_file(run, data, scene, settings)
                every_level = run.min_levels is not None and run.seed in curve_seeds
                self._evaluate_levels(run, file, data, scene, every_level)
            except PointFailed as error:
                failures[label] = str(error)
                CONSOLE.print(f"[bold red]{label} failed:[/bold red] {error}")
            except Exception:  # one broken run must not lose the others
                failures[label] = traceback.format_exc(limit=3).strip().splitlines()[-1]
                CONSOLE.print(f"[bold red]{label} failed:[/bold red] {failures[label]}")
        points = [json.loads(p.read_text()) for p in sorted((self.output_dir / "points" / scene).rglob("*.json"))]
        points = [p for p in points if p["split"] == self.split]
        if points:
            self._write_outputs(scene, data, points)
        if failures:
            CONSOLE.print(f"[bold red]{len(failures)} run(s) failed[/bold red] (rerun to retry only them):")
            for label, error in failures.items():
                CONSOLE.print(f"  {label}: {error}")
            sys.exit(1)

    # ----------------------------------------------------------------------------- runs

    def _synthetic_scene(self, scene_settings: Dict[str, Any]) -> Path:
        scene = self.output_dir / "scenes" / "synthetic"
        if not (scene / "transforms_train.json").exists():
            write_synthetic_scene(scene, **scene_settings)
        return scene

    def _trained_file(self, run: Run, data: Path, scene: str, settings: Dict[str, Any]) -> Path:
        """The run's exported file; trains and exports what is not there yet."""
        run_dir = self.output_dir / "runs" / scene / run.method / run.name
        file = self.output_dir / "files" / scene / run.method / f"{run.name}.ncmp"
        if file.exists():
            return file
        if not list((run_dir / "nerfstudio_models").glob("step-*.ckpt")):
            flags = {**settings["train_flags"], **settings.get("method_flags", {}).get(run.method, {})}
            if self.max_num_iterations is not None:
                flags["--max-num-iterations"] = flags["--steps-per-save"] = self.max_num_iterations
            if run.min_levels is not None:
                flags[MIN_LEVELS_FLAG] = run.min_levels
            flags.update(extra_flag(text) for text in self.extra_flags)
            command = [
                str(Path(sys.executable).parent / "ns-train"), run.method, *flags_to_args(flags),
                "--machine.seed", str(run.seed),
                "--output-dir", str(self.output_dir / "runs"), "--experiment-name", scene,
                "--timestamp", run.name, "--data", str(data),
            ]  # fmt: skip
            log = self.output_dir / "logs" / scene / f"{run.method}-{run.name}.log"
            CONSOLE.print(f"{run.method}/{run.name}: training (log: {log})")
            seconds = _run(command, log)
            CONSOLE.print(f"{run.method}/{run.name}: trained in {seconds:.0f} s")
        from nerfcompress.cli.export import Export

        file.parent.mkdir(parents=True, exist_ok=True)
        _command(lambda: Export(load_config=run_dir / "config.yml", output=file).main(), "ns-compress export")
        return file

    def _evaluate_levels(self, run: Run, file: Path, data: Path, scene: str, every_level: bool) -> None:
        """Evaluates the prefix of each level count (only the whole file unless ``every_level``)."""
        from nerfcompress.cli.evaluate import Evaluate

        content = file.read_bytes()
        header, index = read_container_index(content)
        prefix_bytes = level_prefix_bytes(header["grids"], index)
        levels = range(1, len(prefix_bytes) + 1) if every_level else [len(prefix_bytes)]
        for level in levels:
            point = self.output_dir / "points" / scene / run.method / run.name / f"level{level:02d}-{self.split}.json"
            if point.exists():
                continue
            size = prefix_bytes[level - 1]
            output = point.with_suffix(".eval.tmp")
            output.parent.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            evaluate = Evaluate(
                file=file,
                data=data,
                output_path=output,
                prefix_bytes=size if size < len(content) else None,
                split=self.split,
            )
            _command(evaluate.main, "ns-compress eval")
            metrics = json.loads(output.read_text())["metrics"]
            output.unlink()
            result = {
                "method": run.method,
                "run": run.name,
                "seed": run.seed,
                "min_levels": run.min_levels,
                "tag": run.tag,
                "split": self.split,
                "levels": level,
                "most_levels": len(prefix_bytes),
                "decoded_levels": int(metrics["decoded_levels"]),
                "prefix_bytes": size,
                "file_bytes": len(content),
                "psnr": metrics["psnr"],
                "ssim": metrics["ssim"],
                "lpips": metrics.get("lpips"),
                "eval_seconds": time.perf_counter() - start,
                "file": str(file),
            }
            point.write_text(json.dumps(result, indent=2))
            CONSOLE.print(
                f"{run.method}/{run.name} level {level}/{len(prefix_bytes)}: {size:,} of {len(content):,} bytes "
                f"({100 * size / len(content):.1f}%), PSNR {metrics['psnr']:.2f} dB ({self.split})"
            )

    # --------------------------------------------------------------------------- outputs

    def _write_outputs(self, scene: str, data: Path, points: List[Dict[str, Any]]) -> None:
        stem = self.output_dir / f"{scene}-{self.split}"
        blank = background_psnr(data, self.split)
        stem.with_suffix(".json").write_text(json.dumps({"background_psnr": blank, "points": points}, indent=2))
        stem.with_suffix(".md").write_text(markdown_report(points, blank, scene, self.split))
        plot_streaming(points, blank, stem.with_suffix(".png"), f"{scene}, {self.split} views")
        CONSOLE.print(stem.with_suffix(".md").read_text())
        CONSOLE.print(f"Wrote {stem}.json, {stem.name}.md and {stem.name}.png")


def curves(points: List[Dict[str, Any]]) -> Dict[Tuple[str, str], List[Dict[str, Any]]]:
    """Coarse-to-fine runs with more than one level evaluated: ``(method, run) -> points by level``."""
    out: Dict[Tuple[str, str], List[Dict[str, Any]]] = {}
    for point in points:
        if point["min_levels"] is not None:
            out.setdefault((point["method"], point["run"]), []).append(point)
    return {key: sorted(rows, key=lambda p: p["levels"]) for key, rows in sorted(out.items()) if len(rows) > 1}


def whole_files(points: List[Dict[str, Any]]) -> Dict[Tuple[str, str, str], List[Dict[str, Any]]]:
    """Whole-file points ``(method, "c2f<min>"/"full", tag) -> one point per seed``."""
    out: Dict[Tuple[str, str, str], List[Dict[str, Any]]] = {}
    for point in points:
        if point["levels"] == point["most_levels"]:
            kind = "full" if point["min_levels"] is None else f"c2f{point['min_levels']}"
            out.setdefault((point["method"], kind, point["tag"]), []).append(point)
    return out


def _mean_std(values: List[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def markdown_report(points: List[Dict[str, Any]], blank: Optional[float], scene: str, split: str) -> str:
    """The curves level by level, then the whole files with and without coarse-to-fine by seed."""
    lines = [f"## Streaming curve: {scene}, {split} views", ""]
    if blank is not None:
        lines += [f"A blank (background-only) image scores {blank:.2f} dB on these views.", ""]
    for (method, run), rows in curves(points).items():
        lines += [f"### {method} {run}", "", "| levels | prefix bytes | share of file | PSNR | SSIM |",
                  "| ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
        for p in rows:
            share = 100 * p["prefix_bytes"] / p["file_bytes"]
            lines.append(
                f"| {p['levels']} | {p['prefix_bytes']:,} | {share:.1f}% | {p['psnr']:.2f} | {p['ssim']:.4f} |"
            )
        lines.append("")
    groups = whole_files(points)
    if groups:
        lines += ["### Whole files", "", "| method | training | tag | seeds | PSNR (mean ± std) | bytes (mean) |",
                  "| --- | --- | --- | --- | ---: | ---: |"]  # fmt: skip
        for (method, kind, tag), rows in sorted(groups.items()):
            rows = sorted(rows, key=lambda p: p["seed"])
            seeds = " ".join(str(p["seed"]) for p in rows)
            size = statistics.fmean(p["file_bytes"] for p in rows)
            psnr = _mean_std([p["psnr"] for p in rows])
            lines.append(f"| {method} | {kind} | {tag or '-'} | {seeds} | {psnr} | {size:,.0f} |")
        lines.append("")
        for (method, kind, tag), rows in sorted(groups.items()):
            base = {p["seed"]: p["psnr"] for p in groups.get((method, "full", tag), [])}
            paired = [p["psnr"] - base[p["seed"]] for p in rows if kind != "full" and p["seed"] in base]
            if paired:
                lines.append(
                    f"- {method} {kind}{' ' + tag if tag else ''}: whole file {_mean_std(paired)} dB against training "
                    f"without coarse-to-fine, paired over {len(paired)} seed(s)"
                )
        lines.append("")
    return "\n".join(lines)


def plot_streaming(points: List[Dict[str, Any]], blank: Optional[float], path: Path, title: str) -> None:
    """PSNR against bytes received (log x), one line per coarse-to-fine run, whole files without it as stars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    colours: Dict[str, Any] = {}
    for (method, run), rows in curves(points).items():
        line = axes.plot([p["prefix_bytes"] for p in rows], [p["psnr"] for p in rows], "o-", label=f"{method} {run}")
        colours.setdefault(method, line[0].get_color())
        for p in rows:
            axes.annotate(str(p["levels"]), (p["prefix_bytes"], p["psnr"]), textcoords="offset points",
                          xytext=(3, -9), fontsize=6)  # fmt: skip
    for (method, kind, tag), rows in sorted(whole_files(points).items()):
        if kind == "full":
            label = f"{method} without coarse-to-fine" + (f" {tag}" if tag else "")
            sizes, psnrs = [p["file_bytes"] for p in rows], [p["psnr"] for p in rows]
            axes.plot(sizes, psnrs, "*", markersize=9, color=colours.get(method), label=label)
    if blank is not None:
        axes.axhline(blank, color="grey", linestyle=":", linewidth=1, label="blank image")
    axes.set_xscale("log")
    axes.set_xlabel("bytes received (prefix of the file)")
    axes.set_ylabel("PSNR (dB)")
    axes.set_title(f"streaming: one point per level of detail ({title})", fontsize=9)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _run(command: List[str], log_path: Path) -> float:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log_path.open("w") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
        raise PointFailed(f"ns-train exited with {result.returncode}: {lines[-1] if lines else ''} (log: {log_path})")
    return time.perf_counter() - start


def _command(run: Callable[[], None], name: str) -> None:
    try:
        run()
    except SystemExit as exit_:  # the ns-compress commands exit 2 after printing one line
        if exit_.code not in (None, 0):
            raise PointFailed(f"{name} failed (its message is above)") from None


if __name__ == "__main__":
    tyro.cli(StreamingCurve).main()
