import hashlib

import numpy as np
import pytest
import torch

from nerfcompress.entropy.coder import (
    ChannelTables,
    build_tables,
    cheapest_counts,
    decode_latents,
    encode_latents,
    estimate_bits,
    pack_tables,
    quantize_pmf,
    unpack_tables,
)
from nerfcompress.entropy.factorized import FactorizedPrior
from nerfcompress.errors import BitstreamError


def _laplace_latents(rows: int, scales: tuple[float, ...], seed: int = 0) -> np.ndarray:
    gen = np.random.default_rng(seed)
    columns = [np.round(gen.laplace(0.0, s, size=rows)) if s > 0 else np.full(rows, -3.0) for s in scales]
    return np.stack(columns, axis=1).astype(np.int32)


def _empirical_pmf_fn(latents: np.ndarray):
    def pmf(channel: int, lo: int, support: int) -> np.ndarray:
        counts = np.bincount(latents[:, channel] - lo, minlength=support).astype(np.float64)
        return counts + 0.01

    return pmf


@pytest.fixture(scope="module")
def fitted_prior() -> FactorizedPrior:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    values = torch.from_numpy(_laplace_latents(4000, (2.0, 6.0))).float()
    prior = FactorizedPrior(num_channels=2)
    optimizer = torch.optim.Adam(prior.parameters(), lr=0.02)
    for _ in range(200):
        optimizer.zero_grad()
        (prior.rate_bits(values) / len(values)).backward()
        optimizer.step()
    torch.set_num_threads(threads)
    return prior.eval()


class TestQuantizePmf:
    def test_exact_for_representable_pmf(self):
        counts = quantize_pmf(np.array([0.5, 0.25, 0.25]), total=1 << 16)
        assert counts.dtype == np.uint32
        assert counts.tolist() == [32768, 16384, 16384]

    @pytest.mark.parametrize("total", [1 << 8, 1 << 16, 1 << 24])
    def test_counts_positive_and_sum_to_total(self, total):
        gen = np.random.default_rng(0)
        pmf = np.concatenate([gen.random(100) ** 8, np.zeros(20), np.full(5, 1e-300), [1.0]])
        counts = quantize_pmf(pmf, total=total)
        assert counts.min() >= 1
        assert int(counts.sum(dtype=np.int64)) == total

    def test_deterministic_and_scale_invariant(self):
        pmf = np.random.default_rng(1).random(300)
        first = quantize_pmf(pmf)
        assert np.array_equal(first, quantize_pmf(pmf.copy()))
        assert np.array_equal(first, quantize_pmf(pmf * 4.0))

    @pytest.mark.parametrize(
        "pmf, total, match",
        [
            (np.zeros(4), 1 << 16, "zero total mass"),
            (np.array([0.5, -0.1]), 1 << 16, "non-negative"),
            (np.array([0.5, np.nan]), 1 << 16, "finite"),
            (np.ones((2, 2)), 1 << 16, "shape"),
            (np.ones(10), 8, "total"),
            (np.ones(10), (1 << 24) + 1, "total"),
        ],
    )
    def test_validation(self, pmf, total, match):
        with pytest.raises(ValueError, match=match):
            quantize_pmf(pmf, total=total)


class TestChannelTables:
    def test_validation(self):
        lo = np.array([0], dtype=np.int32)
        with pytest.raises(ValueError, match="int32"):
            ChannelTables(lo=np.array([0]), freq=(np.ones(2, np.uint32),))
        with pytest.raises(ValueError, match="one freq table per channel"):
            ChannelTables(lo=lo, freq=())
        with pytest.raises(ValueError, match="S >= 2"):
            ChannelTables(lo=lo, freq=(np.ones(1, np.uint32),))
        with pytest.raises(ValueError, match="uint32"):
            ChannelTables(lo=lo, freq=(np.ones(3, np.int64),))
        with pytest.raises(ValueError, match="zero count"):
            ChannelTables(lo=lo, freq=(np.array([1, 0], np.uint32),))
        with pytest.raises(ValueError, match="leaves int32"):
            ChannelTables(lo=np.array([2**31 - 1], np.int32), freq=(np.ones(2, np.uint32),))


