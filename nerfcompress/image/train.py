"""Fitting an image model to one picture: loss = MSE + lambda * bpp, annealed rounding, cosine LR.

Schedule (a pure function of the step): SHACIRA's latents are soft-rounded with noise (the
annealed Gumbel rounding of :mod:`nerfcompress.tables.rounding`) for the first
``1 - hard_fraction`` of the steps and rounded hard for the rest, where the latents stay
where they are (``freeze_hard_latents``) and the networks, decoders and priors learn the picture
from the latents as the file will store them; every learning rate follows a cosine from its
initial value to ``final_lr_ratio`` of it.
The rate is the grid's estimated bits (the learned priors) over the picture's pixels.

A picture of at most ``batch_pixels`` pixels is rendered whole at every step (raster
interpolation); a larger one trains on random pixel batches read from its (memory-mapped)
source. ``target_bpp`` instead of a fixed lambda adapts lambda during the soft phase so that
the estimated grid bpp approaches the target (an estimate: the file's bpp also counts the
network, coding tables and header).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch

from nerfcompress.image.config import ImageModelConfig
from nerfcompress.image.model import ImageModel
from nerfcompress.image.pixels import PixelSource
from nerfcompress.image.raster import raster_plan
from nerfcompress.tables import RoundingSchedule

Progress = Callable[[int, Dict[str, float]], None]


@dataclass(frozen=True)
class TrainSettings:
    """How long and how fast to fit."""

    steps: int = 600
    lmbda: float = 1e-3
    """Weight of the grid's bits per pixel in the loss (MSE on [0, 1] samples)."""
    target_bpp: Optional[float] = None
    """Adapt lambda towards this estimated grid bpp instead of a fixed lambda."""
    network_lr: float = 1e-2
    latent_lr: float = 2e-2
    """SHACIRA latents (divided by the decoder norm, as the tables ask)."""
    decoder_lr: float = 1e-2
    """SHACIRA decoders; VQAD logits and codebooks."""
    prior_lr: float = 1e-2
    context_steps: int = 300
    """Adam steps that fit the context model to the trained latents (``context_hidden`` set)."""
    context_lr: float = 3e-2
    final_lr_ratio: float = 0.02
    hard_fraction: float = 0.1
    """Share of the steps rounded hard at the end."""
    freeze_hard_latents: bool = True
    """Hold the latents still while training rounds hard; False: they go on learning through a
    straight-through gradient. Rounded hard, moving latents undid what the soft phase had
    reached: on hopper at lambda 2e-3 the hard-rounded picture went from 31.41 dB at the phase's
    start to 30.79 dB at its end; held still, the file came out at 31.44 dB (0.62 bpp against
    0.58), +0.29 to +0.35 dB against WebP on three validation photos (BENCHMARKS.md, "Images")."""
    temperature_start: float = 0.5
    temperature_end: float = 0.05
    batch_pixels: int = 1 << 20
    seed: int = 0
    log_every: int = 10

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, found {self.steps}")
        if not self.lmbda >= 0:
            raise ValueError(f"lambda must be >= 0, found {self.lmbda}")
        if self.target_bpp is not None and not self.target_bpp > 0:
            raise ValueError(f"target bpp must be > 0, found {self.target_bpp}")
        if not 0 <= self.hard_fraction < 1:
            raise ValueError(f"hard_fraction must be in [0, 1), found {self.hard_fraction}")

    @property
    def schedule(self) -> RoundingSchedule:
        end = max(1, round(self.steps * (1 - self.hard_fraction)))
        return RoundingSchedule(self.temperature_start, self.temperature_end, 0, end)


PRESETS: Dict[str, tuple] = {
    "fast": (ImageModelConfig(num_levels=7, hidden=(16, 16), context_hidden=(16,)), TrainSettings(steps=900)),
    "best": (ImageModelConfig(num_levels=8, hidden=(24, 24), context_hidden=(16,)), TrainSettings(steps=1200)),
}
"""``name -> (model settings, training settings)``; ``fast`` is the default. Its 900 steps were
chosen on photos outside the reported set: textured ones are short of steps (hopper, lambda 5e-3:
+1.5 dB at 0.29 bpp over 300 steps' curve; 1,500 steps no better), smooth ones are not
(immunohistochemistry: +0.1 dB); BENCHMARKS.md, "Images"."""


def preset(name: str, method: str = "shacira") -> Tuple[ImageModelConfig, TrainSettings]:
    """Preset ``name`` for ``method``: VQAD has no context model (its indices are coded apart).

    Raises:
        KeyError: an unknown preset.
    """
    config, settings = PRESETS[name]
    return replace(config, method=method, context_hidden=config.context_hidden if method == "shacira" else ()), settings


def cosine_factor(step: int, steps: int, final_ratio: float) -> float:
    """Learning-rate multiplier at ``step``: 1 at step 0, ``final_ratio`` at the last step."""
    progress = min(step / max(steps - 1, 1), 1.0)
    return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _parameter_groups(model: ImageModel, settings: TrainSettings) -> list:
    groups = [{"params": list(model.synthesis.parameters()), "lr": settings.network_lr, "scale_of": None}]
    lrs = {"latents": settings.latent_lr, "grids": settings.decoder_lr, "entropy": settings.prior_lr}
    for table in model.tables:
        for name, params in table.parameter_groups().items():
            groups.append({"params": params, "lr": lrs[name], "scale_of": (table, name)})
    for group in groups:
        group["base_lr"] = group["lr"]
    return groups


