"""SHACIRA's latent decoders: integer latents ``[rows, D]`` -> features ``[rows, F]``.

``shared`` is the paper's decoder, one linear map ``R^D -> R^F`` for every level.
``per-level`` gives each level its own diagonal affine map (``D == F``): a scale and a shift
per level and feature, so each latent channel is one feature quantised on its own uniform
lattice. A linear map in front of nerfacto's MLP adds no expressive power (the MLP's first
layer absorbs it); what the decoder must not do is lose rank. The shared 2x2 decoder does:
Adam moves every weight by about its learning rate per step whatever the gradient's size, so
from a small start the weights grow into a scaled sign matrix, whose rank is 1 for half the sign
patterns (measured on lego100 after 800 steps from weights in +-0.01: all four weights 0.034 to
0.044 in magnitude, columns anti-parallel, ``|det W|`` 0.8 % of the product of the column norms;
from +-0.05 at lambda 1e-2: the columns 11 degrees apart). A diagonal decoder keeps rank ``D``
by construction.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import Tensor, nn

DecoderKind = Literal["shared", "per-level"]
DECODER_KINDS = ("shared", "per-level")


class LinearDecoder(nn.Linear):
    """The paper's decoder: one linear map ``[rows, D] -> [rows, F]`` shared by all levels.

    Args:
        latent_dim: ``D``.
        num_features: ``F``.
        init_scale: weights start uniform in ``[-s, s]``, the bias at zero.
    """

    per_level = False
    """Whether every parameter is ``[L, ...]``, row ``l`` level ``l``'s alone (stored in the level's section)."""

    def __init__(self, latent_dim: int, num_features: int, init_scale: float) -> None:
        super().__init__(latent_dim, num_features)
        nn.init.uniform_(self.weight, -init_scale, init_scale)
        nn.init.zeros_(self.bias)

    def lattice_norm(self) -> Tensor:
        """Frobenius norm of the weight ``[F, D]``: how far one unit step of the latents moves a row."""
        return self.weight.detach().norm()

    def level_norms(self, num_levels: int) -> Tensor:
        """``[L]``: every level's lattice norm (the one shared map's)."""
        return self.lattice_norm().expand(num_levels)

    @torch.no_grad()
    def absorb_offset(self, level: int, offset: Tensor) -> None:
        """Makes ``decode(q)`` equal the old ``decode(q + offset)`` (``offset [D]``); the map is
        shared, so this holds for every level: callers use it for one-level tables only."""
        self.bias += self.weight @ offset.to(self.weight)


class LevelDiagonalDecoder(nn.Module):
    """One diagonal affine map per level: ``features = latents * scale[l] + shift[l]`` (``D == F``).

    Args:
        level_rows: rows of each level, level 0 first.
        num_features: ``F`` (= ``D``).
        init_scale: every scale starts at ``s`` (the lattice step of every feature), shifts at 0.
    """

    per_level = True
    """Every parameter is ``[L, F]``, row ``l`` level ``l``'s alone (stored in the level's section)."""

    def __init__(self, level_rows: Sequence[int], num_features: int, init_scale: float) -> None:
        super().__init__()
        num_levels = len(level_rows)
        self.scale = nn.Parameter(torch.full((num_levels, num_features), float(init_scale)))  # [L, F]
        self.shift = nn.Parameter(torch.zeros(num_levels, num_features))  # [L, F]
        self.register_buffer("level_rows", torch.tensor(list(level_rows), dtype=torch.int64), persistent=False)  # [L]

    def forward(self, latents: Tensor) -> Tensor:
        """``[rows, F]`` from ``latents [rows, F]``, level ``l``'s rows with level ``l``'s map."""
        rows = latents.shape[0]  # level_rows is a buffer: on the module's device, no copy (nor host sync) per call
        scale = torch.repeat_interleave(self.scale, self.level_rows, dim=0, output_size=rows)  # [rows, F]
        shift = torch.repeat_interleave(self.shift, self.level_rows, dim=0, output_size=rows)  # [rows, F]
        return torch.addcmul(shift, latents, scale)

    def lattice_norm(self) -> Tensor:
        """Root mean square over levels of each level's scale norm (the Frobenius norm of its
        diagonal map): how far one unit step of the latents moves a row, on average."""
        return self.scale.detach().square().sum(dim=1).mean().sqrt()

    def level_norms(self, num_levels: int) -> Tensor:
        """``[L]``: each level's scale norm."""
        return self.scale.detach().norm(dim=1)

    @torch.no_grad()
    def absorb_offset(self, level: int, offset: Tensor) -> None:
        """Makes level ``level``'s ``decode(q)`` equal its old ``decode(q + offset)`` (``offset [F]``)."""
        self.shift[level] += offset.to(self.scale) * self.scale[level]


def build_decoder(
    kind: DecoderKind, latent_dim: int, num_features: int, level_rows: Sequence[int], init_scale: float
) -> nn.Module:
    """The decoder of ``kind`` (see the module docstring).

    Raises:
        ValueError: unknown ``kind``, or ``per-level`` with ``latent_dim != num_features``.
    """
    if kind == "shared":
        return LinearDecoder(latent_dim, num_features, init_scale)
    if kind == "per-level":
        if latent_dim != num_features:
            raise ValueError(
                f"the per-level decoder maps each latent to one feature: latent_dim must equal the features per "
                f"level ({num_features}), got {latent_dim}; use decoder 'shared' for other latent dims"
            )
        return LevelDiagonalDecoder(level_rows, num_features, init_scale)
    raise ValueError(f"decoder must be one of {', '.join(DECODER_KINDS)}, got {kind!r}")
