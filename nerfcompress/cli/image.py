"""``ns-compress image encode|decode|eval``: the SHACIRA / VQAD image codec.

Imports only the image layer (no nerfstudio), so these commands start as fast as torch loads.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Iterator, Literal, Optional, Tuple, Union

import tyro
from rich.console import Console

from nerfcompress.cli.errors import CommandError, one_line_errors, readable_file, writable_file
from nerfcompress.image.pixels import DEFAULT_MAX_MEGAPIXELS, ImageInputError

DEFAULT_LAMBDA = 2e-3


@contextlib.contextmanager
def _picture_errors() -> Iterator[None]:
    try:
        yield
    except ImageInputError as exc:
        raise CommandError(str(exc)) from exc


def vqad_stride_for(target_bpp: float, bits: int) -> float:
    """VQAD's finest stride whose index bits come to about ``target_bpp`` (an estimate).

    A grid over ``H x W`` pixels with per-level scale 2 stores about ``4/3 * H * W / stride**2``
    rows of ``b`` bits, about 0.8 of that once range-coded."""
    return max(0.25, math.sqrt(4.0 / 3.0 * 0.8 * bits / target_bpp))


@dataclass
class ImageEncode:
    """Fit a SHACIRA or VQAD model to PHOTO and write it as one compressed file."""

    photo: tyro.conf.Positional[Path]
    """The picture: 8-bit grayscale, RGB or RGBA PNG/JPEG/TIFF, or a uint8 .npy [H, W, C]."""
    output: Annotated[Path, tyro.conf.arg(aliases=("-o",))]
    """The compressed file to write (.ncmp)."""
    method: Literal["shacira", "vqad"] = "shacira"
    """shacira: entropy-coded integer latents; vqad: coded codebook indices."""
    lmbda: Annotated[Optional[float], tyro.conf.arg(name="lambda")] = None
    """Rate weight: loss = MSE + lambda * bpp (default 2e-3). SHACIRA only; VQAD's rate is set by its grid."""
    target_bpp: Optional[float] = None
    """Aim at this bpp instead: SHACIRA adapts lambda while training, VQAD sizes its grid (both estimates)."""
    preset: Literal["fast", "best"] = "fast"
    """fast: the default (7 levels, MLP 16-16, 900 steps); best: 8 levels, MLP 24-24, 1200 steps (measured at
    300 steps of fast, and no better than it on the one photo then tried, see BENCHMARKS.md)."""
    steps: Optional[int] = None
    """Override the preset's training steps."""
    num_levels: Optional[int] = None
    """Override the preset's grid levels."""
    finest_stride: Optional[float] = None
    """Override the pixels per vertex of the finest level (1: one vertex per pixel)."""
    log2_hashmap_size: Optional[int] = None
    """Override the most rows of a level (larger levels are hashed): bounds the model for gigapixels."""
    hidden: Optional[Tuple[int, ...]] = None
    """Override the synthesis MLP's hidden widths."""
    context: bool = True
    """SHACIRA: code the dense levels' latents with the preset's context model (fitted to them after
    training, predicting each latent from its decoded neighbours); --no-context codes each level
    under its own frequency table."""
    batch_pixels: Optional[int] = None
    """Pixels per training step; larger pictures train on random batches of this many pixels."""
    device: Literal["cpu", "cuda"] = "cpu"
    alpha: Literal["keep", "drop"] = "keep"
    """An alpha channel is coded as one more channel (keep) or discarded (drop)."""
    convert: bool = False
    """Convert palette, bilevel and CMYK pictures to 8-bit RGB(A) or grayscale (otherwise they are refused)."""
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS
    """Refuse larger pictures."""
    seed: int = 0

    def main(self) -> None:
        """Train, write the file, print its size and the training time."""
        with one_line_errors():
            if self.lmbda is not None and self.target_bpp is not None:
                raise CommandError("pass --lambda or --target-bpp, not both")
            if self.lmbda is not None and self.method == "vqad":
                raise CommandError("VQAD has no rate weight; set its rate with --target-bpp")
            writable_file(self.output)
            import torch

            if self.device == "cuda" and not torch.cuda.is_available():
                raise CommandError("--device cuda was asked for but torch sees no CUDA device; use --device cpu")
            from nerfcompress.image.model import checked_grid
            from nerfcompress.image.pipeline import bits_per_pixel, encode_picture
            from nerfcompress.image.pixels import open_pixels
            from nerfcompress.image.train import preset

            with _picture_errors():
                source = open_pixels(self.photo, self.alpha, self.convert, self.max_megapixels)
            config, settings = preset(self.preset, self.method)
            if not self.context:
                config = replace(config, context_hidden=())
            if self.method == "vqad" and self.target_bpp is not None:
                config = replace(config, finest_stride=vqad_stride_for(self.target_bpp, config.bits))
            overrides = {
                "num_levels": self.num_levels,
                "finest_stride": self.finest_stride,
                "log2_hashmap_size": self.log2_hashmap_size,
                "hidden": self.hidden,
            }
            try:
                config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
                checked_grid(config, source.height, source.width)
            except ValueError as exc:
                raise CommandError(f"the model settings do not fit this picture ({exc})") from exc
            settings = replace(
                settings,
                lmbda=DEFAULT_LAMBDA if self.lmbda is None else self.lmbda,
                target_bpp=self.target_bpp if self.method == "shacira" else None,
                steps=self.steps or settings.steps,
                batch_pixels=self.batch_pixels or settings.batch_pixels,
                seed=self.seed,
            )
            console = Console()
            console.print(
                f"{self.photo}: {source.width} x {source.height} x {source.channels}, {self.method}, "
                f"preset {self.preset}, {settings.steps} steps"
            )
            with _training_progress(console, settings.steps) as progress:
                data, info = encode_picture(source, config, settings, self.device, progress)
            self.output.write_bytes(data)
        console.print(
            f"wrote {self.output}: {len(data):,} bytes, {bits_per_pixel(len(data), source.num_pixels):.4f} bpp "
            f"(training {info['train_seconds']:.1f} s, total {info['total_seconds']:.1f} s, "
            f"lambda {info['lambda']:.3g})"
        )


