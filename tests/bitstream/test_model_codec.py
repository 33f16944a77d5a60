import hashlib

import numpy as np
import pytest
import torch

from nerfcompress.bitstream.container import (
    read_container,
    read_container_index,
    read_container_prefix,
    write_container,
)
from nerfcompress.bitstream.levels import decodable_levels, level_prefix_bytes
from nerfcompress.bitstream.model_codec import UnsupportedTableError, decode_tables, encode_tables
from nerfcompress.entropy.coder import decode_latents, unpack_tables
from nerfcompress.errors import BitstreamError
from nerfcompress.grid import GridLayout, interp_torch
from nerfcompress.tables import FeatureTable, PlainTable, ShaciraTable, VqadTable

# SHA-256 of the tiny export built by _fixed_tables(); changes only with the file format or how its
# coding tables are made (and with zlib's deflate output for the header, identical for every stock zlib).
# Format 8: format 7's sections byte for byte (checked when the version changed), the header 75
# bytes shorter under the preset dictionary.
GOLDEN_SHA256 = "554e016f1a502fa0d4c804bd2657cc8ef087ba1e7a5a62311e9f29903b6e8626"


def _fixed_tables() -> tuple[ShaciraTable, PlainTable]:
    """Tables with fixed contents (the file's coding tables are the latents' own frequencies)."""
    shacira = ShaciraTable(num_rows=40, num_features=2, latent_dim=2, level_rows=(8, 32))
    plain = PlainTable(num_rows=16, num_features=2, level_rows=(8, 8))
    with torch.no_grad():
        values = torch.arange(80, dtype=torch.float32).reshape(40, 2)
        shacira.latents.copy_(torch.remainder(values * 7, 9) - 4.2)
        shacira.decoder.weight.copy_(torch.tensor([[0.5, -0.25], [0.125, 1.0]]))
        shacira.decoder.bias.copy_(torch.tensor([0.1, -0.2]))
        plain.rows.copy_(torch.linspace(-1, 1, 32).reshape(16, 2))
    return shacira, plain


def _fresh_fixed_tables() -> list:
    return [ShaciraTable(40, 2, latent_dim=2, level_rows=(8, 32)), PlainTable(16, 2, level_rows=(8, 8))]


def _export(tables) -> bytes:
    grids, sections = encode_tables(tables, ["g0", "g1"])
    return write_container({"grids": grids}, sections)


def test_round_trip_restores_integer_latents_and_fp16_values():
    shacira, plain = _fixed_tables()
    header, sections = read_container(_export([shacira, plain]))
    assert list(sections) == ["g0.decoder", "g0.l0", "g1.l0", "g0.l1", "g1.l1"]
    assert [g["level_rows"] for g in header["grids"]] == [[8, 32], [8, 8]]
    fresh = _fresh_fixed_tables()
    decode_tables(header["grids"], sections, fresh)
    assert torch.equal(fresh[0].integer_latents(), shacira.integer_latents())
    assert torch.equal(fresh[0].decoder.weight, shacira.decoder.weight.half().float())
    assert torch.equal(fresh[1].rows, plain.rows.half().float())
    assert "decoder" not in header["grids"][0]  # shapes come from the rebuilt table's layout


def test_each_shacira_level_is_its_own_bit_exact_stream_under_its_own_tables():
    shacira, plain = _fixed_tables()
    header, sections = read_container(_export([shacira, plain]))
    latents = shacira.integer_latents().numpy()
    # each level: a checksum of its latents, its coding tables, then the stream
    for name, rows in (("g0.l0", slice(0, 8)), ("g0.l1", slice(8, 40))):
        payload = memoryview(sections[name])
        tables, used = unpack_tables(payload, 4, 2, name)
        assert [int(f.sum()) for f in tables.freq] == [f.sum() for f in shacira.coding_tables(latents[rows]).freq]
        np.testing.assert_array_equal(
            decode_latents(bytes(payload[used:]), rows.stop - rows.start, tables), latents[rows]
        )
    fresh = _fresh_fixed_tables()
    decode_tables(header["grids"], {k: v for k, v in sections.items() if not k.endswith(".l1")}, fresh, num_levels=1)
    assert torch.equal(fresh[0].integer_latents()[:8], shacira.integer_latents()[:8])
    assert not fresh[0].integer_latents()[8:].any() and not fresh[1].rows[8:].any()
    assert torch.equal(fresh[1].rows[:8], plain.rows[:8].half().float())
    with pytest.raises(ValueError, match="num_levels"):
        decode_tables(header["grids"], sections, _fresh_fixed_tables(), num_levels=0)


def test_golden_sha256_of_a_tiny_export():
    digest = hashlib.sha256(_export(list(_fixed_tables()))).hexdigest()
    assert digest == GOLDEN_SHA256


