import numpy as np
import pytest
import torch

from nerfcompress.entropy.coder import build_tables, estimate_bits
from nerfcompress.tables import PlainTable, RoundingSchedule, ShaciraTable


def _shacira(rows: int = 64, features: int = 2, latent_dim: int = 2, **kw) -> ShaciraTable:
    torch.manual_seed(0)
    return ShaciraTable(rows, features, latent_dim=latent_dim, latent_init_scale=3.0, **kw)


def test_plain_table_decodes_to_its_rows_and_counts_fp16():
    table = PlainTable(10, 4)
    assert table() is table.rows
    assert set(table.parameter_groups()) == {"grids"}


def test_level_rows_default_to_one_level_and_must_sum_to_the_rows():
    assert PlainTable(10, 4).level_rows == (10,) and PlainTable(10, 4).num_levels == 1
    assert ShaciraTable(10, 2, level_rows=[2, 8]).level_rows == (2, 8)
    for level_rows in ((2, 7), (), (10, 0)):
        with pytest.raises(ValueError, match="level_rows"):
            PlainTable(10, 4, level_rows=level_rows)


def test_shacira_eval_decodes_rounded_latents_through_the_shared_decoder():
    table = _shacira().eval()
    with torch.no_grad():
        expected = table.decoder(torch.round(table.latents))
        assert torch.equal(table(), expected)
        assert table.integer_latents().dtype == torch.int32
        assert torch.equal(table.integer_latents().float(), torch.round(table.latents))


def test_shacira_eval_table_is_cached_and_refreshed_after_training():
    table = _shacira().eval()
    with torch.no_grad():
        first = table()
        assert table() is first
    table.train()
    with torch.no_grad():
        table.latents.add_(1.0)
    table.eval()
    with torch.no_grad():
        assert not torch.equal(table(), first)


def test_shacira_training_phases_follow_the_step():
    schedule = RoundingSchedule(temperature_start=1.0, temperature_end=0.1, anneal_start_step=0, anneal_end_step=10)
    table = _shacira(schedule=schedule).train()
    table.set_step(5)
    assert float(table.temperature) == pytest.approx(schedule.temperature(5))
    assert not bool(table.hard_rounding)
    soft = table.quantized_latents()
    assert not torch.equal(soft, torch.round(table.latents))  # stochastic soft values
    table.set_step(10)
    assert bool(table.hard_rounding)
    hard = table.quantized_latents()
    assert torch.equal(hard.detach(), torch.round(table.latents.detach()))
    hard.sum().backward()
    assert torch.equal(table.latents.grad, torch.ones_like(table.latents))  # straight-through


def test_shacira_rounding_state_survives_state_dict_round_trip():
    schedule = RoundingSchedule(anneal_end_step=100)
    table = _shacira(schedule=schedule)
    table.set_step(150)
    restored = _shacira(schedule=schedule)
    restored.load_state_dict(table.state_dict())
    assert bool(restored.hard_rounding) and float(restored.temperature) == float(table.temperature)
    assert torch.equal(restored.integer_latents(), table.integer_latents())


def test_shacira_rate_gradient_reaches_latents_and_prior():
    table = _shacira().train()
    table.rate_bits().backward()
    assert table.latents.grad is not None and table.latents.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in table.prior.parameters())
    assert table.decoder.weight.grad is None  # the rate does not depend on the decoder


def test_shacira_per_level_prior_gives_every_level_its_densities_and_they_all_learn():
    rows = [40, 100, 160]
    table = ShaciraTable(sum(rows), 2, level_rows=rows, decoder="per-level", per_level_prior=True, rate_row_stride=2)
    table.train()
    table.rate_bits().backward()
    assert table.latents.grad.abs().sum() > 0
    for name, param in table.prior.named_parameters():  # every level's densities learn (rows of all levels sampled)
        per_density = param.grad.flatten(1).abs().sum(dim=1)
        assert bool((per_density > 0).all()), name
    table.eval()
    groups = torch.repeat_interleave(torch.arange(3), torch.tensor(rows))
    assert torch.equal(table.rate_bits(), table.prior.rate_bits(table.latents, groups=groups))  # eval: every row
    shared = ShaciraTable(sum(rows), 2, level_rows=rows, decoder="per-level")
    assert shared.prior.num_densities == 2 and table.prior.num_densities == 2 * len(rows)


