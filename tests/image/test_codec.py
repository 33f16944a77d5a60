"""Tests for the image file: round trip, what is counted, and damaged or foreign files."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from nerfcompress.bitstream.container import read_container, split_level_section, write_container
from nerfcompress.bitstream.quantized_tensors import round_trip
from nerfcompress.errors import BitstreamError
from nerfcompress.image.codec import decode_image, encode_image, network_tensors
from nerfcompress.image.config import ImageModelConfig
from nerfcompress.image.pipeline import bits_per_pixel, decoded_strips, encode_picture, evaluate, fit_context
from nerfcompress.image.pixels import PixelSource
from nerfcompress.image.raster import raster_plan
from nerfcompress.image.train import TrainSettings, fit, sample_loss
from nerfcompress.tables.symbols import FloatPart


def _picture(height=24, width=30, channels=3):
    y, x = np.mgrid[0:height, 0:width]
    planes = [np.sin(x / 3.0 + c) * np.cos(y / 4.0) for c in range(channels)]
    return PixelSource((127.5 + 120 * np.stack(planes, -1)).astype(np.uint8))


CONFIGS = {
    "shacira": ImageModelConfig(num_levels=4, hidden=(8,)),
    "shacira-shared-prior": ImageModelConfig(num_levels=4, hidden=(8,), per_level_prior=False),
    "shacira-context": ImageModelConfig(num_levels=4, hidden=(8,), context_hidden=(8,)),
    "vqad": ImageModelConfig(method="vqad", num_levels=4, hidden=(8,), bits=3, features_per_level=2),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def encoded(request):
    source = _picture()
    data, _ = encode_picture(source, CONFIGS[request.param], TrainSettings(steps=120, lmbda=1e-3))
    return source, data


def test_decoded_picture_is_the_encoders_and_improves_on_grey(encoded):
    source, data = encoded
    model, header = decode_image(data)
    strips = list(decoded_strips(model, strip_pixels=100))  # several strips
    assert len(strips) > 1 and all(s.dtype == np.uint8 for s in strips)
    picture = np.concatenate(strips)
    assert picture.shape == (24, 30, 3)
    metrics = evaluate(data, source)
    grey = 10 * np.log10(255**2 / np.mean((source.strip(0, 24).astype(float) - 128) ** 2))
    assert metrics["psnr"] > grey + 3
    assert metrics["bpp"] == bits_per_pixel(len(data), 24 * 30)
    assert metrics["ms_ssim"] is None  # too small for five scales


def test_file_is_deterministic_to_decode(encoded):
    _, data = encoded
    first, second = decode_image(data)[0], decode_image(data)[0]
    plan = raster_plan(first.grid)
    with torch.no_grad():
        assert torch.equal(first.render_raster(plan), second.render_raster(plan))


def test_the_stored_latents_cost_at_most_their_rate_under_the_learned_prior():
    """The file codes the latents with their own frequencies, which cannot cost more than the
    prior's exact rate of the same integers beyond each level stream's end word and checksum."""
    source = _picture(40, 40)
    config = ImageModelConfig(num_levels=5, hidden=(8,), per_level_prior=False)
    settings = TrainSettings(steps=30, lmbda=1e-4)
    model = fit(source, config, settings)
    table = model.tables[0].eval()
    prior_bytes = float(table.rate_bits()) / 8
    _, sections = read_container(encode_picture(source, config, settings)[0])
    levels = [payload for name, payload in sections.items() if split_level_section(name) is not None]
    assert levels and sum(map(len, levels)) <= prior_bytes + 8 * len(levels) + 16
    assert sum(map(len, levels)) >= 0.3 * prior_bytes  # the same latents, not an empty stream


def test_damaged_and_foreign_files_raise_bitstream_errors(encoded):
    _, data = encoded
    flipped = bytearray(data)
    flipped[-3] ^= 0x40
    with pytest.raises(BitstreamError, match="CRC32"):
        decode_image(bytes(flipped))
    with pytest.raises(BitstreamError):
        decode_image(data[: len(data) // 2])
    with pytest.raises(BitstreamError, match="not an image"):
        decode_image(write_container({"method": "shacira-nerfacto"}, []))


@pytest.mark.parametrize(
    "field, value",
    [
        ("hidden", [100000]),
        ("num_levels", 40),
        ("log2_hashmap_size", 30),
        ("method", "jpeg"),
        ("extra", 1),
        ("decoder", "cubic"),
        ("context_hidden", [100000]),
        ("context_hidden", "16"),
        ("context_hidden", [8, 8, 8, 8]),
    ],
)
def test_hostile_model_settings_are_refused_before_anything_is_built(encoded, field, value):
    _, data = encoded
    header, sections = read_container(data)
    header["model"][field] = value
    with pytest.raises(BitstreamError, match="settings"):
        decode_image(write_container(header, list(sections.items())))


def test_a_file_written_before_the_decoder_field_reads_with_the_shared_decoder():
    source = _picture()
    config = replace(CONFIGS["shacira"], decoder="shared")
    data, _ = encode_picture(source, config, TrainSettings(steps=10))
    header, sections = read_container(data)
    del header["model"]["decoder"]
    model, _ = decode_image(write_container(header, list(sections.items())))
    assert model.config.decoder == "shared"
    plan = raster_plan(model.grid)
    with torch.no_grad():
        assert torch.equal(model.render_raster(plan), decode_image(data)[0].render_raster(plan))
    header["model"].update(decoder="per-level", latent_dim=2)  # a per-level decoder needs D == F
    with pytest.raises(BitstreamError, match="inconsistent"):
        decode_image(write_container(header, list(sections.items())))


def test_the_header_keeps_only_the_codings_the_model_settings_do_not_fix(encoded):
    _, data = encoded
    header, sections = read_container(data)
    vqad = header["method"] == "vqad-image"
    assert "grids" not in header and ("codings" in header) == vqad
    damaged = [
        {**header, "codings": bad} for bad in ("packed", [["packed"]], [["zip"]] * (len(sections) - 1))
    ]  # one per grid, besides "net"
    if vqad:
        damaged.append({key: value for key, value in header.items() if key != "codings"})
    for bad in damaged:
        with pytest.raises(BitstreamError, match="codings"):
            decode_image(write_container(bad, list(sections.items())))


def test_a_file_from_another_range_coder_release_is_refused_before_decoding(encoded):
    _, data = encoded
    header, sections = read_container(data)
    header["coder"] = {**header["coder"], "constriction": "0.1.0"}
    with pytest.raises(BitstreamError, match="constriction 0.1.0"):
        decode_image(write_container(header, list(sections.items())))
    del header["coder"]
    with pytest.raises(BitstreamError, match="coder"):
        decode_image(write_container(header, list(sections.items())))


def test_hostile_picture_size_is_refused(encoded):
    _, data = encoded
    header, sections = read_container(data)
    header["height"] = 10**9
    with pytest.raises(BitstreamError, match="picture"):
        decode_image(write_container(header, list(sections.items())))
    header["height"] = 48  # plausible, but the grid's rows no longer match the sections
    with pytest.raises(BitstreamError):
        decode_image(write_container(header, list(sections.items())))


def test_target_bpp_moves_lambda_towards_the_target():
    source = _picture()
    config = CONFIGS["shacira"]
    free = fit(source, config, TrainSettings(steps=60, lmbda=1e-4))
    with torch.no_grad():
        free_bpp = float(free.rate_bits()) / source.num_pixels
    aimed = fit(source, config, TrainSettings(steps=60, lmbda=1e-4, target_bpp=free_bpp / 3))
    assert aimed.final_lambda > 1e-4
    with torch.no_grad():
        assert float(aimed.rate_bits()) / source.num_pixels < 0.9 * free_bpp


@pytest.mark.parametrize("freeze", [True, False])
def test_the_latents_hold_still_once_training_rounds_hard_unless_told_otherwise(monkeypatch, freeze):
    from nerfcompress.image.model import ImageModel

    settings = TrainSettings(steps=40, lmbda=1e-3, hard_fraction=0.5, freeze_hard_latents=freeze)
    hard_start = settings.schedule.anneal_end_step
    seen = {}
    set_step = ImageModel.set_step

    def recording(model, step):
        if step == hard_start:  # before the first hard-rounded update
            seen["latents"] = [table.latents.detach().clone() for table in model.tables]
            seen["synthesis"] = [p.detach().clone() for p in model.synthesis.parameters()]
        set_step(model, step)

    monkeypatch.setattr(ImageModel, "set_step", recording)
    model = fit(_picture(), CONFIGS["shacira"], settings)
    latents_moved = any(not torch.equal(a, t.latents) for a, t in zip(seen["latents"], model.tables))
    assert latents_moved != freeze
    assert any(not torch.equal(a, p) for a, p in zip(seen["synthesis"], model.synthesis.parameters()))


def test_procedural_picture_is_the_same_strip_by_strip(tmp_path):
    from nerfcompress.image.procedural import procedural_strip, write_procedural

    path = write_procedural(tmp_path / "p.npy", 50, 70, strip_rows=16)
    assert np.array_equal(np.load(path), procedural_strip(0, 50, 70, 50))
    png = write_procedural(tmp_path / "p.png", 50, 70, strip_rows=7)
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(png)), np.load(path))


def test_network_precision_search_trades_distortion_for_bits():
    from nerfcompress.bitstream.quantized_tensors import quantized_bits
    from nerfcompress.image.codec import network_tensors
    from nerfcompress.image.model import ImageModel
    from nerfcompress.image.pipeline import quantize_network

    torch.manual_seed(0)
    x = torch.randn(256, 4)

    def model():
        torch.manual_seed(1)
        made = ImageModel(ImageModelConfig(num_levels=4, hidden=(8,)), 8, 8, 3)
        for param in made.synthesis.parameters():
            param.data.normal_()
        return made

    reference = model().synthesis(x).detach()
    chosen = {}
    for weight in (1e-2, 1e-7):
        made = model()
        loss = lambda bits: float((made.synthesis(x) - reference).square().mean()) + weight * bits  # noqa: E731
        precisions = quantize_network(made, loss)
        bits = sum(quantized_bits(p.detach().numpy(), q) for p, q in zip(network_tensors(made), precisions))
        chosen[weight] = (sum(precisions), bits, float((made.synthesis(x) - reference).square().mean()))
    assert chosen[1e-7][0] > chosen[1e-2][0] and chosen[1e-7][1] > chosen[1e-2][1]
    assert chosen[1e-7][2] < chosen[1e-2][2]


def test_a_level_whose_bits_buy_nothing_is_switched_off_and_the_others_are_kept():
    from nerfcompress.image.pipeline import switch_off_levels

    source = _picture(40, 40)
    model = fit(source, CONFIGS["shacira"], TrainSettings(steps=60, lmbda=1e-4))
    dead = model.tables[-1]
    with torch.no_grad():  # the finest level: noisy latents that its zero decoder ignores
        dead.latents.copy_(torch.randint(-1, 1, dead.latents.shape).float())
        dead.decoder.scale.zero_()
        dead.clear_cache()
    mse = sample_loss(model, source)
    before = mse()
    switched_off = switch_off_levels(model, lambda bits: mse() + 1e-4 * bits / source.num_pixels)
    assert len(model.tables) - 1 in switched_off and len(switched_off) < len(model.tables)
    assert bool((dead.latents == 0).all()) and mse() <= 1.01 * before  # it bought nothing
    assert any(bool((t.latents != 0).any()) for t in model.tables[:-1])  # levels that matter are kept
    assert switch_off_levels(model, lambda bits: mse() + 1e-4 * bits / source.num_pixels) == []


def test_latents_bunched_at_half_integers_are_rounded_from_a_shift_the_decoder_absorbs():
    from nerfcompress.image.pipeline import _coded_bits, choose_rounding_offsets

    source = _picture(40, 40)
    model = fit(source, CONFIGS["shacira"], TrainSettings(steps=60, lmbda=1e-4))
    table = model.tables[-1]
    with torch.no_grad():  # latents a hair either side of -1/2: they round to -1 or 0 at random
        table.latents.copy_(-0.5 + 0.02 * torch.randn(table.latents.shape))
        table.clear_cache()
    mse = sample_loss(model, source)
    before_mse, before_bits = mse(), _coded_bits(table, slice(None))
    offsets = choose_rounding_offsets(model, lambda bits: mse() + 1e-3 * bits / source.num_pixels)
    assert offsets[-1] != 0.0 and _coded_bits(table, slice(None)) < 0.5 * before_bits
    assert mse() <= before_mse * 1.05
    assert offsets[:-1] == [0.0] * (len(offsets) - 1)  # trained levels are not bunched


@pytest.mark.parametrize("kind", ["shared", "per-level"])
def test_a_decoder_absorbs_a_latent_offset_exactly(kind):
    from nerfcompress.tables.decoders import build_decoder

    decoder = build_decoder(kind, 2, 2, [5, 7], 0.3)
    with torch.no_grad():
        for param in decoder.parameters():
            param.uniform_(-1, 1)
    latents = torch.randint(-3, 4, (12, 2)).float()
    offset = torch.tensor([0.5, -0.25])
    expected = decoder(latents + offset)
    decoder.absorb_offset(0, offset)
    decoded = decoder(latents)
    rows = slice(None) if kind == "shared" else slice(0, 5)  # the per-level map moves level 0 only
    assert torch.allclose(decoded[rows], expected[rows], atol=1e-6)


def test_the_context_model_codes_the_same_picture_in_context_coded_sections():
    """Training does not see the context model (fitted afterwards), so the decoded pictures are
    the same; the grid's dense levels are context-coded, fitted to latents with spatial structure."""
    source = PixelSource(np.asarray(_picture(48, 60).strip(0, 48)))
    settings = TrainSettings(steps=120, lmbda=1e-4, context_steps=150, context_lr=2e-2)
    plain, _ = encode_picture(source, CONFIGS["shacira"], settings)
    coded, info = encode_picture(source, CONFIGS["shacira-context"], settings)
    assert info["context_seconds"] > 0 and info["context_coded"]
    model, header = decode_image(coded)
    assert header["model"]["context_hidden"] == [8] and model.context is not None
    plan = raster_plan(model.grid)
    with torch.no_grad():
        assert torch.equal(model.render_raster(plan), decode_image(plain)[0].render_raster(plan))
    _, sections = read_container(coded)
    modes = []
    for k, table in enumerate(model.tables):
        floats = [p for p in table.symbol_layout().levels[0].values() if isinstance(p, FloatPart)]
        start = 4 + sum(2 * math.prod(p.shape) for p in floats)  # after the checksum and the fp16 decoder
        modes.append(sections[f"g{k}.l0"][start])
    assert set(modes) <= {0, 1}
    assert modes.count(1) >= 1, modes  # at least one level chose the context model over its own table
    header["model"]["context_hidden"] = []  # the same sections read without the model: refused
    with pytest.raises(BitstreamError):
        decode_image(write_container(header, list(sections.items())))


