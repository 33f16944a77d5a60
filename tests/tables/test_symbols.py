"""The table codec protocol: layouts from configuration alone, symbols that fit them and round-trip."""

import numpy as np
import pytest
import torch

from nerfcompress.entropy.coder import ChannelTables
from nerfcompress.tables import (
    CodingTablesPart,
    ContextPart,
    FloatPart,
    IndexPart,
    PlainTable,
    RangePart,
    ShaciraTable,
    SymbolLayout,
    TableSymbols,
    VqadTable,
)
from nerfcompress.tables.plain import PLAIN_STORAGES

LEVEL_ROWS = (8, 24)


def _tables(seed: int):
    torch.manual_seed(seed)
    shacira = ShaciraTable(32, 2, latent_dim=2, level_rows=LEVEL_ROWS, latent_init_scale=3.0)
    vqad = VqadTable(LEVEL_ROWS, 2, bits=3)
    plain = PlainTable(32, 2, init_scale=1.0, level_rows=LEVEL_ROWS)
    return [shacira, vqad, plain]


def _storages(table):
    return table.storages() if isinstance(table, PlainTable) else (None,)


def _fits(part, value) -> bool:
    if isinstance(part, FloatPart):
        return value.dtype == np.float32 and value.shape == part.shape
    if isinstance(part, CodingTablesPart):
        return isinstance(value, ChannelTables) and value.num_channels == part.channels
    if isinstance(part, RangePart):
        return value.dtype == np.int32 and value.shape == (part.rows, part.channels)
    return value.dtype == np.uint8 and value.shape == (part.count,) and int(value.max()) < 1 << part.bits


@pytest.mark.parametrize("index", range(3))
def test_layouts_depend_on_configuration_only_and_symbols_fit_them(index):
    first, second = _tables(0)[index], _tables(1)[index]
    for storage in _storages(first):
        layout = first.symbol_layout(storage)
        assert layout == second.symbol_layout(storage)
        assert len(layout.levels) == len(LEVEL_ROWS)
        symbols = first.to_symbols(storage)
        assert set(symbols.shared) == set(layout.shared) and len(symbols.levels) == len(layout.levels)
        values = [*(symbols.shared[s] for s in layout.shared), *symbols.levels]
        for (_, section), section_values in zip(layout.sections(), values):
            assert list(section_values) == list(section)
            assert all(_fits(part, section_values[name]) for name, part in section.items())
        assert first.storage_for(layout.kind, dict(layout.settings)) == (storage or first.storages()[0])


def _assert_same(ours, theirs) -> None:
    """Equal symbol values: arrays element by element, coding tables by their ranges and counts."""
    if isinstance(ours, ChannelTables):
        np.testing.assert_array_equal(ours.lo, theirs.lo)
        assert [f.tolist() for f in ours.freq] == [f.tolist() for f in theirs.freq]
    else:
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("index", range(3))
def test_from_symbols_restores_what_to_symbols_gave_and_zeros_the_levels_left_out(index):
    table, fresh, coarse = _tables(0)[index], _tables(5)[index], _tables(6)[index]
    for storage in _storages(table):
        symbols = table.to_symbols(storage)
        fresh.from_symbols(symbols, storage)
        again = fresh.to_symbols(storage)
        for ours, theirs in zip(symbols.levels, again.levels):
            for name in ours:
                _assert_same(ours[name], theirs[name])
        coarse.from_symbols(TableSymbols(symbols.shared, symbols.levels[:1]), storage)
        first, rest = coarse.to_symbols(storage).levels
        for name in symbols.levels[0]:
            _assert_same(first[name], symbols.levels[0][name])
        arrays = [value for value in rest.values() if isinstance(value, np.ndarray)]
        assert arrays and not any(value.any() for value in arrays), rest


def test_plain_storages_and_their_kinds():
    table = _tables(0)[2]
    kinds = {storage: table.symbol_layout(storage).kind for storage in PLAIN_STORAGES}
    assert kinds["fp16"] == "plain" and kinds["fp32"] == "plain-fp32" and kinds["uniform8"] == "plain-uniform"
    assert table.symbol_layout("uniform5").settings == {"bits": 5}
    assert table.storage_for("plain-uniform", {"bits": 9}) is None
    with pytest.raises(ValueError, match="stored as one of"):
        table.symbol_layout("int8")


def test_layouts_refuse_parts_after_a_stream_and_streams_without_their_tables():
    with pytest.raises(ValueError, match="last part"):
        SymbolLayout("x", {}, {}, ({"a": IndexPart(4, 2), "b": FloatPart((1,))},))
    with pytest.raises(ValueError, match="needs one table of its width in 'cdf'"):
        SymbolLayout("x", {}, {}, ({"a": RangePart(4, 2, "cdf")},))
    with pytest.raises(ValueError, match="level section"):
        SymbolLayout("x", {}, {"l0": {"a": FloatPart((1,))}}, ())


def test_a_level_with_a_raster_width_is_stored_as_context_coded_latents():
    torch.manual_seed(0)
    table = ShaciraTable(
        32,
        1,
        latent_dim=1,
        level_rows=LEVEL_ROWS,
        latent_init_scale=3.0,
        decoder="per-level",
        level_widths=(None, 6),
        context_level_base=2,
    )
    layout = table.symbol_layout()
    assert isinstance(layout.levels[0]["latents"], RangePart) and "tables" in layout.levels[0]
    assert layout.levels[1]["latents"] == ContextPart(24, 6, 3) and "tables" not in layout.levels[1]
    symbols = table.to_symbols()
    assert symbols.levels[1]["latents"].shape == (24,) and symbols.levels[1]["latents"].dtype == np.int32
    ((latents, width, level),) = table.context_levels()
    assert torch.equal(latents, torch.round(table.latents.detach()[8:, 0])) and (width, level) == (6, 3)
    copy = ShaciraTable(32, 1, latent_dim=1, level_rows=LEVEL_ROWS, decoder="per-level", level_widths=(None, 6))
    copy.from_symbols(symbols)
    assert torch.equal(copy.integer_latents(), table.integer_latents())
    with pytest.raises(ValueError, match="latent_dim 1"):
        ShaciraTable(32, 2, latent_dim=2, level_rows=LEVEL_ROWS, level_widths=(None, 6))
    with pytest.raises(ValueError, match="level_widths"):
        ShaciraTable(32, 1, latent_dim=1, level_rows=LEVEL_ROWS, level_widths=(6,))