def test_shacira_rounding_and_rate_of_a_step_share_one_noise_draw(monkeypatch):
    table = _shacira(schedule=RoundingSchedule(anneal_end_step=100)).train()
    draws = []
    real_rand_like = torch.rand_like
    monkeypatch.setattr(torch, "rand_like", lambda x, **kw: draws.append(x.shape) or real_rand_like(x, **kw))
    table.decode()
    table.rate_bits()
    assert len(draws) == 1  # one step: shared
    table.decode()
    table.decode()
    assert len(draws) == 3  # each repeated use gets a fresh draw
    table.rate_bits()
    table.rate_bits()
    assert len(draws) == 4
    table.eval()
    table.rate_bits()  # evaluation: exact bits, no noise
    assert len(draws) == 4 and table._uniform is None


def test_shacira_strided_training_rate_is_an_unbiased_estimate_of_the_full_rate():
    full, strided = _shacira(rows=300).train(), _shacira(rows=300, rate_row_stride=3).train()
    torch.manual_seed(1)
    with torch.no_grad():
        full_samples = torch.stack([full.rate_bits() for _ in range(1500)])
        strided_samples = torch.stack([strided.rate_bits() for _ in range(1500)])
    assert float(strided_samples.mean()) == pytest.approx(float(full_samples.mean()), rel=0.01)
    assert float(strided_samples.std()) > 1.5 * float(full_samples.std())  # sampling rows adds variance
    strided.rate_bits().backward()
    rows_with_gradient = (strided.latents.grad.abs().sum(dim=1) > 0).sum()
    assert int(rows_with_gradient) == 100  # one row in three this step
    assert float(strided.eval().rate_bits()) == pytest.approx(float(full.eval().rate_bits()))  # eval: every row
    with pytest.raises(ValueError, match="rate_row_stride"):
        ShaciraTable(10, 2, rate_row_stride=0)


def test_shacira_parameter_groups_partition_its_parameters():
    table = _shacira()
    groups = table.parameter_groups()
    ids = [id(p) for params in groups.values() for p in params]
    assert sorted(ids) == sorted(id(p) for p in table.parameters())
    assert {id(p) for p in groups["entropy"]} == {id(p) for p in table.prior.parameters()}
    assert groups["latents"] == [table.latents]


def test_shacira_latents_learn_at_the_rate_divided_by_the_decoder_norm():
    table = _shacira()
    with torch.no_grad():
        table.decoder.weight.copy_(torch.tensor([[0.3, 0.0], [0.0, 0.4]]))  # Frobenius norm 0.5
    assert table.decoder_norm() == pytest.approx(0.5)
    table.set_step(0)  # the scale uses the norm the step callback read (on CPU: at once)
    assert table.learning_rate_scales() == {"latents": pytest.approx(2.0)}
    assert table.training_state()["shacira_decoder_norm"] == pytest.approx(0.5)
    with torch.no_grad():
        table.decoder.weight.zero_()
    table.set_step(1)
    assert all(np.isfinite(v) for v in table.learning_rate_scales().values())


def test_shacira_learning_rate_scale_is_bounded_by_the_decoder_norm_floor():
    table = ShaciraTable(64, 2, latent_dim=2, decoder="shared", min_decoder_norm=0.01)
    with torch.no_grad():
        table.decoder.weight.fill_(1e-6)  # a decoder the rate term switched off
    table.set_step(0)
    assert table.learning_rate_scales() == {"latents": pytest.approx(100.0)}
    with torch.no_grad():
        table.decoder.weight.copy_(torch.tensor([[0.3, 0.0], [0.0, 0.4]]))
    table.set_step(1)
    assert table.learning_rate_scales() == {"latents": pytest.approx(2.0)}  # above the floor: unchanged
    with pytest.raises(ValueError, match="min_decoder_norm"):
        ShaciraTable(64, 2, min_decoder_norm=0.0)


