"""The image codec end to end: fit and write a file, decode it strip by strip, measure it.

Example:
    >>> source = open_pixels(Path("photo.png"))
    >>> data, _ = encode_picture(source, *PRESETS["fast"])
    >>> model, _ = decode_image(data)
    >>> for strip in decoded_strips(model): ...          # uint8 [h, W, C], top to bottom
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch

from nerfcompress.bitstream.quantized_tensors import MAX_PRECISION_BITS, quantized_bits, round_trip
from nerfcompress.entropy.coder import estimate_bits
from nerfcompress.image.codec import decode_image, encode_image, network_tensors, to_uint8
from nerfcompress.image.config import ImageModelConfig
from nerfcompress.image.model import IMAGE_DECODER_NORM_FLOOR, ImageModel
from nerfcompress.image.pixels import PixelSource
from nerfcompress.image.raster import raster_plan
from nerfcompress.image.train import Progress, TrainSettings, cosine_factor, fit, sample_loss
from nerfcompress.tables import ShaciraTable
from nerfcompress.tables.decoders import LinearDecoder

STRIP_PIXELS = 1 << 18
"""Pixels decoded at a time: with the model, this bounds the decoder's memory."""
MS_SSIM_MAX_PIXELS = 16_000_000
"""Larger pictures get PSNR only (MS-SSIM needs the whole picture in float)."""
MS_SSIM_MIN_SIDE = 161
"""pytorch-msssim's five scales with an 11-pixel window need sides above 160."""


def bits_per_pixel(num_bytes: int, num_pixels: int) -> float:
    """``8 * bytes / pixels``, the rate of a file."""
    return 8.0 * num_bytes / num_pixels


@torch.no_grad()
def quantize_network(
    model: ImageModel, loss_of_bits: Callable[[float], float], params: Optional[List[torch.Tensor]] = None
) -> List[int]:
    """Rounds the networks' tensors in place to their best precisions; returns them.

    Cool-chic's search (``coolchic/nnquant/``): greedy, tensor by tensor in file order, every
    precision of :func:`~nerfcompress.bitstream.quantized_tensors.round_trip` is applied (earlier
    tensors already rounded, later ones still float) and scored by ``loss_of_bits(bits)``, given
    the network's coded bits so far (the caller adds the distortion and the rest of the rate).

    Args:
        model: the trained model (its networks are modified in place).
        loss_of_bits: ``bits of the rounded tensors -> loss`` (lower is better); the context
            model's tensors change only the grid's bits, which the caller's loss must count.
        params: the tensors to search, in file order (default: every tensor of
            :func:`~nerfcompress.image.codec.network_tensors`).

    Returns:
        One precision per tensor searched, in their order.
    """
    chosen: List[int] = []
    coded_bits = 0.0
    for param in network_tensors(model) if params is None else params:
        original = param.detach().cpu().numpy().copy()
        best = None
        for precision in range(MAX_PRECISION_BITS + 1):
            param.copy_(torch.from_numpy(round_trip(original, precision)))
            bits = quantized_bits(original, precision)
            loss = loss_of_bits(coded_bits + bits)
            if best is None or loss < best[0]:
                best = (loss, precision, bits)
        _, precision, bits = best
        param.copy_(torch.from_numpy(round_trip(original, precision)))
        coded_bits += bits
        chosen.append(precision)
    return chosen


def _coded_bits(table: ShaciraTable, rows: slice) -> float:
    """Bits the file spends on ``rows`` of a SHACIRA table's latents coded with their own
    frequencies (as the file codes a level without a context model), tables and stream ends aside."""
    latents = table.integer_latents()[rows].cpu().numpy()
    return estimate_bits(latents, table.coding_tables(latents)) if len(latents) else 0.0


def fit_context(model: ImageModel, settings: TrainSettings) -> float:
    """Fits the model's context model to its (final, integer) latents; returns the seconds taken.

    The context model is fitted after training, not with it: trained jointly for the 300 steps the
    default preset then had, it lagged the per-level frequency tables it replaces (chelsea, lambda
    0.003: its code length 1.9x theirs on the second-finest level, the file at 0.535 bpp 30.97 dB
    against 0.585 bpp 32.17 dB without it), while fitted to the trained latents it codes them in
    14 % fewer bytes after 100 steps (BENCHMARKS.md, "Images")."""
    start = time.perf_counter()
    if model.context is None:
        return 0.0
    levels = model.context_levels()  # the latents do not change while it is fitted
    if not levels:
        return 0.0
    optimizer = torch.optim.Adam(model.context.parameters(), lr=settings.context_lr)
    for step in range(settings.context_steps):
        for group in optimizer.param_groups:
            group["lr"] = settings.context_lr * cosine_factor(step, settings.context_steps, settings.final_lr_ratio)
        bits = model.context_bits(CONTEXT_FIT_LATENTS, seed=settings.seed + step, levels=levels)
        optimizer.zero_grad(set_to_none=True)
        bits.backward()
        optimizer.step()
    return time.perf_counter() - start


