"""Rate-distortion of the image codec against JPEG (4:2:0, 4:4:4), WebP and AVIF on scikit-image's photos.

For each photo (scikit-image ships them offline) this encodes SHACIRA at several rate weights and
VQAD at several target rates with the image codec (real files, bpp = 8 x file bytes / pixels),
and Pillow's JPEG, WebP (method 6) and AVIF over their quality range; then it reports

* each codec's PSNR at 0.25 / 0.5 / 0.75 bpp per photo, with the codec's quality bisected to
  bracket the rate and PSNR interpolated linearly in log-bpp between the two bracketing points
  (the image codec: between its two nearest RD points; no extrapolation), and the means; points
  that another point dominates (more bits, less PSNR) are left out, as no user would pick them;
* BD-rate against WebP over 0.25-0.75 bpp (the ``bjontegaard`` package, Akima), per photo and
  mean, with WebP's anchors bisected at 0.25, 0.375, 0.5, 0.625 and 0.75 bpp;
* encode seconds per photo, MS-SSIM of every point, and ``rd.png`` (one panel per photo).

    .venv/bin/python scripts/image_rd.py --output-dir outputs/image_rd
    .venv/bin/python scripts/image_rd.py --photos astronaut --lambdas 0.004 --methods shacira

Resumable: each image-codec point is saved under ``OUTPUT_DIR/points/`` and not recomputed.
"""

from __future__ import annotations

import io
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Literal, Optional, Sequence, Tuple

import numpy as np
import tyro
from rich.console import Console
from rich.table import Table

CONSOLE = Console()
TARGETS = (0.25, 0.5, 0.75)
ANCHORS = (0.25, 0.375, 0.5, 0.625, 0.75)
CLASSICAL = ("jpeg420", "jpeg444", "webp", "avif")
QUALITY_RANGE = {"jpeg420": (1, 95), "jpeg444": (1, 95), "webp": (0, 100), "avif": (0, 100)}
KODAK_CONTEXT = {  # published Kodak means (PSNR at 0.25 / 0.5 bpp), another image set
    "JPEG": (24.7, 29.0),
    "WebP": (28.6, 31.3),
    "BPG-444": (30.3, 33.3),
    "VTM": (31.3, 34.4),
    "C3": (30.9, 34.2),
    "Cool-chic 5.0": (31.5, 34.7),
}

Point = Dict[str, float]


def psnr(decoded: np.ndarray, reference: np.ndarray) -> float:
    mse = float(np.mean(np.square(decoded.astype(np.float64) - reference)))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def ms_ssim(decoded: np.ndarray, reference: np.ndarray) -> float:
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    to_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float()  # noqa: E731
    return float(_ms_ssim(to_tensor(decoded), to_tensor(reference), data_range=255.0))


def classical_bytes(photo: np.ndarray, codec: str, quality: int) -> bytes:
    """``photo`` (uint8 ``[H, W, 3]``) written by Pillow with ``codec`` at ``quality``."""
    from PIL import Image

    buffer = io.BytesIO()
    image = Image.fromarray(photo)
    if codec.startswith("jpeg"):
        image.save(buffer, "JPEG", quality=quality, subsampling=2 if codec == "jpeg420" else 0, optimize=True)
    elif codec == "webp":
        image.save(buffer, "WEBP", quality=quality, method=6)
    elif codec == "avif":
        image.save(buffer, "AVIF", quality=quality)
    else:
        raise ValueError(f"unknown codec {codec!r}")
    return buffer.getvalue()


def classical_point(photo: np.ndarray, codec: str, quality: int) -> Point:
    from PIL import Image

    start = time.perf_counter()
    data = classical_bytes(photo, codec, quality)
    seconds = time.perf_counter() - start
    decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    bpp = 8.0 * len(data) / (photo.shape[0] * photo.shape[1])
    return {"quality": quality, "bpp": bpp, "psnr": psnr(decoded, photo), "encode_seconds": seconds}


def bracket_quality(rate_of: Callable[[int], Point], target: float, lo: int, hi: int) -> Tuple[Point, Point]:
    """Bisects an integer quality (rate increasing with it) for the two points around ``target`` bpp.

    Returns ``(below, above)``; both are the same point when the range does not reach ``target``."""
    low, high = rate_of(lo), rate_of(hi)
    if low["bpp"] >= target:
        return low, low
    if high["bpp"] <= target:
        return high, high
    while hi - lo > 1:
        mid = (lo + hi) // 2
        point = rate_of(mid)
        if point["bpp"] <= target:
            lo, low = mid, point
        else:
            hi, high = mid, point
    return low, high


