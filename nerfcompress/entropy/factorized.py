"""Learned factorised density over integer latents (Ballé et al. 2018, appendix 6.1).

One univariate density per latent channel, shared by all grid rows. Its cumulative
``P(v) = sigmoid(f(v))`` is a small monotone network ``f`` per channel (softplus-positive
matrices, tanh gates), as in CompressAI's ``EntropyBottleneck._logits_cumulative``. The mass
of an integer ``v`` is ``P(v + 1/2) - P(v - 1/2)``; training adds uniform noise so that the
mass of the noisy latent is a differentiable proxy for the code length of the rounded one.

Example:
    >>> prior = FactorizedPrior(num_channels=2)
    >>> latents = torch.randn(1000, 2, requires_grad=True)
    >>> prior.rate_bits(latents).backward()   # gradient reaches latents and prior
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

_LIKELIHOOD_BOUND = 1e-9
_KNOTS_PER_UNIT = 32  # knot spacing 1/32 of the interpolated training-time code length; even
_GROUP_EDGE = 1e-3  # knot units a grouped lookup stays inside its group's stretch of knots


class _LowerBound(torch.autograd.Function):
    """``max(x, bound)`` whose gradient still lets values below the bound rise.

    Same rule as CompressAI's ``compressai/ops/bound_ops.py``: the gradient passes where
    ``x >= bound`` or where descending it would increase ``x`` (``grad < 0``), so a
    likelihood stuck at the floor can still be pushed up by the rate loss.
    """

    @staticmethod
    def forward(ctx, x: Tensor, bound: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        passes = (x >= ctx.bound) | (grad_output < 0)
        return grad_output * passes, None


class _InterpolatedSum(torch.autograd.Function):
    """``sum_{d,n} lerp(knots[d], position[d, n])``: piecewise-linear lookup, summed.

    ``knots [D, K]`` hold a function's values at integer positions; ``position [D, N]`` is in
    knot units, clamped to the knot range. The backward forms both gradients directly (a gather
    for the positions, two ``scatter_add_`` into ``[D, K]`` for the knots) instead of replaying
    the gathers and products, about half the time of autograd's version on CPU.
    """

    @staticmethod
    def forward(ctx, knots: Tensor, position: Tensor) -> Tensor:
        num_knots = knots.shape[1]
        index = position.detach().floor().long().clamp_(0, num_knots - 2)  # int64 [D, N]
        frac = position.detach() - index  # [D, N]
        slope_at = torch.gather(torch.diff(knots, dim=1), 1, index)  # [D, N]
        ctx.save_for_backward(index, frac, slope_at)
        ctx.num_knots = num_knots
        return torch.addcmul(torch.gather(knots, 1, index), frac, slope_at).sum()

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor | None, Tensor | None]:
        index, frac, slope_at = ctx.saved_tensors
        grad_knots = grad_position = None
        if ctx.needs_input_grad[0]:
            shape = (index.shape[0], ctx.num_knots)
            grad_knots = frac.new_zeros(shape).scatter_add_(1, index, 1.0 - frac)  # left knot weights
            grad_knots[:, 1:] += frac.new_zeros(shape).scatter_add_(1, index, frac)[:, :-1]  # right knot
            grad_knots *= grad_output
        if ctx.needs_input_grad[1]:
            grad_position = slope_at * grad_output
        return grad_knots, grad_position


def knot_span_bound(smallest: float, largest: float, margin: float = 0.0) -> int:
    """A ``knot_span`` for :meth:`FactorizedPrior.rate_bits` in training, from the latents' range.

    The noisy latents lie in ``[smallest - 1/2, largest + 1/2)``, the knots start at
    ``floor(smallest - 1/2) - 1`` and must reach ``ceil(largest + 1/2) + 1``. ``margin`` widens
    the range on both sides (for latents read some steps earlier); the result is rounded up to
    a multiple of 8 so that the knot tensor's shape rarely changes.
    """
    low = math.floor(smallest - margin - 0.5) - 1
    high = math.ceil(largest + margin + 0.5) + 1
    return -(-(high - low) // 8) * 8


class FactorizedPrior(nn.Module):
    """Per-channel learned CDF over latents ``[rows, D]``.

    Args:
        num_channels: ``D``, the number of latent channels (one density each).
        filters: hidden widths of the per-channel monotone network.
        init_scale: initial width of the density; the initial network maps ``v`` to about
            ``v / init_scale`` before the biases.
        num_groups: ``G``, densities per channel: row ``r`` of group ``g[r]`` (given to every
            rate call) is coded under its channels' group-``g`` densities. SHACIRA's grids make
            each level a group, as the file codes each level under tables of its own.

    Raises:
        ValueError: if ``num_channels < 1``, ``num_groups < 1``, a filter is ``< 1`` or ``init_scale <= 0``.
    """

    def __init__(
        self, num_channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0, num_groups: int = 1
    ):
        super().__init__()
        if num_channels < 1:
            raise ValueError(f"num_channels must be >= 1, found {num_channels}")
        if num_groups < 1:
            raise ValueError(f"num_groups must be >= 1, found {num_groups}")
        if any(f < 1 for f in filters):
            raise ValueError(f"every filter width must be >= 1, found {tuple(filters)}")
        if not init_scale > 0:
            raise ValueError(f"init_scale must be > 0, found {init_scale}")
        self.num_channels = num_channels
        self.num_groups = int(num_groups)
        self.num_densities = num_channels * self.num_groups  # density c * num_groups + g: channel c, group g
        self.filters = tuple(int(f) for f in filters)
        widths = (1, *self.filters, 1)
        scale = init_scale ** (1.0 / (len(widths) - 1))
        self.matrices = nn.ParameterList()  # [C G, w_out, w_in] each, softplus-positive
        self.biases = nn.ParameterList()  # [C G, w_out, 1] each
        self.factors = nn.ParameterList()  # [C G, w_out, 1] each, tanh gates (hidden layers only)
        for i in range(len(widths) - 1):
            w_in, w_out = widths[i], widths[i + 1]
            init = float(np.log(np.expm1(1.0 / scale / w_out)))
            self.matrices.append(nn.Parameter(torch.full((self.num_densities, w_out, w_in), init)))
            self.biases.append(nn.Parameter(torch.empty(self.num_densities, w_out, 1).uniform_(-0.5, 0.5)))
            if i < len(widths) - 2:
                self.factors.append(nn.Parameter(torch.zeros(self.num_densities, w_out, 1)))

    def _check_groups(self, values: Tensor, groups: Optional[Tensor]) -> None:
        if self.num_groups == 1:
            if groups is not None:
                raise ValueError("groups are given to a prior of one group")
        elif groups is None or groups.shape != values.shape[:1]:
            raise ValueError(
                f"a prior of {self.num_groups} groups needs the group of every row, int64 [{values.shape[0]}], "
                f"got {None if groups is None else tuple(groups.shape)}"
            )

    def _check(self, values: Tensor) -> None:
        if values.ndim != 2 or values.shape[-1] != self.num_channels:
            raise ValueError(f"expected values of shape [rows, {self.num_channels}], found {tuple(values.shape)}")

    def _logits(self, x: Tensor) -> Tensor:
        """Cumulative logits of ``x [D G, 1, N]`` (one row per density) -> ``[D G, 1, N]``, in ``x``'s dtype (at least
        float32: autocast is off here, so mixed-precision training computes the rate in fp32)."""
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        with torch.autocast(x.device.type, enabled=False):
            for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases)):
                x = torch.matmul(F.softplus(matrix.to(x)), x) + bias.to(x)
                if i < len(self.factors):
                    x = x + torch.tanh(self.factors[i].to(x)) * torch.tanh(x)
        return x

    def cumulative_logits(self, values: Tensor) -> Tensor:
        """Logits of the CDF, ``P(values) = sigmoid(logits)``, monotone in ``values``.

        Args:
            values: points to evaluate, ``[rows, D]``.

        Returns:
            Logits ``[rows, D]``.

        Raises:
            ValueError: if ``values`` is not ``[rows, D]``.
        """
        self._check(values)
        self._check_groups(values, None)
        return self._logits(values.t().unsqueeze(1)).squeeze(1).t()

    def _mass(self, values: Tensor) -> Tensor:
        """``P(v + 1/2) - P(v - 1/2)`` for ``values [D, N]`` -> ``[D, N]``, unbounded."""
        n = values.shape[-1]
        edges = torch.cat([values - 0.5, values + 0.5], dim=-1).unsqueeze(1)  # [D, 1, 2N]
        logits = self._logits(edges).squeeze(1)
        lower, upper = logits[:, :n], logits[:, n:]
        # Sign trick: evaluate both sigmoids in the tail where they are far from 1.
        sign = -torch.sign(lower + upper).detach()
        return torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))

    def likelihood(self, values: Tensor) -> Tensor:
        """Mass of the unit interval around each value, floored at 1e-9.

        Args:
            values: latents (noisy or rounded), ``[rows, D]``.

        Returns:
            Likelihoods in ``(0, 1]``, ``[rows, D]``.

        Raises:
            ValueError: if ``values`` is not ``[rows, D]``.
        """
        self._check(values)
        self._check_groups(values, None)
        return _LowerBound.apply(self._mass(values.t()).t(), _LIKELIHOOD_BOUND)

    def _knot_bits(self, lo: Tensor, num_knots: int) -> Tensor:
        """``-log2 (P(v + 1/2) - P(v - 1/2))`` at the knots ``v = lo + k / _KNOTS_PER_UNIT``, ``[D G, K]``.

        Every interval edge is itself a knot (edges lie ``_KNOTS_PER_UNIT / 2`` knots either side
        of the centre), so one network pass over ``K + _KNOTS_PER_UNIT`` points gives all masses.
        Differentiable with respect to the prior; the mass is floored like :meth:`likelihood`.
        """
        half = _KNOTS_PER_UNIT // 2
        steps = torch.arange(num_knots + 2 * half, device=lo.device, dtype=lo.dtype)
        edges = lo - 0.5 + steps / _KNOTS_PER_UNIT  # [K + 2 half]
        logits = self._logits(edges.expand(self.num_densities, 1, -1)).squeeze(1)  # [D G, K + 2 half]
        lower, upper = logits[:, :num_knots], logits[:, 2 * half :]
        sign = -torch.sign(lower + upper).detach()  # evaluate both sigmoids in the tail
        mass = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return -torch.log2(_LowerBound.apply(mass, _LIKELIHOOD_BOUND))

    def _interpolated_bits(
        self, values: Tensor, knot_span: Optional[int] = None, groups: Optional[Tensor] = None
    ) -> Tensor:
        """Sum of ``-log2 mass(v)`` over ``values [D, N]`` (channel-major), knot-interpolated, scalar.

        The code length is evaluated by the network only at knots ``1 / _KNOTS_PER_UNIT`` apart
        that span the values (:meth:`_knot_bits`) and linearly interpolated in between. That
        costs a gather per value instead of the network, and the gradient reaches both the
        values and the network. Channel-major because gathers along the last dimension are
        several times faster on CPU. With groups (``groups [N]``), channel ``d``'s knots of all
        groups lie end to end, ``[D, G K]``, and value ``n`` is looked up in group ``groups[n]``'s
        stretch; its position is clamped to the stretch (no extrapolation past the window).

        The knots start at ``lo = floor(min) - 1`` (computed on the device). They cover
        ``knot_span`` units from there when it is given (no host sync; knots past the values
        change nothing, as every knot sits at a multiple of ``1 / _KNOTS_PER_UNIT``), else exactly
        up to ``ceil(max) + 1``, which reads the range on the host.
        """
        smallest, largest = torch.aminmax(values.detach())
        lo = torch.floor(smallest) - 1.0
        if knot_span is None:
            knot_span = int((torch.ceil(largest) + 1.0 - lo).item())
        num_knots = knot_span * _KNOTS_PER_UNIT + 1
        position = (values - lo) * _KNOTS_PER_UNIT  # [D, N] in knot units
        knots = self._knot_bits(lo, num_knots)  # [D G, K]
        if self.num_groups > 1:
            last = num_knots - 1 - _GROUP_EDGE  # the last position inside a group's stretch
            position = position.clamp(max=last) + groups * num_knots
            knots = knots.view(self.num_channels, self.num_groups * num_knots)
        return _InterpolatedSum.apply(knots, position)

    def _integer_bits(self, values: Tensor, groups: Optional[Tensor] = None) -> Tensor:
        """Exact bits of integer ``values [rows, D]`` (of ``groups [rows]``): the mass of each
        distinct integer once per density."""
        lo = torch.floor(values.detach().min())
        support = int((values.detach().max() - lo).item()) + 1
        grid = lo + torch.arange(support, device=values.device, dtype=values.dtype)
        masses = self._mass(grid.expand(self.num_densities, support))  # [D G, S]
        bits = -torch.log2(_LowerBound.apply(masses, _LIKELIHOOD_BOUND))
        index = (values - lo).long().t()  # [D, rows]
        if self.num_groups > 1:
            index = index + groups * support
        return torch.gather(bits.view(self.num_channels, -1), 1, index).sum()

    def rate_bits(
        self,
        latents: Tensor,
        uniform: Optional[Tensor] = None,
        knot_span: Optional[int] = None,
        groups: Optional[Tensor] = None,
    ) -> Tensor:
        """Estimated code length of the latents in bits.

        .. math:: R = -\\sum_{r,c} \\log_2 p_c(w_{r,c}),

        with ``w = latents + U(-1/2, 1/2)`` in training mode (code lengths interpolated between
        knots, see :meth:`_interpolated_bits`) and ``w = round(latents)`` in eval mode (exact
        masses). In training mode the gradient reaches both the prior and the latents.

        Args:
            latents: continuous latents, ``[rows, D]``.
            uniform: training mode only: a U(0, 1) draw ``[rows, D]`` to make the noise from
                (``uniform - 1/2``); None draws one here.
            knot_span: training mode only: units of the knot window from ``floor(min) - 1``; at
                least ``ceil(max) - floor(min) + 2`` of the noisy latents (:func:`knot_span_bound`),
                else the values past it are extrapolated. None measures it, a host sync on CUDA.
            groups: the group of every row, int64 ``[rows]`` in ``[0, G)``; only with ``G > 1``.

        Returns:
            Scalar rate in bits (divide by ``rows`` for a stable loss scale).

        Raises:
            ValueError: if ``latents`` is not ``[rows, D]``, ``uniform`` not of its shape, or
                ``groups`` missing for a prior of several groups (or given to one of one).
        """
        self._check(latents)
        self._check_groups(latents, groups)
        if not self.training:
            return self._integer_bits(torch.round(latents), groups)
        if uniform is None:
            uniform = torch.rand_like(latents)
        elif uniform.shape != latents.shape:
            raise ValueError(f"uniform must have the latents' shape {tuple(latents.shape)}, got {tuple(uniform.shape)}")
        noisy = torch.add(latents, uniform.detach()).sub_(0.5)  # [rows, D]
        return self.code_length_bits(noisy, knot_span, groups)

    def code_length_bits(
        self, values: Tensor, knot_span: Optional[int] = None, groups: Optional[Tensor] = None
    ) -> Tensor:
        """``-sum log2 mass(v)`` over ``values [rows, D]`` as the training rate computes it (code
        lengths interpolated between knots, :meth:`_interpolated_bits`), scalar, differentiable
        with respect to the values and the prior. :meth:`rate_bits` in training evaluates it at
        noisy latents; SHACIRA's hard-rounding phase at the rounded ones.

        Args:
            values: ``[rows, D]`` values to code.
            knot_span: units of the knot window from ``floor(min) - 1``, at least
                ``ceil(max) - floor(min) + 2`` of the values (:func:`knot_span_bound`); None
                measures it, a host sync on CUDA.
            groups: the group of every row, int64 ``[rows]``; only with ``G > 1``.

        Raises:
            ValueError: if ``values`` is not ``[rows, D]``, or ``groups`` as in :meth:`rate_bits`.
        """
        self._check(values)
        self._check_groups(values, groups)
        return self._interpolated_bits(values.t().contiguous(), knot_span, groups)

    @torch.no_grad()
    def pmf(self, channel: int, lo: int, support: int, group: int = 0) -> np.ndarray:
        """Masses of the integers ``lo .. lo + support - 1`` for one channel (of one group).

        Evaluated on CPU in float64 (the tail mass outside the range is left out; the integer
        quantiser renormalises). Used once at export time to build integer coding tables.

        Args:
            channel: channel index in ``[0, D)``.
            group: group index in ``[0, G)``.
            lo: smallest integer of the range.
            support: ``S``, number of integers, ``>= 1``.

        Returns:
            float64 ``[S]`` masses in ``[0, 1]``.

        Raises:
            ValueError: if ``channel`` or ``support`` is out of range.
        """
        if not 0 <= channel < self.num_channels:
            raise ValueError(f"channel must be in [0, {self.num_channels}), found {channel}")
        if not 0 <= group < self.num_groups:
            raise ValueError(f"group must be in [0, {self.num_groups}), found {group}")
        if support < 1:
            raise ValueError(f"support must be >= 1, found {support}")
        values = torch.arange(support, dtype=torch.float64) + float(lo)  # [S]
        masses = self._mass(values.expand(self.num_densities, support))  # [D G, S]
        return masses[channel * self.num_groups + group].numpy()
