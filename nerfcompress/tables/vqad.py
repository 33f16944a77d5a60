"""VqadTable: a b-bit codebook index per row, one learned codebook per level.

VQAD (Takikawa et al., "Variable Bitrate Neural Fields", SIGGRAPH 2022). Level ``l`` has a
codebook ``D_l [K = 2**b, F]``; each of its rows stores an index ``V[r]`` into it, and the row's
features are ``D_l[V[r]]``. Indexing is not differentiable, so training keeps soft-index logits
``C [rows, K]`` with ``V = argmax C`` and uses a straight-through estimator:

.. math:: Z = D[\\arg\\max C] + \\sigma(C) D - \\mathrm{sg}(\\sigma(C) D)

The forward value is the hard lookup (exactly; the last two terms cancel to zero first); the
logits get the gradient of the soft lookup ``softmax(C) @ D`` and the codebook the gradient of
the hard lookup. This is the gradient of the reference implementation (kaolin-wisp's
``CodebookOctreeGrid``, which multiplies straight-through one-hot keys by the codebook), computed
at table level instead of per sample, by one autograd function (:class:`_StraightThroughLookup`)
whose forward is only the hard gather and whose backward forms the softmax's gradient directly,
so the soft lookup's value is never computed.

The file stores fp16 codebooks and, per level, the indices either bit-packed at ``b`` bits per
row or range-coded with the level's own frequency tables, whichever is smaller
(:mod:`nerfcompress.entropy.indices`); the logits are training state only. A table built with
``fixed_indices=True`` (what an imported file needs) keeps the hard indices as a ``uint8``
buffer instead: ``K`` times less memory than the fp32 logits, and the indices no longer train.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from nerfcompress.tables.base import FeatureTable
from nerfcompress.tables.symbols import FloatPart, IndexPart, SymbolLayout, TableSymbols

MAX_BITS = 8  # indices are stored as uint8


class _StraightThroughLookup(torch.autograd.Function):
    """Hard codebook lookup forward, soft-lookup gradient for the logits (see the module docstring).

    forward(logits ``[rows, K]``, codebooks ``[L, K, F]``, level_of_row int64 ``[rows]``,
    level_rows tuple of L ints) -> ``[rows, F]``. With ``P = softmax(C)`` and upstream gradient
    ``G [rows, F]``, the backward gives the logits ``P * (G D^T - sum_k P * G D^T)`` per level (the
    softmax gradient of ``P @ sg(D)``) and the codebooks the hard lookup's gradient, ``G``
    accumulated at each row's code.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, codebooks: Tensor, level_of_row: Tensor, level_rows: tuple) -> Tensor:
        codebook_size = codebooks.shape[1]
        flat_indices = level_of_row * codebook_size + logits.argmax(dim=-1)  # int64 [rows]
        ctx.save_for_backward(logits, codebooks, flat_indices)
        ctx.level_rows = level_rows
        return codebooks.flatten(0, 1).index_select(0, flat_indices)

    @staticmethod
    def backward(ctx, grad_rows: Tensor):
        logits, codebooks, flat_indices = ctx.saved_tensors
        grad_logits = grad_codebooks = None
        if ctx.needs_input_grad[0]:
            grad_logits = torch.empty_like(logits)
            for level, (grad_level, logits_level, out) in enumerate(
                zip(grad_rows.split(ctx.level_rows), logits.split(ctx.level_rows), grad_logits.split(ctx.level_rows))
            ):
                probabilities = torch.softmax(logits_level, dim=-1)  # [rows_l, K]
                torch.mm(grad_level, codebooks[level].detach().t(), out=out)  # dL/dP = G D^T  [rows_l, K]
                out.sub_(torch.linalg.vecdot(probabilities, out).unsqueeze(-1)).mul_(probabilities)
        if ctx.needs_input_grad[1]:
            flat = codebooks.flatten(0, 1)
            grad_codebooks = torch.zeros_like(flat).index_add_(0, flat_indices, grad_rows).view_as(codebooks)
        return grad_logits, grad_codebooks, None, None