def interpolate_log_bpp(points: Sequence[Point], target: float, key: str = "psnr") -> float:
    """``key`` at ``target`` bpp, linear in log-bpp between the nearest points around it; NaN
    outside the points' range (no extrapolation)."""
    ordered = sorted(points, key=lambda p: p["bpp"])
    for below, above in zip(ordered[:-1], ordered[1:]):
        if below["bpp"] <= target <= above["bpp"]:
            if above["bpp"] == below["bpp"]:
                return below[key]
            t = (math.log(target) - math.log(below["bpp"])) / (math.log(above["bpp"]) - math.log(below["bpp"]))
            return below[key] + t * (above[key] - below[key])
    return math.nan


def classical_curves(photo: np.ndarray, codec: str, targets: Sequence[float]) -> List[Point]:
    """The codec's points that bracket every target (bisected qualities), without duplicates."""
    cache: Dict[int, Point] = {}

    def rate_of(quality: int) -> Point:
        if quality not in cache:
            cache[quality] = classical_point(photo, codec, quality)
        return cache[quality]

    for target in targets:
        bracket_quality(rate_of, target, *QUALITY_RANGE[codec])
    return sorted(cache.values(), key=lambda p: p["bpp"])


def monotone(points: Sequence[Point]) -> List[Point]:
    """The points by increasing bpp whose PSNR beats every point of lower rate (BD-rate
    interpolates rate as a function of PSNR, which must increase strictly)."""
    kept: List[Point] = []
    for point in sorted(points, key=lambda p: (p["bpp"], -p["psnr"])):
        if not kept or (point["psnr"] > kept[-1]["psnr"] and point["bpp"] > kept[-1]["bpp"]):
            kept.append(point)
    return kept


def bd_rate_percent(anchor: Sequence[Point], test: Sequence[Point]) -> float:
    """BD-rate (%) of ``test`` against ``anchor``; NaN when the curves do not overlap enough."""
    import bjontegaard

    anchor, test = monotone(anchor), monotone(test)
    if len(test) < 2 or len(anchor) < 2:
        return math.nan
    try:
        return float(
            bjontegaard.bd_rate(
                [p["bpp"] for p in anchor],
                [p["psnr"] for p in anchor],
                [p["bpp"] for p in test],
                [p["psnr"] for p in test],
                method="akima",
                require_matching_points=False,
                min_overlap=0,
            )
        )
    except (ValueError, AssertionError):
        return math.nan


def load_photo(name: str) -> np.ndarray:
    import skimage.data

    photo = getattr(skimage.data, name)()
    if photo.ndim != 3 or photo.shape[2] != 3:
        raise ValueError(f"skimage.data.{name} is not an RGB photo (shape {photo.shape})")
    return photo


def codec_point(photo: np.ndarray, method: str, value: float, preset: str, steps: Optional[int]) -> Point:
    """One image-codec file: ``value`` is lambda (SHACIRA) or the target bpp (VQAD)."""
    from dataclasses import replace

    from nerfcompress.cli.image import vqad_stride_for
    from nerfcompress.image.pipeline import evaluate
    from nerfcompress.image.pixels import PixelSource
    from nerfcompress.image.train import preset as preset_for

    config, settings = preset_for(preset, method)
    if method == "vqad":
        config = replace(config, finest_stride=vqad_stride_for(value, config.bits))
    else:
        settings = replace(settings, lmbda=value)
    settings = replace(settings, steps=steps or settings.steps)
    from nerfcompress.image.pipeline import encode_picture

    source = PixelSource(photo)
    data, info = encode_picture(source, config, settings)
    metrics = evaluate(data, source)
    return {
        "value": value,
        "bpp": metrics["bpp"],
        "psnr": metrics["psnr"],
        "ms_ssim": metrics["ms_ssim"],
        "bytes": len(data),
        "encode_seconds": info["total_seconds"],
        "decode_seconds": metrics["decode_seconds"],
        "steps": settings.steps,
    }