def test_a_level_section_with_its_tables_damaged_or_extended_is_refused():
    shacira, plain = _fixed_tables()
    header, sections = read_container(_export([shacira, plain]))
    level = sections["g0.l0"]
    for bad in (level[:5], level[:4] + b"\x80" * 12, level + b"\0\0\0\0"):
        with pytest.raises(BitstreamError):
            decode_tables(header["grids"], {**sections, "g0.l0": bad}, _fresh_fixed_tables())


def test_mismatched_model_or_damaged_sections_raise_bitstream_error():
    shacira, plain = _fixed_tables()
    header, sections = read_container(_export([shacira, plain]))
    with pytest.raises(BitstreamError, match="rows"):
        decode_tables(header["grids"], sections, [ShaciraTable(41, 2), PlainTable(16, 2, level_rows=(8, 8))])
    with pytest.raises(BitstreamError, match="level_rows"):
        decode_tables(header["grids"], sections, [ShaciraTable(40, 2), PlainTable(16, 2)])
    with pytest.raises(BitstreamError, match="stored as"):
        decode_tables(header["grids"], sections, [PlainTable(40, 2), PlainTable(16, 2)])
    for name in ("g0.l1", "g0.decoder", "g1.l0"):
        with pytest.raises(BitstreamError, match=f"section '{name}' is missing"):
            decode_tables(header["grids"], {k: v for k, v in sections.items() if k != name}, _fresh_fixed_tables())
    with pytest.raises(BitstreamError):
        decode_tables(header["grids"], {**sections, "g0.l1": sections["g0.l1"][:-4]}, _fresh_fixed_tables())
    for bad_grid in (
        {**header["grids"][0], "rows": 2**40},
        {**header["grids"][0], "level_rows": [8, 33]},
        {**header["grids"][0], "level_rows": [40, 0]},
        {**header["grids"][0], "level_rows": "8, 32"},
        {**header["grids"][0], "latent_dim": 3},
        {**header["grids"][0], "latent_dim": True},
        {**header["grids"][0], "coding": ["packed"]},
        {**header["grids"][0], "extra": 1},
    ):
        with pytest.raises(BitstreamError):
            decode_tables([bad_grid, header["grids"][1]], sections, _fresh_fixed_tables())
    with pytest.raises(BitstreamError, match="beyond its parts"):
        decode_tables(
            header["grids"], {**sections, "g0.decoder": sections["g0.decoder"] + b"\0\0"}, _fresh_fixed_tables()
        )


def test_a_table_without_a_stored_form_is_refused_by_name():
    class OtherTable(FeatureTable):
        pass

    with pytest.raises(UnsupportedTableError, match="OtherTable has no stored form.*to_symbols"):
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


def test_damaged_vqad_sections_raise_bitstream_error():
    table = _vqad_table(4, level_rows=(8, 20_000), skew=0.5)
    grids, sections = encode_tables([table], ["g0"])
    entry, payloads = grids[0], dict(sections)

    def decode(entry=entry, **replace):
        decode_tables([entry], {**payloads, **replace}, [VqadTable((8, 20_000), 2, bits=4)])

    decode()
    level = payloads["g0.l1"]  # range-coded: a 4-byte checksum, the codebook [16, 2] fp16, the index table
    nan_codebook = level[:4] + b"\xff\x7f" + level[6:]
    for bad, message in (
        ({"g0.l0": payloads["g0.l0"][:-1]}, "packed indices hold"),
        ({"g0.l0": payloads["g0.l0"][:10]}, "codebook needs 64 bytes"),
        ({"g0.l1": level[:-4]}, "stream"),
        ({"g0.l1": level[: 4 + 64] + bytes([2 * 15]) + level[4 + 65 :]}, "index table covers 15"),  # zigzag lo
        ({"g0.l1": nan_codebook}, "NaN or infinity"),
    ):
        with pytest.raises(BitstreamError, match=message):
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


def test_level_sections_follow_the_per_grid_parts_coarse_level_first_across_grids():
    shacira = ShaciraTable(14, 2, level_rows=(2, 4, 8))
    tables = [shacira, _vqad_table(2, level_rows=(8, 64)), PlainTable(16, 2)]
    grids, sections = encode_tables(tables, ["a", "b", "c"])
    names = [name for name, _ in sections]
    assert names == ["a.decoder", "a.l0", "b.l0", "c.l0", "a.l1", "b.l1", "a.l2"]
    assert [len(g["level_rows"]) for g in grids] == [3, 2, 1]
    header, read = read_container(write_container({"grids": grids}, sections))
    assert decodable_levels(header["grids"], list(read)) == 3
    assert decodable_levels(header["grids"], names[:5]) == 1  # b.l1 is missing
    assert decodable_levels(header["grids"], names[:6]) == 2  # c has no level 1: it does not hold level 2 back
    assert decodable_levels(header["grids"], names[:3]) == 0


