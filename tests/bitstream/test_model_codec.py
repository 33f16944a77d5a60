import hashlib

import numpy as np
import pytest
import torch

from nerfcompress.bitstream.container import read_container, write_container
from nerfcompress.bitstream.model_codec import (
    UnsupportedTableError,
    decode_shacira_latents,
    decode_tables,
    encode_tables,
    pack_channel_tables,
    unpack_channel_tables,
)
from nerfcompress.entropy.coder import ChannelTables
from nerfcompress.errors import BitstreamError
from nerfcompress.tables import PlainTable, ShaciraTable, VqadTable

# SHA-256 of the tiny export built by _fixed_tables(); changes only with the file format (and
# with zlib's deflate output for the header, identical for every stock zlib).
GOLDEN_SHA256 = "b45b3bb3beea092eebf83029122642bbcaee8a34d4c7c7f71a548c27937c9b54"


def _fixed_tables() -> tuple[ShaciraTable, PlainTable]:
    """Tables with fixed contents and a prior replaced by a fixed pmf (platform-independent)."""
    shacira = ShaciraTable(num_rows=40, num_features=2, latent_dim=2)
    plain = PlainTable(num_rows=16, num_features=2)
    with torch.no_grad():
        values = torch.arange(80, dtype=torch.float32).reshape(40, 2)
        shacira.latents.copy_(torch.remainder(values * 7, 9) - 4.2)
        shacira.decoder.weight.copy_(torch.tensor([[0.5, -0.25], [0.125, 1.0]]))
        shacira.decoder.bias.copy_(torch.tensor([0.1, -0.2]))
        plain.rows.copy_(torch.linspace(-1, 1, 32).reshape(16, 2))
    shacira.prior.pmf = lambda channel, lo, support: np.arange(1, support + 1, dtype=np.float64) + channel
    return shacira, plain


def _export(tables) -> bytes:
    grids, sections = encode_tables(tables, ["g0", "g1"])
    return write_container({"grids": grids}, sections)


def test_round_trip_restores_integer_latents_and_fp16_values():
    shacira, plain = _fixed_tables()
    header, sections = read_container(_export([shacira, plain]))
    assert list(sections) == ["g0.cdf", "g0.latents", "g0.decoder", "g1.rows"]
    fresh = [ShaciraTable(num_rows=40, num_features=2, latent_dim=2), PlainTable(num_rows=16, num_features=2)]
    decode_tables(header["grids"], sections, fresh)
    assert torch.equal(fresh[0].integer_latents(), shacira.integer_latents())
    assert torch.equal(fresh[0].decoder.weight, shacira.decoder.weight.half().float())
    assert torch.equal(fresh[1].rows, plain.rows.half().float())
    direct = decode_shacira_latents(header["grids"][0], sections, max_rows=40)
    np.testing.assert_array_equal(direct, shacira.integer_latents().numpy())


def test_golden_sha256_of_a_tiny_export():
    digest = hashlib.sha256(_export(list(_fixed_tables()))).hexdigest()
    assert digest == GOLDEN_SHA256


def test_channel_tables_round_trip_and_reject_bad_lengths():
    tables = ChannelTables(
        lo=np.array([-3, 0], np.int32), freq=(np.array([1, 5, 2], np.uint32), np.array([7, 1], np.uint32))
    )
    payload = pack_channel_tables(tables)
    back = unpack_channel_tables(payload, 2)
    assert back.lo.tolist() == [-3, 0] and [f.tolist() for f in back.freq] == [[1, 5, 2], [7, 1]]
    for bad in (payload[:-4], payload + b"\0\0\0\0", payload[:6]):
        with pytest.raises(BitstreamError):
            unpack_channel_tables(bad, 2)
    zero_count = payload[:16] + b"\0\0\0\0" + payload[20:]
    with pytest.raises(BitstreamError, match="invalid"):
        unpack_channel_tables(zero_count, 2)


def test_mismatched_model_or_damaged_sections_raise_bitstream_error():
    shacira, plain = _fixed_tables()
    header, sections = read_container(_export([shacira, plain]))
    with pytest.raises(BitstreamError, match="rows"):
        decode_tables(header["grids"], sections, [ShaciraTable(41, 2), PlainTable(16, 2)])
    with pytest.raises(BitstreamError, match="stored as"):
        decode_tables(header["grids"], sections, [PlainTable(40, 2), PlainTable(16, 2)])
    with pytest.raises(BitstreamError, match="missing"):
        decode_tables(
            header["grids"],
            {k: v for k, v in sections.items() if k != "g0.latents"},
            [ShaciraTable(40, 2), PlainTable(16, 2)],
        )
    with pytest.raises(BitstreamError):
        decode_tables(
            header["grids"],
            {**sections, "g0.latents": sections["g0.latents"][:-4]},
            [ShaciraTable(40, 2), PlainTable(16, 2)],
        )
    bad_grid = {**header["grids"][0], "rows": 2**40}
    with pytest.raises(BitstreamError):
        decode_shacira_latents(bad_grid, sections, max_rows=40)


