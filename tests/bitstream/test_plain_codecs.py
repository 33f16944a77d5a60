import numpy as np
import pytest
import torch

from nerfcompress.bitstream.container import read_container, write_container
from nerfcompress.bitstream.model_codec import (
    PLAIN_STORAGES,
    UnsupportedTableError,
    decode_tables,
    encode_tables,
    plain_codec,
)
from nerfcompress.errors import BitstreamError
from nerfcompress.tables import PlainTable, ShaciraTable, round_trip_uniform

LEVEL_ROWS = (8, 64, 3000)


def _plain_table(seed: int = 0) -> PlainTable:
    """Laplace rows whose range grows with the level, like a trained grid's."""
    table = PlainTable(sum(LEVEL_ROWS), 2, level_rows=LEVEL_ROWS)
    rng = np.random.default_rng(seed)
    scale = np.repeat([0.05, 0.1, 0.2], LEVEL_ROWS)[:, None]
    with torch.no_grad():
        table.rows.copy_(torch.from_numpy(rng.laplace(0.0, scale, (table.num_rows, 2)).astype(np.float32)))
    return table


def _write(table: PlainTable, storage: str) -> bytes:
    grids, sections = encode_tables([table], ["g0"], plain_codec(storage))
    return write_container({"grids": grids}, sections)


def _decode(data: bytes, num_levels=None) -> PlainTable:
    header, sections = read_container(data)
    fresh = PlainTable(sum(LEVEL_ROWS), 2, level_rows=LEVEL_ROWS)
    decode_tables(header["grids"], sections, [fresh], num_levels=num_levels)
    return fresh


def test_fp16_is_the_default_and_fp32_stores_the_rows_exactly():
    table = _plain_table()
    assert encode_tables([table], ["g0"]) == encode_tables([table], ["g0"], plain_codec("fp16"))
    data = _write(table, "fp32")
    header, sections = read_container(data)
    assert header["grids"][0]["table"] == "plain-fp32"
    assert [len(payload) for payload in sections.values()] == [4 * 2 * rows for rows in LEVEL_ROWS]
    assert torch.equal(_decode(data).rows, table.rows)


@pytest.mark.parametrize("bits", range(2, 9))
def test_uniform_round_trip_gives_the_exporters_dequantized_rows_bit_for_bit(bits):
    table = _plain_table(bits)
    data = _write(table, f"uniform{bits}")
    header, sections = read_container(data)
    entry = header["grids"][0]
    assert entry["table"] == "plain-uniform" and entry["bits"] == bits and entry["level_rows"] == list(LEVEL_ROWS)
    assert len(entry["coding"]) == 3 and set(entry["coding"]) <= {"packed", "range"}
    assert list(sections) == ["g0.l0", "g0.l1", "g0.l2"]
    expected = torch.from_numpy(round_trip_uniform(table.rows, LEVEL_ROWS, bits))
    assert torch.equal(_decode(data).rows, expected)


def test_uniform_files_are_smaller_than_fp16_files_smaller_than_fp32_files():
    table = _plain_table()
    sizes = {storage: len(_write(table, storage)) for storage in ("fp32", "fp16", "uniform8", "uniform6")}
    assert sizes["uniform6"] < sizes["uniform8"] < sizes["fp16"] < sizes["fp32"], sizes
    grids, _ = encode_tables([table], ["g0"], plain_codec("uniform8"))
    assert grids[0]["coding"][2] == "range"  # Laplace rows: entropy coding beats 8 bits per value


def test_a_prefix_of_levels_decodes_those_levels_and_zeros_the_rest():
    table = _plain_table()
    data = _write(table, "uniform6")
    header, sections = read_container(data)
    fresh = PlainTable(sum(LEVEL_ROWS), 2, level_rows=LEVEL_ROWS)
    decode_tables(header["grids"], {k: v for k, v in sections.items() if k != "g0.l2"}, [fresh], num_levels=2)
    expected = torch.from_numpy(round_trip_uniform(table.rows, LEVEL_ROWS, 6))
    assert torch.equal(fresh.rows[:72], expected[:72]) and not fresh.rows[72:].any()