def _lod_file():
    """A shacira grid of 3 levels and a VQAD grid of 2 (a layout each), their file (with a
    camera section first, as an export has) and the tables decoded from the whole file."""
    layouts = [
        GridLayout(
            num_dims=3, num_levels=3, features_per_level=2, hashmap_size=2**8, base_resolution=2, per_level_scale=2.0
        ),
        GridLayout(
            num_dims=3, num_levels=2, features_per_level=2, hashmap_size=2**6, base_resolution=2, per_level_scale=2.0
        ),
    ]
    rng = np.random.default_rng(3)
    shacira = ShaciraTable(layouts[0].num_rows, 2, level_rows=layouts[0].level_rows)
    with torch.no_grad():
        shacira.latents.copy_(torch.from_numpy(np.round(rng.laplace(0, 2, (layouts[0].num_rows, 2)))))
    vqad = _vqad_table(3, level_rows=layouts[1].level_rows)
    grids, sections = encode_tables([shacira, vqad], ["g0", "g1"])
    data = write_container({"grids": grids}, [("cameras", bytes(range(48))), *sections])

    def fresh():
        return [
            ShaciraTable(layouts[0].num_rows, 2, level_rows=layouts[0].level_rows),
            VqadTable(layouts[1].level_rows, 2, bits=3),
        ]

    full = fresh()
    header, read = read_container(data)
    decode_tables(header["grids"], read, full)
    return layouts, data, fresh, full


def test_a_prefix_cut_inside_level_k_decodes_k_levels_that_render_like_the_full_file():
    layouts, data, fresh, full = _lod_file()
    _, index = read_container_index(data)
    points = torch.rand(50, 3, generator=torch.Generator().manual_seed(0))
    for entry in index[2:]:  # cameras, g0.decoder come first
        level = int(entry.name.split(".l")[1])
        header, sections, num_sections = read_container_prefix(data[: entry.offset + entry.length // 2])
        assert num_sections == len(index) and entry.name not in sections
        assert decodable_levels(header["grids"], list(sections)) == level
        if level == 0:
            continue
        tables = fresh()
        decode_tables(header["grids"], sections, tables, num_levels=level)
        for layout, ours, theirs in zip(layouts, tables, full):
            ours.eval(), theirs.eval()
            levels = min(level, layout.num_levels)
            with torch.no_grad():
                expected = interp_torch(layout, theirs(), points, levels)
                assert torch.equal(interp_torch(layout, ours(), points, levels), expected)
                assert bool((expected[:, 2 * levels :] == 0).all())


def test_level_prefix_bytes_are_the_exact_prefixes_each_level_needs():
    layouts, data, _, _ = _lod_file()
    header, index = read_container_index(data)
    needed = level_prefix_bytes(header["grids"], index)
    assert len(needed) == 3 and needed[-1] == len(data) and needed == sorted(needed)
    for levels, size in enumerate(needed, start=1):
        header, sections, _ = read_container_prefix(data[:size])
        assert decodable_levels(header["grids"], list(sections)) == levels
        header, sections, _ = read_container_prefix(data[: size - 1])
        assert decodable_levels(header["grids"], list(sections)) == levels - 1


def test_a_prefix_without_every_per_grid_part_or_a_truncated_file_without_asking_raises():
    _, data, _, _ = _lod_file()
    _, index = read_container_index(data)
    decoder = next(e for e in index if e.name == "g0.decoder")
    end = decoder.offset + decoder.length
    for cut in (20, index[0].offset + 10, decoder.offset + 1, end, end + 2):
        with pytest.raises(BitstreamError, match="without reaching a level section|a prefix must hold"):
            read_container_prefix(data[:cut])
    with pytest.raises(BitstreamError, match="section 'g0.decoder'.*level \\('<grid>.l<level>'\\)"):
        read_container_prefix(data[: decoder.offset + 1])
    for cut in (end + 1 + len("g0.l0"), len(data) - 1):
        read_container_prefix(data[:cut])
        with pytest.raises(BitstreamError, match="truncated"):
            read_container(data[:cut])
    header, sections, num_sections = read_container_prefix(data)
    assert list(sections) == [e.name for e in index] and num_sections == len(index)
    damaged = bytearray(data[: index[4].offset + index[4].length])
    damaged[index[4].offset] ^= 1
    with pytest.raises(BitstreamError, match="CRC32"):
        read_container_prefix(bytes(damaged))