def test_the_encoder_codes_the_latents_under_the_context_model_the_decoder_rebuilds():
    """A tensor rounded at precision 0 may round again to another value when stored (its step
    follows its RMS): [-1, 11] rounds to [0, 12], stored as [0, 16]. The encoder must code the
    latents under what the file stores, or the decoder's context model disagrees with it."""
    model = fit(_picture(), CONFIGS["shacira-context"], TrainSettings(steps=60, lmbda=1e-4))
    fit_context(model, TrainSettings(context_steps=60, context_lr=2e-2))
    with torch.no_grad():
        for param in network_tensors(model):
            param.copy_(torch.from_numpy(round_trip(param.numpy(), 0)))
        model.context.layers[-1].bias.copy_(torch.tensor([0.0, 12.0]))  # [-1, 11] rounded at precision 0
    latents = [table.integer_latents() for table in model.tables]
    decoded, _ = decode_image(encode_image(model, [0] * len(network_tensors(model))))  # raises if out of step
    assert decoded.context.layers[-1].bias.tolist() == [0.0, 16.0]
    assert all(torch.equal(t.integer_latents(), q) for t, q in zip(decoded.tables, latents))


def test_a_context_model_that_does_not_pay_for_itself_is_left_out_of_the_file():
    """Unfitted, it codes no level better than the levels' own tables, and its tensors would be
    bytes for nothing: the file is then exactly the one written without it."""
    source = _picture()
    settings = TrainSettings(steps=60, lmbda=1e-3, context_steps=0)
    with_model, info = encode_picture(source, CONFIGS["shacira-context"], settings)
    without, _ = encode_picture(source, CONFIGS["shacira"], settings)
    assert not info["context_coded"] and with_model == without
    assert "context_hidden" not in read_container(without)[0]["model"]  # the bytes of a format-6 file


def test_raster_render_is_the_pixel_render(encoded):
    """The whole-picture path (channel planes) and the pixel-batch path are one map."""
    model = decode_image(encoded[1])[0]
    with torch.no_grad():
        planes = model.render_raster(raster_plan(model.grid))  # [C, H * W]
        pixels = model.render_pixels(torch.arange(model.num_pixels))  # [N, C]
    assert planes.shape == (model.channels, model.num_pixels)
    assert torch.allclose(planes.t(), pixels, atol=1e-4)
    assert float(planes.std()) > 0.05  # a picture, not a constant
