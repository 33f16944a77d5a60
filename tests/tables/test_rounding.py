import math

import pytest
import torch

from nerfcompress.tables import RoundingSchedule, hard_round_ste, soft_round_gumbel


def _off_boundary_latents(n: int = 4096) -> torch.Tensor:
    """Latents whose fractional part is at least 0.1 away from 0.5."""
    torch.manual_seed(0)
    base = torch.randint(-5, 5, (n,)).float()
    frac = torch.rand(n) * 0.8
    frac = torch.where(frac < 0.4, frac, frac + 0.2)  # in [0, 0.4) U [0.6, 1.0)
    return base + frac


def test_soft_rounding_stays_between_floor_and_ceil():
    x = _off_boundary_latents()
    y = soft_round_gumbel(x, temperature=1.0)
    assert torch.all(y >= torch.floor(x)) and torch.all(y <= torch.floor(x) + 1)


def test_soft_rounding_approaches_hard_rounding_as_temperature_falls():
    x = _off_boundary_latents()
    err_warm = (soft_round_gumbel(x, 1.0) - torch.round(x)).abs().mean()
    err_cold = (soft_round_gumbel(x, 0.01) - torch.round(x)).abs().mean()
    assert err_cold < 0.01
    assert err_warm > 5 * err_cold


def test_soft_rounding_is_a_biased_coin_toward_the_nearer_integer():
    torch.manual_seed(0)
    x = torch.full((20000,), 2.3)
    y = soft_round_gumbel(x, 1.0)
    # P(down) = exp(-atanh(r)) / (exp(-atanh(r)) + exp(-atanh(1 - r))) with r = 0.3
    expected = 1 / (1 + math.exp(math.atanh(0.3) - math.atanh(0.7)))
    assert (y.round() == 2).float().mean() == pytest.approx(expected, abs=0.02)


def test_soft_rounding_passes_gradients_to_latents():
    x = _off_boundary_latents(256).requires_grad_(True)
    soft_round_gumbel(x, 0.5).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def _soft_round_by_autograd(x: torch.Tensor, temperature: float) -> torch.Tensor:
    """The soft rounding written as plain differentiable torch, to check the analytic backward."""
    floor = torch.floor(x).detach()
    r = (x - floor).clamp(1e-6, 1 - 1e-6)
    logit_difference = (torch.atanh(r) - torch.atanh(1 - r)) / temperature
    return floor + torch.sigmoid(logit_difference + torch.logit(torch.rand_like(r), eps=1e-6))


@pytest.mark.parametrize("temperature", [1.0, 0.2, 0.05])
def test_soft_rounding_values_and_gradient_match_autograd_of_the_formula(temperature):
    x = (3 * _off_boundary_latents(3000).double().view(1000, 3)).requires_grad_(True)
    weights = torch.randn(1000, 3, dtype=torch.float64)
    torch.manual_seed(7)
    fused = soft_round_gumbel(x, temperature)
    (fused_grad,) = torch.autograd.grad((fused * weights).sum(), x)
    torch.manual_seed(7)
    reference = _soft_round_by_autograd(x, temperature)
    (reference_grad,) = torch.autograd.grad((reference * weights).sum(), x)
    torch.testing.assert_close(fused, reference, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(fused_grad, reference_grad, rtol=1e-7, atol=1e-9)


def test_soft_rounding_takes_its_noise_from_the_given_uniform_draw():
    x = _off_boundary_latents(1000)
    uniform = torch.rand(1000)
    assert torch.equal(soft_round_gumbel(x, 0.5, uniform), soft_round_gumbel(x, 0.5, uniform))
    low, high = (
        soft_round_gumbel(x, 0.5, torch.full_like(x, 1e-3)),
        soft_round_gumbel(x, 0.5, torch.full_like(x, 0.999)),
    )
    assert torch.all(low < high)  # more uniform, more rounding up
    with pytest.raises(ValueError, match="uniform must have the latents' shape"):
        soft_round_gumbel(x, 0.5, uniform[:10])


def test_soft_rounding_rejects_non_positive_temperature():
    with pytest.raises(ValueError, match="temperature"):
        soft_round_gumbel(torch.zeros(3), 0.0)


def test_hard_round_ste_forward_rounds_and_backward_is_identity():
    x = torch.tensor([-1.7, -0.2, 0.4, 2.6], requires_grad=True)
    y = hard_round_ste(x)
    assert torch.equal(y.detach(), torch.tensor([-2.0, 0.0, 0.0, 3.0]))
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones(4))


def test_schedule_endpoints_and_geometric_decay():
    s = RoundingSchedule(temperature_start=1.0, temperature_end=0.01, anneal_start_step=100, anneal_end_step=300)
    assert s.temperature(0) == pytest.approx(1.0)
    assert s.temperature(100) == pytest.approx(1.0)
    assert s.temperature(200) == pytest.approx(math.sqrt(0.01))
    assert s.temperature(300) == pytest.approx(0.01)
    assert s.temperature(10_000) == pytest.approx(0.01)
    temps = [s.temperature(k) for k in range(0, 400, 10)]
    assert all(a >= b for a, b in zip(temps, temps[1:], strict=False))
    assert not s.hard_rounding(299) and s.hard_rounding(300)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(anneal_start_step=500, anneal_end_step=100), "anneal_end_step"),
        (dict(anneal_start_step=100, anneal_end_step=100), "anneal_end_step"),
        (dict(temperature_start=0.0), "temperature_start"),
        (dict(temperature_start=1.0, temperature_end=2.0), "temperature_end"),
        (dict(anneal_start_step=-1), "anneal_start_step"),
    ],
)
def test_schedule_rejects_nonsense(kwargs, name):
    with pytest.raises(ValueError, match=name):
        RoundingSchedule(**kwargs)