class VqadTable(FeatureTable):
    """Vector-quantised rows: soft-index logits for training, hard indices for storage.

    Args:
        level_rows: rows of each level, level 0 first (``GridLayout.level_rows``); rows of all
            levels are concatenated in this order.
        num_features: features per row ``F``.
        bits: index width ``b`` in 1..8; each level's codebook has ``K = 2**b`` entries.
        codebook_init_scale: codebook entries start normal with this standard deviation
            (the reference's ``feature_std``, 0.01 in its NeRF config).
        logit_init_scale: logits start normal with this standard deviation (the reference uses
            ``feature_std`` for both).
        fixed_indices: keep only the hard indices, ``uint8 [rows]`` (all 0 until
            :meth:`assign_codes`), instead of trainable logits; the codebooks still train.

    Raises:
        ValueError: ``bits`` outside 1..8, an empty ``level_rows`` or a level with no rows, or a
            negative init scale.
    """

    def __init__(
        self,
        level_rows: Sequence[int],
        num_features: int,
        bits: int = 4,
        codebook_init_scale: float = 0.01,
        logit_init_scale: float = 0.01,
        fixed_indices: bool = False,
    ) -> None:
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= MAX_BITS:
            raise ValueError(f"bits must be an int in 1..{MAX_BITS} (codebook size 2..256), got {bits!r}")
        if len(level_rows) == 0 or any(int(rows) < 1 for rows in level_rows):
            raise ValueError(f"level_rows must be a non-empty sequence of ints >= 1, got {list(level_rows)}")
        if not codebook_init_scale >= 0:
            raise ValueError(f"codebook_init_scale must be >= 0, got {codebook_init_scale}")
        if not logit_init_scale >= 0:
            raise ValueError(f"logit_init_scale must be >= 0, got {logit_init_scale}")
        if not isinstance(fixed_indices, bool):
            raise ValueError(f"fixed_indices must be a bool, got {fixed_indices!r}")
        super().__init__(sum(int(rows) for rows in level_rows), num_features, level_rows)
        self.bits = bits
        self.codebook_size = 2**bits
        self.fixed_indices = fixed_indices
        num_levels = len(self.level_rows)
        if fixed_indices:
            self.register_buffer("indices", torch.zeros(self.num_rows, dtype=torch.uint8))  # uint8 [rows]
        else:
            self.logits = nn.Parameter(  # [rows, K]
                torch.randn(self.num_rows, self.codebook_size) * logit_init_scale
            )
        self.codebooks = nn.Parameter(  # [L, K, F]
            torch.randn(num_levels, self.codebook_size, num_features) * codebook_init_scale
        )
        self.register_buffer("level_of_row", self.level_of_rows(), persistent=False)  # int64 [rows]

    def integer_indices(self) -> Tensor:
        """The indices the file stores, ``uint8 [rows]`` in ``[0, K)``: argmax of the logits (or
        the fixed indices)."""
        if self.fixed_indices:
            return self.indices.clone()
        return self.logits.detach().argmax(dim=-1).to(torch.uint8)

    def hard_lookup(self, indices: Tensor) -> Tensor:
        """Rows of each level's codebook, ``[rows, F]``, for indices ``[rows]`` in ``[0, K)``."""
        flat_indices = self.level_of_row * self.codebook_size + indices.long()  # int64 [rows]
        return self.codebooks.flatten(0, 1).index_select(0, flat_indices)

    def decode(self) -> Tensor:
        """``[rows, F]``: the hard lookup; in training with the straight-through gradient (with
        fixed indices, the codebooks' gradient only)."""
        if self.fixed_indices:
            return self.hard_lookup(self.indices)
        if not self.training:
            return self.hard_lookup(self.logits.detach().argmax(dim=-1))
        return _StraightThroughLookup.apply(self.logits, self.codebooks, self.level_of_row, self.level_rows)

    @torch.no_grad()
    def assign_codes(self, indices: Tensor, codebooks: Tensor) -> None:
        """Makes the table decode to ``codebooks[level(r), indices[r]]`` (e.g. after import or
        post-hoc k-means): the codebooks are copied and the logits become one-hot (or the fixed
        indices are set).

        Args:
            indices: integer ``[rows]`` in ``[0, K)``.
            codebooks: ``[L, K, F]``.

        Raises:
            ValueError: wrong shapes or indices out of range.
        """
        if tuple(indices.shape) != (self.num_rows,) or indices.is_floating_point():
            raise ValueError(
                f"indices must be an integer tensor [{self.num_rows}], got {indices.dtype} {list(indices.shape)}"
            )
        if tuple(codebooks.shape) != tuple(self.codebooks.shape):
            expected = list(self.codebooks.shape)
            raise ValueError(f"codebooks must be [L, K, F] = {expected}, got {list(codebooks.shape)}")
        indices = indices.long()
        if not 0 <= int(indices.min()) <= int(indices.max()) < self.codebook_size:
            raise ValueError(
                f"indices must lie in [0, {self.codebook_size}), got [{int(indices.min())}, {int(indices.max())}]"
            )
        self.codebooks.copy_(codebooks)
        if self.fixed_indices:
            self.indices.copy_(indices.to(torch.uint8))
        else:
            self.logits.zero_().scatter_(1, indices.to(self.logits.device).view(-1, 1), 1.0)
        self.clear_cache()

    def rate_bits(self) -> Tensor:
        """Differentiable estimate of the range-coded bits of the indices, scalar.

        Each level codes its indices with its own frequencies; if every row ``r`` took code
        ``k`` with its soft-index probability ``P[r, k] = softmax(C[r])[k]``, the level would cost
        about ``rows_l * H(mean_r P[r])`` bits. That is what this returns, summed over levels:
        penalising it is entropy-constrained VQ, which moves rows to the level's popular codes
        where the distortion allows (the paper stores fixed-width indices and has no rate term).
        With fixed indices, zero."""
        if self.fixed_indices:
            return self.codebooks.new_zeros(())
        bits = []
        for logits in self.logits.split(self.level_rows):
            frequencies = torch.softmax(logits, dim=-1).mean(dim=0)  # [K]
            bits.append(-logits.shape[0] * (frequencies * torch.log2(frequencies.clamp_min(1e-12))).sum())
        return torch.stack(bits).sum()

    def parameter_groups(self) -> Dict[str, List[nn.Parameter]]:
        return {"grids": [self.codebooks] if self.fixed_indices else [self.logits, self.codebooks]}

    def fixed_width_bits(self) -> float:
        """Bits of the paper's storage: fixed-width ``b``-bit indices plus fp16 codebooks."""
        return float(self.num_rows * self.bits + 16 * self.codebooks.numel())

    def storages(self) -> Tuple[str, ...]:
        return ("vqad",)

    def symbol_layout(self, storage: Optional[str] = None) -> SymbolLayout:
        """Kind ``"vqad"``, setting ``bits``; level ``l``'s section holds its fp16 codebook
        ``[K, F]`` and its ``rows_l`` indices."""
        self.check_storage(storage)
        levels = tuple(
            {"codebook": FloatPart((self.codebook_size, self.num_features)), "indices": IndexPart(rows, self.bits)}
            for rows in self.level_rows
        )
        return SymbolLayout("vqad", {"bits": self.bits}, {}, levels)

    @torch.no_grad()
    def to_symbols(self, storage: Optional[str] = None) -> TableSymbols:
        self.check_storage(storage)
        indices = np.split(self.integer_indices().cpu().numpy(), np.cumsum(self.level_rows)[:-1])  # uint8 [rows_l]
        codebooks = self.codebooks.detach().cpu().float().numpy()  # [L, K, F]
        return TableSymbols(levels=[{"codebook": c, "indices": i} for c, i in zip(codebooks, indices)])

    @torch.no_grad()
    def from_symbols(self, symbols: TableSymbols, storage: Optional[str] = None) -> None:
        self.check_storage(storage)
        indices = np.zeros(self.num_rows, np.uint8)  # levels not decoded stay zero
        codebooks = np.zeros(tuple(self.codebooks.shape), np.float32)  # [L, K, F]
        offset = 0
        for level, values in enumerate(symbols.levels):
            indices[offset : offset + len(values["indices"])] = values["indices"]
            codebooks[level] = values["codebook"]
            offset += len(values["indices"])
        self.assign_codes(torch.from_numpy(indices), torch.from_numpy(codebooks).to(self.codebooks.device))