def test_shacira_codes_with_its_latents_own_frequencies_which_beat_the_prior():
    table = _shacira(rows=4096)
    with torch.no_grad():  # a peaked distribution the untrained prior does not know
        table.latents.copy_(torch.from_numpy(np.random.default_rng(0).laplace(0, 0.7, (4096, 2))))
    latents = table.integer_latents().numpy()
    counts = [np.bincount(latents[:, c] - latents[:, c].min()) for c in range(2)]
    entropy_bits = sum(-(n[n > 0] * np.log2(n[n > 0] / n.sum())).sum() for n in counts)
    coded = table.coding_tables(latents)
    assert estimate_bits(latents, coded) == pytest.approx(entropy_bits, rel=0.01)  # the empirical entropy
    assert estimate_bits(latents, coded) < 0.9 * estimate_bits(latents, build_tables(latents, table.prior.pmf))


@pytest.mark.parametrize(
    "kwargs, name", [(dict(latent_dim=0), "latent_dim"), (dict(latent_init_scale=-1.0), "latent_init_scale")]
)
def test_shacira_rejects_nonsense(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ShaciraTable(8, 2, **kwargs)


def test_shacira_hard_phase_can_take_the_rate_of_the_rounded_latents():
    table = ShaciraTable(64, 2, schedule=RoundingSchedule(anneal_end_step=10), rounded_rate=True)
    table.train()
    table.set_step(5)  # soft rounding: the rate of noisy latents, a new draw each time
    assert float(table.rate_bits()) != float(table.rate_bits())
    table.set_step(10)  # hard rounding: the code length of the rounded latents, no noise
    first, second = table.rate_bits(), table.rate_bits()
    assert float(first) == float(second)
    expected = table.prior.code_length_bits(torch.round(table.latents.detach()))
    assert float(first) == pytest.approx(float(expected))
    first.backward()
    assert table.latents.grad.abs().sum() > 0 and all(p.grad is not None for p in table.prior.parameters())


def test_shacira_training_reads_schedule_state_from_host_mirrors_that_follow_loading():
    schedule = RoundingSchedule(temperature_start=1.0, temperature_end=0.1, anneal_start_step=0, anneal_end_step=10)
    trained = _shacira(schedule=schedule)
    trained.set_step(12)
    fresh = _shacira(schedule=schedule)
    assert fresh.training_state()["shacira_hard_rounding"] == 0.0
    fresh.load_state_dict(trained.state_dict())  # e.g. resuming: the buffers say "hard rounding"
    assert fresh.training_state()["shacira_hard_rounding"] == 1.0
    assert fresh.training_state()["shacira_temperature"] == pytest.approx(schedule.temperature(12))
    fresh.train()
    assert torch.equal(fresh.quantized_latents(), torch.round(fresh.latents))


def test_shacira_training_rate_uses_a_knot_window_that_covers_the_latents():
    table = _shacira(rows=500).train()
    with torch.no_grad():
        table.latents.mul_(10.0)  # far outside the window set at construction
    table.set_step(1)  # reads the range (at once on CPU)
    span = table._rate_knot_span
    assert span >= float(table.latents.detach().max() - table.latents.detach().min()) + 4
    uniform = table._training_uniform("rounding")  # the draw rate_bits() shares with the rounding
    exact = table.prior.rate_bits(table.latents, uniform)  # knot window measured on the host
    assert torch.equal(table.rate_bits(), exact)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_lagged_host_copy_on_cuda_never_waits_and_delivers_the_values():
    from nerfcompress.tables.host_values import LaggedHostCopy

    reading = LaggedHostCopy()
    values = torch.tensor([1.0, 2.0], device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        first = reading.read(values)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert first is None
    torch.cuda.synchronize()
    assert reading.read(values * 2) == [1.0, 2.0]