@torch.no_grad()
def context_level_bits(model: ImageModel) -> Callable[[], float]:
    """``() -> bits`` the file spends on the context-coded levels under the model's context model
    as it stands, an estimate: each level with whichever of its own frequencies and the context
    model's code length is fewer (as :func:`~nerfcompress.entropy.context.encode_raster`
    chooses), that code length from at most :data:`CONTEXT_FIT_LATENTS` of the level's latents.
    The latents, their own tables' bits and the sampled positions are taken once: only the
    context model changes between calls (the precision search of its tensors)."""
    levels = []
    for table, level, rows, _ in _shacira_levels(model):
        width = table.level_widths[level]
        if width is None or model.context is None:
            continue
        latents = torch.round(table.latents[rows, 0])
        positions = None
        if len(latents) > CONTEXT_FIT_LATENTS:
            generator = torch.Generator().manual_seed(level)
            positions = torch.randint(len(latents), (CONTEXT_FIT_LATENTS,), generator=generator)
        levels.append((_coded_bits(table, rows), latents, width, table.context_level_base + level, positions))

    def bits() -> float:
        with torch.no_grad():
            return sum(min(own, float(model.context.rate_bits(*coded))) for own, *coded in levels)

    return bits


CONTEXT_FIT_LATENTS = 1 << 18
"""Latents a step of :func:`fit_context` (and each context code length of :func:`context_level_bits`)
looks at, drawn at random when the grid has more: bounds their cost on large pictures."""
ROUNDING_OFFSETS = (0.5, 0.25, -0.25)
"""Shifts of a level's latents tried before rounding (see :func:`choose_rounding_offsets`)."""
POST_HOC_LAMBDA_RATIO = 1 / 8
"""The rate weight of the decisions taken after training (rounding offsets, dead levels), as a
share of the training lambda; chosen at 300 steps (the default preset's then, not retuned for
its 900). At 300 steps the trained models trace a curve whose slope is about
1/6 of the lambda they were trained at (astronaut: d MSE / d bpp = 0.005 near 0.4 bpp at lambda
0.03); priced at lambda itself, those decisions cut bits that the curve buys back cheaper
(astronaut, lambda 0.03: 0.438 bpp 26.5 dB -> 0.233 bpp 23.4 dB; coffee, lambda 0.005: 0.99 bpp
30.3 dB -> 0.75 bpp 27.7 dB), while the failures they are for save far more than that (the
finest level's 22-24 KB of noise at lambda 0.08, at -0.5 dB or nothing)."""
HALF_INTEGER_DISTANCE = 0.4
"""A level's latents are bunched at half-integers when their mean distance to the nearest integer
is at least this (uniformly spread latents: 0.25; measured in the failure below: 0.47)."""


def _shacira_levels(model: ImageModel) -> List[Tuple[ShaciraTable, int, slice, float]]:
    """``(table, level in the table, its rows, its decoder norm)`` of every SHACIRA level, in grid order."""
    levels = []
    for table in model.tables:
        if isinstance(table, ShaciraTable):
            bounds = np.cumsum([0, *table.level_rows])
            norms = table.decoder.level_norms(len(table.level_rows)).tolist()
            for level, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
                levels.append((table, level, slice(int(a), int(b)), norms[level]))
    return levels


def _shift_level(table: ShaciraTable, level: int, rows: slice, kept: Tuple[torch.Tensor, dict], offset: float) -> None:
    """Sets level ``level`` (table rows ``rows``) to its ``kept`` latents and decoder state,
    shifted by ``offset`` with the decoder absorbing the shift."""
    latents, decoder_state = kept
    shift = torch.full((table.latent_dim,), offset)
    table.latents[rows] = latents - shift
    table.decoder.load_state_dict(decoder_state)
    table.decoder.absorb_offset(level, shift)
    table.clear_cache()


