import pytest
import torch

from nerfcompress.tables.kmeans import kmeans_quantize


def _blobs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centers = torch.tensor([[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0]])
    labels = torch.arange(3).repeat_interleave(40)
    return centers[labels] + 0.1 * torch.randn(120, 2, generator=generator), labels


def _error(rows, codebook, indices) -> float:
    return float((rows - codebook[indices]).square().sum())


def test_recovers_well_separated_clusters():
    rows, labels = _blobs()
    codebook, indices = kmeans_quantize(rows, 3, iterations=10, seed=0)
    assert codebook.shape == (3, 2) and indices.dtype == torch.int64 and indices.shape == (120,)
    for label in range(3):  # one code per blob, at its mean
        assert indices[labels == label].unique().numel() == 1
        torch.testing.assert_close(codebook[indices[labels == label][0]], rows[labels == label].mean(0))


def test_indices_are_the_nearest_codes_and_lloyd_never_increases_the_error():
    rows = torch.randn(500, 4, generator=torch.Generator().manual_seed(1))
    seeded = kmeans_quantize(rows, 16, iterations=0, seed=3)
    refined = kmeans_quantize(rows, 16, iterations=15, seed=3)
    codebook, indices = refined
    assert torch.equal(indices, torch.cdist(rows, codebook).argmin(-1))
    assert _error(rows, *refined) <= _error(rows, *seeded)


def test_is_deterministic_for_a_seed():
    rows = torch.randn(300, 2, generator=torch.Generator().manual_seed(2))
    first = kmeans_quantize(rows, 8, iterations=5, seed=7)
    second = kmeans_quantize(rows, 8, iterations=5, seed=7)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_more_codes_than_rows_reconstructs_exactly():
    rows = torch.randn(5, 2, generator=torch.Generator().manual_seed(3))
    codebook, indices = kmeans_quantize(rows, 16, iterations=3)
    assert codebook.shape == (16, 2)
    assert torch.equal(codebook[indices], rows)


@pytest.mark.parametrize(
    "rows, num_codes, iterations, name",
    [
        (torch.zeros(0, 2), 4, 1, "rows"),
        (torch.zeros(4), 4, 1, "rows"),
        (torch.zeros(4, 2, dtype=torch.int64), 4, 1, "rows"),
        (torch.zeros(4, 2), 0, 1, "num_codes"),
        (torch.zeros(4, 2), 4, -1, "iterations"),
    ],
)
def test_rejects_nonsense(rows, num_codes, iterations, name):
    with pytest.raises(ValueError, match=name):
        kmeans_quantize(rows, num_codes, iterations)