class _Batches:
    """Targets of each step: the whole picture (float, in memory) or random pixel batches."""

    def __init__(self, model: ImageModel, source: PixelSource, settings: TrainSettings, device: torch.device):
        self.source, self.device = source, device
        self.whole = source.num_pixels <= settings.batch_pixels
        self.batch = min(settings.batch_pixels, source.num_pixels)
        self.rng = np.random.default_rng(settings.seed)
        if self.whole:
            self.plan = raster_plan(model.grid)
            self.target = _planes(source).to(device)

    def render_and_target(self, model: ImageModel, table: torch.Tensor):
        """``(prediction, target)`` of one step, both ``[C, N]`` (whole) or ``[N, C]`` (a batch)."""
        if self.whole:
            return model.render_raster(self.plan, table), self.target
        indices = np.sort(self.rng.integers(0, self.source.num_pixels, self.batch))  # sorted: page-friendly reads
        target = torch.from_numpy(self.source.gather(indices)).to(self.device).float().div_(255.0)
        return model.render_pixels(torch.from_numpy(indices), table), target


def _planes(source: PixelSource) -> torch.Tensor:
    """The whole picture as channel planes ``[C, H * W]`` in [0, 1]."""
    flat = source.strip(0, source.height).reshape(-1, source.channels)
    return torch.from_numpy(np.ascontiguousarray(flat.T)).float().div_(255.0)


def fit(
    source: PixelSource,
    config: ImageModelConfig,
    settings: TrainSettings,
    device: str = "cpu",
    progress: Optional[Progress] = None,
) -> ImageModel:
    """Trains an image model on ``source``; returns it in eval mode (latents not yet rounded in place).

    ``progress(step, metrics)`` is called every ``log_every`` steps and at the last one with
    ``psnr`` (of the step's batch, dB), ``bpp_estimate`` (grid bits over pixels, estimated),
    ``lambda``, ``seconds``.
    """
    torch.manual_seed(settings.seed)
    dev = torch.device(device)
    model = ImageModel(config, source.height, source.width, source.channels, settings.schedule).to(dev)
    groups = _parameter_groups(model, settings)
    optimizer = torch.optim.Adam([{"params": g["params"], "lr": g["lr"]} for g in groups])
    batches = _Batches(model, source, settings, dev)
    lmbda = settings.lmbda
    soft_steps = settings.schedule.anneal_end_step
    start = time.perf_counter()
    model.train()
    for step in range(settings.steps):
        model.set_step(step)
        factor = cosine_factor(step, settings.steps, settings.final_lr_ratio)
        hold_latents = settings.freeze_hard_latents and settings.schedule.hard_rounding(step)
        for group, spec in zip(optimizer.param_groups, groups):
            scale = 1.0
            if spec["scale_of"] is not None:
                table, name = spec["scale_of"]
                scale = table.learning_rate_scales().get(name, 1.0)
                if name == "latents" and hold_latents:
                    scale = 0.0
            group["lr"] = spec["base_lr"] * factor * scale
        table = model.table()
        prediction, target = batches.render_and_target(model, table)
        mse = torch.mean(torch.square(prediction - target))
        bpp = model.rate_bits() / model.num_pixels
        loss = mse + lmbda * bpp
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if settings.target_bpp is not None and step < soft_steps:
            # Multiplicative controller on the estimated rate: too many bits -> larger lambda.
            lmbda *= math.exp(0.05 * (float(bpp.detach()) / settings.target_bpp - 1.0))
            lmbda = min(max(lmbda, 1e-6), 1.0)
        if progress is not None and (step % settings.log_every == 0 or step == settings.steps - 1):
            progress(
                step,
                {
                    "psnr": -10.0 * math.log10(max(float(mse.detach()), 1e-12)),
                    "bpp_estimate": float(bpp.detach()),
                    "lambda": lmbda,
                    "seconds": time.perf_counter() - start,
                },
            )
    model.eval()
    model.final_lambda = lmbda
    return model


def sample_loss(model: ImageModel, source: PixelSource, max_pixels: int = 1 << 18, seed: int = 1) -> Callable:
    """``() -> MSE`` of the model (eval mode) on the whole picture or a fixed random sample."""
    if source.num_pixels <= max_pixels:
        plan = raster_plan(model.grid)
        target = _planes(source)

        def mse() -> float:
            with torch.no_grad():
                return float(torch.mean(torch.square(model.render_raster(plan).clamp(0, 1) - target)))

        return mse
    indices = np.sort(np.random.default_rng(seed).integers(0, source.num_pixels, max_pixels))
    target = torch.from_numpy(source.gather(indices)).float() / 255
    flat = torch.from_numpy(indices)

    def mse_sampled() -> float:
        with torch.no_grad():
            return float(torch.mean(torch.square(model.render_pixels(flat).clamp(0, 1) - target)))

    return mse_sampled