@dataclass
class ImageRD:
    """Rate-distortion curves of the image codec against Pillow's JPEG, WebP and AVIF."""

    output_dir: Path = Path("outputs/image_rd")
    photos: Tuple[str, ...] = ("astronaut", "chelsea", "coffee", "rocket")
    methods: Tuple[Literal["shacira", "vqad"], ...] = ("shacira", "vqad")
    lambdas: Tuple[float, ...] = (0.002, 0.005, 0.012, 0.03, 0.08)
    """SHACIRA's rate weights."""
    vqad_bpps: Tuple[float, ...] = (0.3, 0.5, 0.8, 1.2, 2.0)
    """VQAD's target rates (they size its grid)."""
    preset: Literal["fast", "best"] = "fast"
    steps: Optional[int] = None
    """Override the preset's training steps."""
    cached_only: bool = False
    """Summarise the points already saved; encode nothing (photos without points are left out)."""

    def main(self) -> None:
        points_dir = self.output_dir / "points"
        points_dir.mkdir(parents=True, exist_ok=True)
        results: Dict[str, Dict[str, List[Point]]] = {}
        for name in self.photos:
            photo = load_photo(name)
            curves: Dict[str, List[Point]] = {}
            for codec in CLASSICAL:
                curves[codec] = classical_curves(photo, codec, sorted(set(TARGETS + ANCHORS)))
                for point in curves[codec]:
                    point["ms_ssim"] = None
            for method in self.methods:
                values = self.lambdas if method == "shacira" else self.vqad_bpps
                curves[method] = []
                for value in values:
                    path = points_dir / f"{name}-{method}-{self.preset}-{self.steps or 'preset'}-{value:g}.json"
                    if not path.exists() and self.cached_only:
                        continue
                    if not path.exists():
                        CONSOLE.print(f"{name}: {method} {value:g} ...")
                        path.write_text(json.dumps(codec_point(photo, method, value, self.preset, self.steps)))
                    point = json.loads(path.read_text())
                    curves[method].append(point)
                    CONSOLE.print(f"{name} {method} {value:g}: {point['bpp']:.3f} bpp, {point['psnr']:.2f} dB")
            if all(curves.get(method) for method in self.methods):
                results[name] = curves
        summary = summarise(results)
        (self.output_dir / "results.json").write_text(json.dumps({"curves": results, "summary": summary}, indent=1))
        plot(results, self.output_dir / "rd.png")
        print_summary(summary, results)


def summarise(results: Dict[str, Dict[str, List[Point]]]) -> Dict[str, Dict[str, float]]:
    """Per codec: mean PSNR at each target, mean BD-rate against WebP, mean encode seconds."""
    codecs = sorted({codec for curves in results.values() for codec in curves})
    summary: Dict[str, Dict[str, float]] = {}
    for codec in codecs:
        row: Dict[str, float] = {}
        for target in TARGETS:
            values = [interpolate_log_bpp(monotone(results[p][codec]), target) for p in results if codec in results[p]]
            row[f"psnr@{target}"] = statistics.fmean(values) if values else math.nan
        anchors = {p: [_webp_at(results[p]["webp"], t) for t in ANCHORS] for p in results}
        rates = [bd_rate_percent(anchors[p], results[p][codec]) for p in results if codec in results[p]]
        row["bd_rate_vs_webp"] = statistics.fmean(rates) if rates else math.nan
        row["encode_seconds"] = statistics.fmean(
            statistics.fmean(pt["encode_seconds"] for pt in results[p][codec]) for p in results if codec in results[p]
        )
        summary[codec] = row
    return summary


def _webp_at(points: List[Point], target: float) -> Point:
    return {"bpp": target, "psnr": interpolate_log_bpp(points, target)}


def print_summary(summary: Dict[str, Dict[str, float]], results: Dict[str, Dict[str, List[Point]]]) -> None:
    table = Table(title=f"mean over {', '.join(results)} (PSNR dB, log-bpp interpolation)")
    for column in ("codec", *(f"@{t} bpp" for t in TARGETS), "BD-rate vs WebP", "encode s / photo"):
        table.add_column(column, justify="left" if column == "codec" else "right")
    for codec, row in summary.items():
        table.add_row(
            codec,
            *(f"{row[f'psnr@{t}']:.2f}" for t in TARGETS),
            f"{row['bd_rate_vs_webp']:+.1f} %",
            f"{row['encode_seconds']:.2f}",
        )
    CONSOLE.print(table)
    CONSOLE.print(
        "published Kodak means (PSNR @0.25 / @0.5 bpp, context only): "
        + "; ".join(f"{name} {a} / {b}" for name, (a, b) in KODAK_CONTEXT.items())
    )


def plot(results: Dict[str, Dict[str, List[Point]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 4), squeeze=False)
    for axis, (name, curves) in zip(axes[0], results.items()):
        for codec, points in curves.items():
            ordered = sorted(points, key=lambda p: p["bpp"])
            style = "o-" if codec in ("shacira", "vqad") else ".--"
            axis.plot([p["bpp"] for p in ordered], [p["psnr"] for p in ordered], style, label=codec)
        axis.set(title=name, xlabel="bpp (8 x file bytes / pixels)", ylabel="PSNR (dB)", xscale="log", xlim=(0.1, 2.0))
        axis.grid(True, which="both", alpha=0.3)
    axes[0][0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    tyro.cli(ImageRD).main()
