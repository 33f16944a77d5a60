import numpy as np
import pytest
import torch

from nerfcompress.bitstream.container import read_container, write_container
from nerfcompress.bitstream.model_codec import decode_tables, encode_tables
from nerfcompress.tables import ShaciraTable
from nerfcompress.tables.decoders import LevelDiagonalDecoder, build_decoder


def test_per_level_decoder_maps_each_levels_rows_with_its_own_scale_and_shift():
    decoder = LevelDiagonalDecoder(level_rows=(2, 3), num_features=2, init_scale=0.1)
    with torch.no_grad():
        decoder.scale.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        decoder.shift.copy_(torch.tensor([[0.5, 0.0], [0.0, -1.0]]))
    latents = torch.arange(10, dtype=torch.float32).reshape(5, 2)
    expected = torch.cat([latents[:2] * torch.tensor([1.0, 2.0]) + torch.tensor([0.5, 0.0]),
                          latents[2:] * torch.tensor([3.0, 4.0]) + torch.tensor([0.0, -1.0])])  # fmt: skip
    assert torch.equal(decoder(latents), expected)
    assert float(decoder.lattice_norm()) == pytest.approx(np.sqrt((5.0 + 25.0) / 2))


def test_per_level_decoder_gradients_reach_every_levels_scale_and_shift():
    decoder = LevelDiagonalDecoder(level_rows=(4, 4, 8), num_features=2, init_scale=0.05)
    decoder(torch.randn(16, 2)).square().sum().backward()
    assert (decoder.scale.grad.abs().sum(dim=1) > 0).all() and (decoder.shift.grad.abs().sum(dim=1) > 0).all()


def test_per_level_needs_one_latent_per_feature():
    with pytest.raises(ValueError, match="latent_dim must equal the features per level"):
        build_decoder("per-level", latent_dim=1, num_features=2, level_rows=(4,), init_scale=0.05)
    with pytest.raises(ValueError, match="decoder must be one of shared, per-level"):
        build_decoder("mlp", latent_dim=2, num_features=2, level_rows=(4,), init_scale=0.05)


def test_a_per_level_decoder_round_trips_through_the_file():
    table = ShaciraTable(num_rows=40, num_features=2, latent_dim=2, level_rows=(8, 32), decoder="per-level")
    with torch.no_grad():
        table.latents.copy_(torch.randn(40, 2) * 3)
        table.decoder.scale.copy_(torch.tensor([[0.25, 0.5], [0.125, 2.0]]))
        table.decoder.shift.copy_(torch.tensor([[0.5, -0.5], [1.0, 0.0]]))
    grids, sections = encode_tables([table], ["g0"])
    assert [name for name, _ in sections] == ["g0.l0", "g0.l1"]  # each level carries its own map
    header, read = read_container(write_container({"grids": grids}, sections))
    fresh = ShaciraTable(num_rows=40, num_features=2, latent_dim=2, level_rows=(8, 32), decoder="per-level")
    decode_tables(header["grids"], read, [fresh])
    fresh.eval()
    table.eval()
    assert torch.equal(fresh.decode(), table.decode())
    coarse = ShaciraTable(num_rows=40, num_features=2, latent_dim=2, level_rows=(8, 32), decoder="per-level")
    decode_tables(header["grids"], {"g0.l0": read["g0.l0"]}, [coarse], num_levels=1)
    coarse.eval()
    assert torch.equal(coarse.decode()[:8], table.decode()[:8])
    with pytest.raises(ValueError, match="g0.decoder. is missing"):  # a shared-decoder model cannot read it
        decode_tables(header["grids"], read, [ShaciraTable(num_rows=40, num_features=2, level_rows=(8, 32))])