@torch.no_grad()
def choose_rounding_offsets(model: ImageModel, loss_of_grid_bits: Callable[[float], float]) -> List[float]:
    """Rounds each SHACIRA level whose latents are bunched at half-integers from the shift of
    :data:`ROUNDING_OFFSETS` (or none) that lowers the loss most, the decoder absorbing the shift;
    returns one shift per level.

    The noisy training rate is blind to where latents sit between two integers: a prior whose
    mass covers ``(-1, 0)`` makes latents near ``-1/2`` nearly free in training, while rounded
    they split between -1 and 0 at a bit each (measured: astronaut, lambda 0.08, the finest level's
    latents 0.47 on average from the nearest integer, 82 % of them at -1, 22.4 KB of the file).
    Shifting the level's latents by ``o`` before rounding and its decoder by ``o`` lattice steps
    changes nothing else (CompressAI codes latents around its prior's medians for the same reason).
    Levels of one table sharing one decoder keep their latents, and so do levels whose latents
    are not bunched: shifting those is a cut in rate that the lambda of the loss accepts but that
    lands below the curve the other lambdas trace (coffee, lambda 0.03: 0.20 bpp at 23.8 dB against
    0.32 bpp at 26.2 dB unshifted, where lambda 0.08 gives 0.12 bpp at 24.3 dB).

    Args:
        model: a trained model in eval mode (latents and decoders are modified in place).
        loss_of_grid_bits: ``coded bits of every grid level -> loss`` (lower is better).
    """
    levels = _shacira_levels(model)
    bits = [_coded_bits(table, rows) for table, _, rows, _ in levels]
    best = loss_of_grid_bits(sum(bits))
    chosen = [0.0] * len(levels)
    for index in reversed(range(len(levels))):
        table, level, rows, _ = levels[index]
        if isinstance(table.decoder, LinearDecoder) and len(table.level_rows) > 1:
            continue
        distance = (table.latents[rows] - table.latents[rows].round()).abs().mean()
        if not float(distance) >= HALF_INTEGER_DISTANCE:
            continue
        kept = table.latents[rows].clone(), copy.deepcopy(table.decoder.state_dict())
        for offset in ROUNDING_OFFSETS:
            _shift_level(table, level, rows, kept, offset)
            level_bits = _coded_bits(table, rows)
            loss = loss_of_grid_bits(sum(bits) - bits[index] + level_bits)
            if loss < best:
                best, chosen[index], bits[index] = loss, offset, level_bits
        _shift_level(table, level, rows, kept, chosen[index])
    return chosen


@torch.no_grad()
def switch_off_levels(
    model: ImageModel, loss_of_grid_bits: Callable[[float], float], dead_norm: float = IMAGE_DECODER_NORM_FLOOR
) -> List[int]:
    """Zeroes, finest level first, the latents of every dead SHACIRA level (decoder norm under
    ``dead_norm``) whose bits buy less than they cost; returns the levels switched off.

    Training prices the rate with noisy latents, which do not see a level whose decoder the rate
    term has shrunk to nothing while its rounded latents still take two values (measured: coffee,
    lambda 0.08, the finest level's decoder norm 2e-4 with 19 % of its latents at -1, 23.7 KB of the
    file's 27 KB). Here each such level is priced as the file codes it: it goes if
    ``loss_of_grid_bits`` (distortion of the model as it stands plus lambda times the grid's
    coded bits) falls with its latents at zero (a zero level codes in a few bytes; its decoder's
    shift still adds a constant). Live levels are left alone: zeroing one that training weighed
    lowers the loss at its lambda but lands below the curve the other lambdas trace (astronaut,
    lambda 0.012: 0.42 bpp at 26.2 dB against 0.53 bpp at 27.8 dB, ~0.8 dB under that curve).

    Args:
        model: a trained model in eval mode (its latents are modified in place).
        loss_of_grid_bits: ``coded bits of every grid level -> loss`` (lower is better).
        dead_norm: levels whose decoder norm is at least this are kept.
    """
    levels = _shacira_levels(model)
    bits = [_coded_bits(table, rows) for table, _, rows, _ in levels]
    best = loss_of_grid_bits(sum(bits))
    switched_off = []
    for level in reversed(range(len(levels))):
        table, _, rows, norm = levels[level]
        if norm >= dead_norm or not bool(torch.any(table.latents[rows].round() != 0)):
            continue  # alive (training weighed its bits), or already off
        kept = table.latents[rows].clone()
        table.latents[rows] = 0.0
        table.clear_cache()
        loss = loss_of_grid_bits(sum(bits) - bits[level])
        if loss < best:
            best, bits[level] = loss, 0.0
            switched_off.append(level)
        else:
            table.latents[rows] = kept
            table.clear_cache()
    return sorted(switched_off)