def test_a_table_kind_without_codec_is_refused_by_name():
    class OtherTable(PlainTable):
        pass

    with pytest.raises(UnsupportedTableError, match="OtherTable.*PlainTable"):
        encode_tables([OtherTable(16, 2)], ["g0"])


def _vqad_table(bits: int, level_rows=(8, 64, 3000), skew: float = 1.0) -> VqadTable:
    """A VQAD table with seeded codebooks and Laplace-distributed indices (levels differ)."""
    table = VqadTable(level_rows, 2, bits=bits)
    rng = np.random.default_rng(bits)
    indices = np.clip(np.round(rng.laplace(2 ** (bits - 1), skew, sum(level_rows))), 0, 2**bits - 1)
    codebooks = torch.from_numpy(rng.normal(size=(len(level_rows), 2**bits, 2)).astype(np.float32))
    table.assign_codes(torch.from_numpy(indices.astype(np.int64)), codebooks)
    return table


@pytest.mark.parametrize("bits", range(1, 9))
def test_vqad_round_trip_restores_indices_bit_identically(bits):
    table = _vqad_table(bits)
    grids, sections = encode_tables([table], ["g0"])
    header, read = read_container(write_container({"grids": grids}, sections))
    assert list(read) == ["g0.l0", "g0.l1", "g0.l2"]  # coarse level first
    entry = header["grids"][0]
    assert entry["table"] == "vqad" and entry["bits"] == bits and entry["level_rows"] == [8, 64, 3000]
    assert set(entry["coding"]) <= {"packed", "range"}
    fresh = VqadTable((8, 64, 3000), 2, bits=bits)
    decode_tables(header["grids"], read, [fresh])
    assert torch.equal(fresh.integer_indices(), table.integer_indices())
    assert torch.equal(fresh.codebooks, table.codebooks.half().float())
    fresh.eval()
    assert torch.equal(fresh(), table.codebooks.half().float()[table.level_of_row, table.integer_indices().long()])


def test_vqad_levels_use_the_smaller_coding_and_the_estimate_matches_the_payloads():
    table = _vqad_table(4, level_rows=(8, 20_000), skew=0.5)
    grids, sections = encode_tables([table], ["g0"])
    assert grids[0]["coding"] == ["packed", "range"]
    assert len(sections[0][1]) == 16 * 2 * 2 + 4  # codebook [16, 2] fp16 + 8 indices x 4 bits
    assert len(sections[1][1]) < 16 * 2 * 2 + 0.5 * 20_000 * 4 / 8
    assert table.size_estimate_bits() == 8 * sum(len(payload) for _, payload in sections)


def test_damaged_vqad_sections_raise_bitstream_error():
    table = _vqad_table(4, level_rows=(8, 20_000), skew=0.5)
    grids, sections = encode_tables([table], ["g0"])
    entry, payloads = grids[0], dict(sections)

    def decode(entry=entry, **replace):
        decode_tables([entry], {**payloads, **replace}, [VqadTable((8, 20_000), 2, bits=4)])

    decode()
    nan_codebook = b"\xff\x7f" + payloads["g0.l1"][2:]
    for bad in (
        {"g0.l0": payloads["g0.l0"][:-1]},
        {"g0.l0": payloads["g0.l0"][:10]},
        {"g0.l1": payloads["g0.l1"][:-4]},
        {"g0.l1": payloads["g0.l1"][:64] + bytes([15]) + payloads["g0.l1"][65:]},
        {"g0.l1": nan_codebook},
    ):
        with pytest.raises(BitstreamError):
            decode(**bad)
    with pytest.raises(BitstreamError, match="missing"):
        decode_tables([entry], {"g0.l0": payloads["g0.l0"]}, [VqadTable((8, 20_000), 2, bits=4)])
    for bad_entry in (
        {**entry, "bits": 5},
        {**entry, "level_rows": [8, 19_999]},
        {**entry, "coding": ["packed"]},
        {**entry, "coding": ["packed", "zip"]},
        {**entry, "coding": "packed"},
    ):
        with pytest.raises(BitstreamError):
            decode(entry=bad_entry)