def test_unknown_storages_and_mixed_tables_are_refused():
    assert PLAIN_STORAGES == ("fp16", "fp32", *(f"uniform{b}" for b in range(2, 9)))
    for storage in ("uniform1", "uniform9", "int8", "none"):
        with pytest.raises(ValueError, match="plain storage must be one of fp16, fp32, uniform2"):
            plain_codec(storage)
    shacira = ShaciraTable(16, 2, latent_dim=2)
    with pytest.raises(UnsupportedTableError, match="storage 'uniform8' writes PlainTable only.*ShaciraTable"):
        encode_tables([_plain_table(), shacira], ["g0", "g1"], plain_codec("uniform8"))


def _uniform_parts():
    table = _plain_table()
    grids, sections = encode_tables([table], ["g0"], plain_codec("uniform8"))
    return grids[0], dict(sections)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"bits": 9}, "settings {'bits': 9}"),
        ({"bits": 1}, "settings {'bits': 1}"),
        ({"bits": True}, "expected ints"),
        ({"bits": "8"}, "expected ints"),
        ({"bits": None}, "expected ints"),
        ({"coding": ["packed"]}, "expected a list of 3"),
        ({"coding": "packed"}, "expected a list of 3"),
        ({"coding": ["zip", "zip", "zip"]}, "records codings \\['zip'"),
        ({"coding": [["packed"]] * 3}, "expected a list of 3"),
    ],
)
def test_bad_uniform_header_entries_raise_bitstream_error(change, message):
    entry, sections = _uniform_parts()
    with pytest.raises(BitstreamError, match=message):
        _decode_uniform({**entry, **change}, sections)


def _decode_uniform(entry, sections, num_levels=None) -> PlainTable:
    fresh = PlainTable(sum(LEVEL_ROWS), 2, level_rows=LEVEL_ROWS)
    decode_tables([entry], sections, [fresh], num_levels=num_levels)
    return fresh


def _with_range(payload: bytes, head: int, minimum: float, step: float) -> bytes:
    return payload[:head] + np.array([minimum, step], "<f4").tobytes() + payload[head + 8 :]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p, head: p[:head], "needs 8 bytes"),
        (lambda p, head: p[: head + 7], "needs 8 bytes"),
        (lambda p, head: p[: head + 8], "truncated"),
        (lambda p, head: p[: len(p) // 2], "bytes"),
        (lambda p, head: p + b"\0", "bytes"),
        (lambda p, head: _with_range(p, head, np.nan, 0.1), "NaN or infinity"),
        (lambda p, head: _with_range(p, head, 0.0, np.inf), "NaN or infinity"),
        (lambda p, head: _with_range(p, head, 0.0, -0.1), "step >= 0"),
        (lambda p, head: _with_range(p, head, 3e38, 1e37), "a finite largest value"),
    ],
)
def test_corrupt_or_truncated_uniform_sections_raise_bitstream_error(damage, message):
    entry, sections = _uniform_parts()
    assert entry["coding"][0] == "packed" and entry["coding"][2] == "range"
    for level in range(3):
        head = 4 if entry["coding"][level] == "range" else 0  # a range-coded level starts with its checksum
        damaged = {**sections, f"g0.l{level}": damage(sections[f"g0.l{level}"], head)}
        with pytest.raises(BitstreamError, match=message):
            _decode_uniform(entry, damaged)
    with pytest.raises(BitstreamError, match="too few for its checksum"):
        _decode_uniform(entry, {**sections, "g0.l2": b"\0\0"})


def test_a_missing_uniform_section_or_packed_level_of_the_wrong_length_raises_bitstream_error():
    entry, sections = _uniform_parts()
    assert entry["coding"][0] == "packed"  # 8 rows: the table would cost more than the symbols
    with pytest.raises(BitstreamError, match="section 'g0.l1' is missing"):
        _decode_uniform(entry, {k: v for k, v in sections.items() if k != "g0.l1"})
    short = {**sections, "g0.l0": sections["g0.l0"][:-1]}
    with pytest.raises(BitstreamError, match="packed indices hold 15 bytes, expected 16"):
        _decode_uniform(entry, short, num_levels=1)
    header, read = read_container(write_container({"grids": [entry]}, list(short.items())))
    with pytest.raises(BitstreamError):
        decode_tables(header["grids"], read, [PlainTable(sum(LEVEL_ROWS), 2, level_rows=LEVEL_ROWS)])
