import io
import math

import pytest
import torch

from nerfcompress.tables import VqadTable

LEVEL_ROWS = (8, 24, 32)


def _vqad(bits: int = 4, features: int = 2, level_rows=LEVEL_ROWS, **kw) -> VqadTable:
    torch.manual_seed(0)
    return VqadTable(level_rows, features, bits=bits, codebook_init_scale=1.0, logit_init_scale=1.0, **kw)


def _expected_hard(table: VqadTable) -> torch.Tensor:
    """``codebooks[level(r), argmax logits[r]]`` row by row, ``[rows, F]``."""
    levels = torch.arange(table.num_levels).repeat_interleave(torch.tensor(table.level_rows))
    return table.codebooks.detach()[levels, table.logits.detach().argmax(-1)]


def _reference_straight_through(table: VqadTable) -> torch.Tensor:
    """kaolin-wisp's estimator: one-hot keys with a softmax gradient, times the codebook."""
    out = []
    for level, logits in enumerate(table.logits.split(table.level_rows)):
        soft = torch.softmax(logits, dim=-1)
        hard = torch.nn.functional.one_hot(soft.argmax(-1), table.codebook_size).to(soft.dtype)
        keys = hard - soft.detach() + soft  # [rows_l, K]
        out.append((keys.unsqueeze(-1) * table.codebooks[level]).sum(-2))
    return torch.cat(out)


def test_rows_are_grouped_by_level_in_layout_order():
    table = _vqad()
    assert table.num_rows == sum(LEVEL_ROWS)
    assert table.logits.shape == (sum(LEVEL_ROWS), 16)
    assert table.codebooks.shape == (3, 16, 2)
    assert torch.equal(table.level_of_row[:8], torch.zeros(8, dtype=torch.int64))
    assert torch.equal(table.level_of_row[-32:], torch.full((32,), 2))
    assert "level_of_row" not in table.state_dict()  # derived from the layout, not stored


def test_straight_through_forward_equals_the_hard_lookup_exactly():
    table = _vqad().train()
    decoded = table()
    assert decoded.requires_grad
    assert torch.equal(decoded.detach(), _expected_hard(table))
    with torch.no_grad():
        assert torch.equal(table.eval()(), _expected_hard(table))


def test_gradients_reach_logits_and_codebooks_as_in_the_reference():
    table = _vqad().train()
    weights = torch.randn(table.num_rows, 2)
    (table() * weights).sum().backward()
    ours = (table.logits.grad.clone(), table.codebooks.grad.clone())
    assert ours[0].abs().sum() > 0 and ours[1].abs().sum() > 0
    table.zero_grad()
    (_reference_straight_through(table) * weights).sum().backward()
    assert torch.allclose(ours[0], table.logits.grad, atol=1e-6)
    assert torch.allclose(ours[1], table.codebooks.grad, atol=1e-6)


def test_training_never_keeps_a_tensor_as_large_as_rows_times_codebook_times_features():
    table = _vqad(bits=6, features=4).train()
    largest = []

    def pack(tensor):
        largest.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        decoded = table()
    decoded.sum().backward()
    assert max(largest) <= table.num_rows * table.codebook_size  # the logits / softmax, not [rows, K, F]


def test_hard_indices_survive_a_state_dict_round_trip():
    table = _vqad(bits=3)
    buffer = io.BytesIO()
    torch.save(table.state_dict(), buffer)
    buffer.seek(0)
    restored = VqadTable(LEVEL_ROWS, 2, bits=3)
    restored.load_state_dict(torch.load(buffer))
    assert restored.integer_indices().dtype == torch.uint8
    assert torch.equal(restored.integer_indices(), table.integer_indices())
    with torch.no_grad():
        assert torch.equal(restored.eval()(), table.eval()())


@pytest.mark.parametrize("bits", range(1, 9))
def test_every_bit_width_learns_a_toy_regression(bits):
    torch.manual_seed(1)
    table = VqadTable(LEVEL_ROWS, 2, bits=bits, codebook_init_scale=0.1, logit_init_scale=0.1).train()
    target = torch.randn(table.num_rows, 2)
    optimizer = torch.optim.Adam(table.parameters(), lr=0.1)
    losses = []
    for _ in range(30):
        loss = (table() - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0]
    assert int(table.integer_indices().max()) < 2**bits


def test_eval_table_is_cached_and_refreshed_after_training():
    table = _vqad().eval()
    with torch.no_grad():
        first = table()
        assert table() is first
    table.train()
    with torch.no_grad():
        table.codebooks.add_(1.0)
    table.eval()
    with torch.no_grad():
        assert not torch.equal(table(), first)


def test_assign_codes_decodes_to_the_given_codebook_entries():
    table = _vqad(bits=2)
    indices = torch.randint(0, 4, (table.num_rows,))
    codebooks = torch.randn(3, 4, 2)
    table.assign_codes(indices, codebooks)
    assert torch.equal(table.integer_indices().long(), indices)
    levels = table.level_of_row
    with torch.no_grad():
        assert torch.equal(table.eval()(), codebooks[levels, indices])


@pytest.mark.parametrize(
    "indices, codebooks, name",
    [
        (torch.zeros(5, dtype=torch.int64), torch.zeros(3, 4, 2), "indices"),
        (torch.full((64,), 4), torch.zeros(3, 4, 2), r"\[0, 4\)"),
        (torch.zeros(64, dtype=torch.int64), torch.zeros(3, 8, 2), "codebooks"),
    ],
)
def test_assign_codes_rejects_mismatched_inputs(indices, codebooks, name):
    with pytest.raises(ValueError, match=name):
        _vqad(bits=2).assign_codes(indices, codebooks)


