"""Post-hoc vector quantisation of float rows with k-means (VQAD's kmVQ baseline).

The paper compares its learned indices with k-means run on a trained, uncompressed grid: each
row is replaced by the nearest of ``K`` centroids. Lloyd's algorithm with k-means++ seeding, in
plain torch, deterministic for a given seed.
"""

from __future__ import annotations

import torch
from torch import Tensor

_ASSIGN_CHUNK_ROWS = 1 << 16  # bounds the [chunk, K] distance matrix


def _nearest_code(rows: Tensor, codebook: Tensor) -> Tensor:
    """Index of the nearest code for each row, int64 ``[n]`` (ties: the lowest index)."""
    exact = "donot_use_mm_for_euclid_dist"  # the matmul shortcut can misorder near-ties
    return torch.cat(
        [torch.cdist(chunk, codebook, compute_mode=exact).argmin(dim=-1) for chunk in rows.split(_ASSIGN_CHUNK_ROWS)]
    )


def _kmeans_plus_plus(rows: Tensor, num_codes: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding: ``[K, F]`` codes drawn from ``rows`` with probability proportional to
    the squared distance to the nearest code so far (the first row once every row is a code)."""
    first = int(torch.randint(rows.shape[0], (), generator=generator))
    codes = [rows[first]]
    squared_distance = (rows - rows[first]).square().sum(-1)  # [n]
    for _ in range(1, num_codes):
        total = float(squared_distance.sum())
        if total > 0:
            index = int(torch.multinomial(squared_distance / total, 1, generator=generator))
        else:
            index = 0
        codes.append(rows[index])
        squared_distance = torch.minimum(squared_distance, (rows - rows[index]).square().sum(-1))
    return torch.stack(codes)


@torch.no_grad()
def kmeans_quantize(rows: Tensor, num_codes: int, iterations: int = 20, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Vector-quantises rows with k-means.

    .. math:: \\min_{D, V} \\sum_r \\lVert x_r - D[V_r] \\rVert^2

    Args:
        rows: float ``[n, F]``, ``n >= 1``.
        num_codes: codebook size ``K >= 1`` (may exceed ``n``; codes then repeat).
        iterations: Lloyd iterations after k-means++ seeding (``>= 0``). A code that loses all its
            rows keeps its previous value.
        seed: seed of the k-means++ draws; the result is a deterministic function of the inputs.

    Returns:
        codebook: ``[K, F]`` in the dtype of ``rows``.
        indices: int64 ``[n]`` in ``[0, K)``, the nearest code of each row in ``codebook``.

    Raises:
        ValueError: ``rows`` is not a non-empty float ``[n, F]``, ``num_codes < 1`` or
            ``iterations < 0``.
    """
    if rows.dim() != 2 or rows.shape[0] < 1 or not rows.is_floating_point():
        raise ValueError(f"rows must be a float tensor [n >= 1, F], got {rows.dtype} {list(rows.shape)}")
    if num_codes < 1:
        raise ValueError(f"num_codes must be >= 1, got {num_codes}")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    generator = torch.Generator().manual_seed(seed)
    rows_cpu = rows.detach().cpu()
    codebook = _kmeans_plus_plus(rows_cpu, num_codes, generator)
    for _ in range(iterations):
        indices = _nearest_code(rows_cpu, codebook)
        sums = torch.zeros_like(codebook).index_add_(0, indices, rows_cpu)
        counts = torch.bincount(indices, minlength=num_codes).unsqueeze(-1)  # [K, 1]
        codebook = torch.where(counts > 0, sums / counts.clamp(min=1), codebook)
    return codebook.to(rows.device), _nearest_code(rows_cpu, codebook).to(rows.device)