def encode_picture(
    source: PixelSource,
    config: ImageModelConfig,
    settings: TrainSettings,
    device: str = "cpu",
    progress: Optional[Progress] = None,
) -> Tuple[bytes, Dict[str, Any]]:
    """Fits a model to ``source``, chooses each level's rounding offset, switches off the dead
    levels not worth their bits, fits the context model, quantises the networks and writes the
    file, without the context model if that is shorter.

    Returns:
        ``(file bytes, info)`` with ``train_seconds``, ``total_seconds``, ``lambda``,
        ``rounding_offsets`` (:func:`choose_rounding_offsets`) and ``levels_switched_off``
        (:func:`switch_off_levels`), ``context_seconds`` (:func:`fit_context`) and
        ``context_coded`` (whether the file kept the context model).
    """
    start = time.perf_counter()
    model = fit(source, config, settings, device=device, progress=progress).cpu()
    train_seconds = time.perf_counter() - start
    lmbda = model.final_lambda
    mse = sample_loss(model, source)
    post_hoc_lambda = lmbda * POST_HOC_LAMBDA_RATIO
    post_hoc_loss = lambda bits: mse() + post_hoc_lambda * bits / source.num_pixels  # noqa: E731
    offsets = choose_rounding_offsets(model, post_hoc_loss)
    switched_off = switch_off_levels(model, post_hoc_loss)
    context_seconds = fit_context(model, settings)
    with torch.no_grad():
        grid_bits = float(model.rate_bits())  # the synthesis network's precisions do not change it
    tensors = network_tensors(model)
    synthesis = len(list(model.synthesis.parameters()))
    loss = lambda bits: mse() + lmbda * (bits + grid_bits) / source.num_pixels  # noqa: E731
    precisions = quantize_network(model, loss, tensors[:synthesis])
    if model.context is not None:  # its tensors change the context-coded levels' bits, not the picture
        level_bits = context_level_bits(model)
        precisions += quantize_network(model, lambda bits: bits + level_bits(), tensors[synthesis:])
    without = model.without_context() if model.context is not None else None  # before encode_image rounds again
    data = encode_image(model, precisions)
    context_coded = without is not None
    if without is not None:  # at the lowest rates its tensors can cost more than it saves
        plain = encode_image(without, precisions[: len(network_tensors(without))])
        if len(plain) < len(data):
            data, context_coded = plain, False
    return data, {
        "train_seconds": train_seconds,
        "total_seconds": time.perf_counter() - start,
        "lambda": lmbda,
        "rounding_offsets": offsets,
        "levels_switched_off": switched_off,
        "context_seconds": context_seconds,
        "context_coded": context_coded,
    }


@torch.no_grad()
def decoded_strips(model: ImageModel, strip_pixels: int = STRIP_PIXELS) -> Iterator[np.ndarray]:
    """The decoded picture as uint8 strips ``[h, W, C]``, top to bottom, ``h * W <= strip_pixels``
    (at least one row)."""
    table = model.table()
    rows_per_strip = max(1, strip_pixels // model.width)
    for start in range(0, model.height, rows_per_strip):
        end = min(start + rows_per_strip, model.height)
        channels = model.render_raster(raster_plan(model.grid, start, end), table)
        yield to_uint8(channels.t()).reshape(end - start, model.width, model.channels)


def _ms_ssim(decoded: np.ndarray, reference: np.ndarray) -> float:
    from pytorch_msssim import ms_ssim

    to_tensor = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].float()  # noqa: E731
    return float(ms_ssim(to_tensor(decoded), to_tensor(reference), data_range=255.0))


def evaluate(data: bytes, reference: PixelSource) -> Dict[str, Any]:
    """Decodes ``data`` and compares it with ``reference``: PSNR (dB, over all channels),
    MS-SSIM (when the picture allows), bpp of the file, decode seconds.

    Raises:
        BitstreamError: the file cannot be decoded.
        ValueError: the reference's size or channels differ from the file's picture.
    """
    start = time.perf_counter()
    model, header = decode_image(data)
    shape = (model.height, model.width, model.channels)
    if (reference.height, reference.width, reference.channels) != shape:
        raise ValueError(
            f"reference is {reference.width} x {reference.height} x {reference.channels}, "
            f"the file holds {model.width} x {model.height} x {model.channels}"
        )
    keep = reference.num_pixels <= MS_SSIM_MAX_PIXELS
    squared_error, row, kept = 0.0, 0, []
    for strip in decoded_strips(model):
        target = reference.strip(row, row + len(strip))
        squared_error += float(np.sum(np.square(strip.astype(np.float64) - target)))
        if keep:
            kept.append(strip)
        row += len(strip)
    decode_seconds = time.perf_counter() - start
    mse = squared_error / (reference.nbytes)
    psnr = math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)
    ms_ssim_value: Optional[float] = None
    if keep and min(model.height, model.width) >= MS_SSIM_MIN_SIDE:
        ms_ssim_value = _ms_ssim(np.concatenate(kept), reference.strip(0, reference.height))
    return {
        "method": header["method"],
        "width": model.width,
        "height": model.height,
        "channels": model.channels,
        "bytes": len(data),
        "bpp": bits_per_pixel(len(data), reference.num_pixels),
        "psnr": psnr,
        "ms_ssim": ms_ssim_value,
        "decode_seconds": decode_seconds,
    }