def _stored_bits(table: VqadTable) -> int:
    from nerfcompress.bitstream.model_codec import encode_tables

    return 8 * sum(len(payload) for _, payload in encode_tables([table], ["g0"])[1])


def test_the_file_stores_fixed_width_indices_plus_fp16_codebooks_when_packing_wins():
    table = _vqad(bits=5, features=4)  # 8/24/32 random rows: range-coding tables cost more than they save
    assert table.fixed_width_bits() == 64 * 5 + 16 * 3 * 32 * 4
    assert _stored_bits(table) == table.fixed_width_bits()


def test_the_file_range_codes_levels_where_that_is_smaller():
    table = VqadTable((16, 4000), 2, bits=4)
    indices = torch.zeros(4016, dtype=torch.int64)
    indices[::50] = 3  # a skewed histogram: the big level is range-coded to a few hundred bits
    table.assign_codes(indices, torch.zeros(2, 16, 2))
    index_bits = _stored_bits(table) - 16 * table.codebooks.numel()
    assert 8 * 8 < index_bits < 0.1 * 4016 * 4  # level 0 packed (8 bytes), level 1 range-coded


def test_parameter_groups_put_logits_and_codebooks_in_grids():
    table = _vqad()
    assert table.parameter_groups() == {"grids": [table.logits, table.codebooks]}


def _fixed_and_trainable_with_the_same_codes(bits: int = 3):
    """A fixed-index table and a logits table after the same :meth:`assign_codes`."""
    indices = torch.randint(0, 2**bits, (sum(LEVEL_ROWS),), generator=torch.Generator().manual_seed(1))
    codebooks = torch.randn(len(LEVEL_ROWS), 2**bits, 2)
    fixed, trainable = _vqad(bits=bits, fixed_indices=True), _vqad(bits=bits)
    fixed.assign_codes(indices, codebooks)
    trainable.assign_codes(indices, codebooks)
    return fixed, trainable, indices


def test_fixed_indices_decode_like_the_logits_they_replace_and_store_one_byte_per_row():
    fixed, trainable, indices = _fixed_and_trainable_with_the_same_codes()
    assert torch.equal(fixed.integer_indices(), trainable.integer_indices())
    for mode in (True, False):
        assert torch.equal(fixed.train(mode)(), trainable.train(mode)().detach())
    state = fixed.state_dict()
    assert "logits" not in state and state["indices"].dtype == torch.uint8
    assert torch.equal(state["indices"].long(), indices)
    reloaded = _vqad(bits=3, fixed_indices=True)
    reloaded.load_state_dict(state)
    assert torch.equal(reloaded.eval()(), fixed.eval()())


def test_fixed_indices_train_the_codebooks_only():
    fixed, _, _ = _fixed_and_trainable_with_the_same_codes()
    assert fixed.parameter_groups() == {"grids": [fixed.codebooks]}
    assert [name for name, _ in fixed.named_parameters()] == ["codebooks"]
    fixed.train()().pow(2).sum().backward()
    assert fixed.codebooks.grad is not None and fixed.codebooks.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(bits=0), r"bits must be an int in 1\.\.8"),
        (dict(bits=9), r"bits must be an int in 1\.\.8"),
        (dict(bits=True), "bits"),
        (dict(level_rows=()), "level_rows"),
        (dict(level_rows=(8, 0)), "level_rows"),
        (dict(num_features=0), "num_features"),
        (dict(codebook_init_scale=-1.0), "codebook_init_scale"),
        (dict(logit_init_scale=-1.0), "logit_init_scale"),
        (dict(fixed_indices="yes"), "fixed_indices must be a bool"),
    ],
)
def test_nonsense_arguments_are_rejected_with_the_parameter_named(kwargs, message):
    args = {**dict(level_rows=LEVEL_ROWS, num_features=2), **kwargs}
    with pytest.raises(ValueError, match=message):
        VqadTable(**args)


def test_rate_is_each_levels_rows_times_the_entropy_of_its_soft_code_frequencies():
    table = _vqad(bits=2, level_rows=(64, 192))
    codes = torch.cat([torch.zeros(48, dtype=torch.long), torch.ones(16, dtype=torch.long), torch.arange(192) % 4])
    with torch.no_grad():
        table.logits.copy_(30.0 * torch.nn.functional.one_hot(codes, 4))  # soft assignment = hard one
    # level 0: codes 0 and 1 in proportion 3:1; level 1: all four codes equally often
    entropy_0 = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert float(table.rate_bits()) == pytest.approx(64 * entropy_0 + 192 * 2.0, rel=1e-4)


def test_the_rate_gradient_moves_rows_towards_their_levels_popular_code():
    table = _vqad(bits=2, level_rows=(100,))
    with torch.no_grad():
        table.logits.zero_()
        table.logits[:70, 0] = 2.0  # most rows prefer code 0
    table.rate_bits().backward()
    gradient = table.logits.grad
    assert (gradient[:, 0] < 0).all()  # descending the rate raises every row's logit of the popular code
    fixed = _vqad(bits=2, level_rows=(100,), fixed_indices=True)
    assert float(fixed.rate_bits()) == 0.0