@contextlib.contextmanager
def _training_progress(console: Console, steps: int):
    """A rich progress bar with live PSNR and estimated bpp; yields the ``progress`` callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("PSNR {task.fields[psnr]:.2f} dB  bpp~{task.fields[bpp]:.3f} (grid, estimated)"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("training", total=steps, psnr=0.0, bpp=0.0)

        def update(step: int, metrics: dict) -> None:
            bar.update(task, completed=step + 1, psnr=metrics["psnr"], bpp=metrics["bpp_estimate"])

        yield update


@dataclass
class ImageDecode:
    """Decode an image file strip by strip into a PNG (or a .npy array)."""

    file: tyro.conf.Positional[Path]
    """The compressed file (.ncmp)."""
    output: Annotated[Path, tyro.conf.arg(aliases=("-o",))]
    """The picture to write: .png or .npy."""

    def main(self) -> None:
        """Decode and write."""
        import time

        with one_line_errors():
            data = readable_file(self.file)
            if self.output.suffix.lower() not in (".png", ".npy"):
                raise CommandError(f"output must end in .png or .npy, found {self.output.name}")
            writable_file(self.output)
            from nerfcompress.image.codec import decode_image
            from nerfcompress.image.pipeline import decoded_strips
            from nerfcompress.image.writers import write_strips

            start = time.perf_counter()
            model, _ = decode_image(data)
            write_strips(self.output, model.height, model.width, model.channels, decoded_strips(model))
        seconds = time.perf_counter() - start
        Console().print(
            f"wrote {self.output}: {model.width} x {model.height} x {model.channels} in {seconds:.2f} s "
            f"({seconds / (model.height * model.width / 1e6):.3f} s per megapixel)"
        )


@dataclass
class ImageEval:
    """Decode an image file and compare it with the original: PSNR, MS-SSIM, bpp = 8 x file bytes / pixels."""

    file: tyro.conf.Positional[Path]
    """The compressed file (.ncmp)."""
    reference: Path
    """The original picture."""
    alpha: Literal["keep", "drop"] = "keep"
    """Read the reference's alpha as the encoder did."""
    convert: bool = False
    """Convert the reference as the encoder did."""
    output_path: Optional[Path] = None
    """Also write the metrics here as JSON."""
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS

    def main(self) -> None:
        """Evaluate and print the metrics as JSON."""
        with one_line_errors():
            data = readable_file(self.file)
            if self.output_path is not None:
                writable_file(self.output_path)
            from nerfcompress.image.pipeline import evaluate
            from nerfcompress.image.pixels import open_pixels

            with _picture_errors():
                reference = open_pixels(self.reference, self.alpha, self.convert, self.max_megapixels)
            try:
                metrics = evaluate(data, reference)
            except ValueError as exc:
                if type(exc) is not ValueError:
                    raise
                raise CommandError(str(exc)) from exc
            text = json.dumps({"file": str(self.file), "reference": str(self.reference), **metrics}, indent=2)
            if self.output_path is not None:
                self.output_path.write_text(text, encoding="utf8")
        Console().print_json(text)


ImageCommands = Union[
    Annotated[ImageEncode, tyro.conf.subcommand("encode")],
    Annotated[ImageDecode, tyro.conf.subcommand("decode")],
    Annotated[ImageEval, tyro.conf.subcommand("eval")],
]


def image_command(
    command: tyro.conf.OmitSubcommandPrefixes[ImageCommands],
) -> Union[ImageEncode, ImageDecode, ImageEval]:
    """The SHACIRA / VQAD image codec: encode a picture, decode a file, evaluate it against the original."""
    return command