class TestCoder:
    @pytest.mark.parametrize("scales", [(3.0,), (1.5, 0.0), (0.0, 8.0)])
    def test_round_trip(self, scales):
        latents = _laplace_latents(20000, scales)
        tables = build_tables(latents, _empirical_pmf_fn(latents))
        for c, scale in enumerate(scales):
            if scale == 0:  # constant channel: support padded to 2
                assert tables.support[c] == 2 and tables.lo[c] == -3
        data = encode_latents(latents, tables)
        decoded = decode_latents(data, len(latents), tables)
        assert decoded.dtype == np.int32
        assert np.array_equal(decoded, latents)

    def test_round_trip_fitted_prior_and_size_matches_estimate(self, fitted_prior):
        latents = _laplace_latents(50000, (2.0, 6.0), seed=3)
        tables = build_tables(latents, fitted_prior.pmf)
        data = encode_latents(latents, tables)
        assert np.array_equal(decode_latents(data, len(latents), tables), latents)
        estimate_bytes = estimate_bits(latents, tables) / 8
        assert estimate_bytes <= len(data) <= 1.01 * estimate_bytes + 16

    @pytest.mark.parametrize("rows", range(0, 40))
    def test_short_streams_are_not_flagged(self, rows):
        gen = np.random.default_rng(rows)
        tables = ChannelTables(
            lo=np.array([-2, 0], np.int32),
            freq=(gen.integers(1, 1000, size=5).astype(np.uint32), np.array([65535, 1], np.uint32)),
        )
        columns = [gen.integers(-2, 3, size=rows), gen.integers(0, 2, size=rows)]
        latents = np.stack(columns, axis=1).astype(np.int32)
        assert np.array_equal(decode_latents(encode_latents(latents, tables), rows, tables), latents)

    def test_skewed_table_many_rows(self):
        tables = ChannelTables(lo=np.array([0], np.int32), freq=(np.array([65535, 1], np.uint32),))
        latents = np.zeros((1 << 21, 1), np.int32)
        data = encode_latents(latents, tables)
        assert len(data) < 64
        assert np.array_equal(decode_latents(data, len(latents), tables), latents)

    def test_deterministic(self):
        latents = _laplace_latents(5000, (2.0, 4.0))
        first = encode_latents(latents, build_tables(latents, _empirical_pmf_fn(latents)))
        second = encode_latents(latents.copy(), build_tables(latents.copy(), _empirical_pmf_fn(latents)))
        assert first == second

    def test_golden(self):
        tables = ChannelTables(
            lo=np.array([-2, 5], np.int32),
            freq=(
                np.array([100, 2000, 60000, 3000, 436], np.uint32),
                np.array([1, 7, 40000, 25528], np.uint32),
            ),
        )
        i = np.arange(64)
        latents = np.stack([(i * 7) % 5 - 2, 5 + (i * i + i // 3) % 4], axis=1).astype(np.int32)
        data = encode_latents(latents, tables)
        digest = hashlib.sha256(data).hexdigest()
        assert digest == "522b77edc088798a332bfaa9a9f83aca8fe054459afff7c657c033004f44b416"
        assert np.array_equal(decode_latents(data, 64, tables), latents)

    def test_argument_errors(self):
        latents = _laplace_latents(100, (2.0, 2.0))
        tables = build_tables(latents, _empirical_pmf_fn(latents))
        with pytest.raises(ValueError, match=r"channel 1: table covers \[-?\d+, \d+\], found values in"):
            bad = latents.copy()
            bad[0, 1] = 1000
            encode_latents(bad, tables)
        with pytest.raises(ValueError, match="int32"):
            encode_latents(latents.astype(np.int64), tables)
        with pytest.raises(ValueError, match="expected 2 channels, found 1"):
            estimate_bits(latents[:, :1], tables)
        with pytest.raises(ValueError, match="at least one row"):
            build_tables(latents[:0], _empirical_pmf_fn(latents))
        with pytest.raises(ValueError, match="exceeds total"):
            build_tables(np.array([[0], [300]], np.int32), lambda c, lo, s: np.ones(s), total=256)

    def test_empty(self):
        tables = ChannelTables(lo=np.array([0], np.int32), freq=(np.ones(3, np.uint32),))
        data = encode_latents(np.zeros((0, 1), np.int32), tables)
        assert decode_latents(data, 0, tables).shape == (0, 1)

    def test_row_count_checked_before_allocation(self):
        latents = _laplace_latents(1000, (2.0,))
        tables = build_tables(latents, _empirical_pmf_fn(latents))
        data = encode_latents(latents, tables)
        for num_rows in (-1, 10**12):
            with pytest.raises(BitstreamError, match="rows"):
                decode_latents(data, num_rows, tables)
        with pytest.raises(BitstreamError, match="at most"):
            decode_latents(data[:8], 1000, tables)
        with pytest.raises(BitstreamError, match="expected 0 .. 999"):
            decode_latents(data, 1000, tables, max_rows=999)
        with pytest.raises(BitstreamError, match="4-byte words"):
            decode_latents(data[:-1], 1000, tables)

    def test_damaged_data_never_escapes(self):
        latents = _laplace_latents(3000, (2.0, 5.0))
        tables = build_tables(latents, _empirical_pmf_fn(latents))
        data = encode_latents(latents, tables)
        words = np.frombuffer(data, "<u4")
        gen = np.random.default_rng(0)
        variants = [data[: 4 * k] for k in range(0, len(words), 7)]
        variants += [data[:n] for n in (1, 2, 3, len(data) - 2)]
        variants += [data + bytes(4), data + gen.bytes(12), gen.bytes(len(data)), bytes(len(data))]
        for _ in range(200):
            flipped = words.copy()
            flipped[gen.integers(len(words))] ^= np.uint32(1 << int(gen.integers(32)))
            variants.append(flipped.tobytes())
        outcomes = set()
        for variant in variants:
            try:
                decoded = decode_latents(variant, len(latents), tables)
                outcomes.add("decoded")
                assert decoded.shape == latents.shape
            except BitstreamError:
                outcomes.add("error")
        # every one of these is caught: a stream must be the one the encoder writes for what it
        # decodes to (a flipped bit can still, rarely, give another canonical stream: the sections'
        # symbol checksums catch that)
        assert outcomes == {"error"}


def _laplace_stream(rows: int = 300):
    latents = np.round(np.random.default_rng(1).laplace(0, 1.5, (rows, 2))).astype(np.int32)
    tables = build_tables(latents, lambda c, lo, s: np.exp(-np.abs(np.arange(lo, lo + s)) / 1.5))
    return latents, tables, encode_latents(latents, tables)


@pytest.mark.parametrize("extra", [b"\0\0\0\0", b"\x01\0\0\0", b"\xff\xff\xff\xff", b"\0" * 8])
def test_a_stream_followed_by_extra_words_is_refused(extra):
    latents, tables, data = _laplace_stream()
    np.testing.assert_array_equal(decode_latents(data, len(latents), tables), latents)
    with pytest.raises(BitstreamError, match="after the end of the stream|data left after the last row"):
        decode_latents(data + extra, len(latents), tables)


def test_the_coder_record_names_the_running_constriction_and_refuses_another_release():
    from importlib.metadata import version

    from nerfcompress.entropy.coder import CODER, check_coder_record, coder_record

    record = coder_record()
    assert record == {"name": CODER, "constriction": version("constriction")}
    check_coder_record(record)
    check_coder_record({**record, "constriction": record["constriction"].rsplit(".", 1)[0] + ".99"})  # same minor
    major, minor = record["constriction"].split(".")[:2]
    other = f"{major}.{int(minor) + 1}.0"
    with pytest.raises(
        BitstreamError, match=rf"range-coded by constriction {other}.*install constriction=={other[:-2]}"
    ):
        check_coder_record({**record, "constriction": other})
    for bad in (None, "constriction", {**record, "name": "ans"}, {**record, "constriction": "latest"}, {}):
        with pytest.raises(BitstreamError, match="records its coder"):
            check_coder_record(bad)


def test_stored_tables_round_trip_and_refuse_damage():
    tables = ChannelTables(
        lo=np.array([-3, 2**31 - 2], np.int32), freq=(np.array([1, 500, 2], np.uint32), np.array([7, 1], np.uint32))
    )
    payload = pack_tables(tables)
    assert len(payload) == 1 + 1 + 4 + 5 + 1 + 2  # lo, S - 2, counts (500 takes two bytes); again
    back, end = unpack_tables(memoryview(payload + b"x"), 0, 2, "t")
    assert end == len(payload) and back.lo.tolist() == tables.lo.tolist()
    assert [f.tolist() for f in back.freq] == [[1, 500, 2], [7, 1]]
    with pytest.raises(BitstreamError, match="truncated"):
        unpack_tables(memoryview(payload[:-1]), 0, 2, "t")
    for bad, message in (
        (bytes([6, 1, 1, 0, 1]), "counts with minimum 0"),  # a zero count
        (bytes([6, 0]) + bytes([0xFF, 0xFF, 0xFF, 0x07]) * 2, "summing to"),  # 2 x (2**31 - 1)
        (bytes([0xFE, 0xFF, 0xFF, 0xFF, 0x0F, 0, 1, 1]), "leave int32"),  # lo = 2**31 - 1 with S = 2
        (bytes([0, 0x80, 0x80, 0x80, 0x10]), "symbols"),  # S beyond 2**24
    ):
        with pytest.raises(BitstreamError, match=message):
            unpack_tables(memoryview(bad), 0, 1, "t")


def test_the_cheapest_counts_cost_less_than_the_finest_and_more_rows_buy_precision():
    rng = np.random.default_rng(0)
    pmf = np.array([0.02, 0.1, 0.6, 0.2, 0.05, 0.03])

    def cost(counts, histogram):
        bits = histogram @ (np.log2(counts.sum()) - np.log2(counts.astype(np.float64)))
        return bits + 8 * len(pack_tables(ChannelTables(lo=np.zeros(1, np.int32), freq=(counts,))))

    totals = []
    for rows in (50, 200_000):
        histogram = np.bincount(rng.choice(6, size=rows, p=pmf), minlength=6).astype(np.float64)
        counts = cheapest_counts(histogram, histogram)
        assert cost(counts, histogram) < cost(quantize_pmf(histogram, 1 << 16), histogram)
        totals.append(int(counts.sum()))
    assert totals[0] < totals[1]  # more rows buy finer counts
    with pytest.raises(ValueError, match="exceeds"):
        cheapest_counts(np.ones(1 << 17), np.ones(1 << 17))
