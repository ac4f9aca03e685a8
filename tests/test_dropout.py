"""Dropout from 16-bit draws (rnnseq.model.dropout) behaves as dropout."""

import pytest
import torch

from rnnseq.model.dropout import Dropout, dropout, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_drop_rate_and_scale(p):
    torch.manual_seed(0)
    keep, rounded = keep_mask((500, 1000), p, torch.device("cpu"))
    assert keep.dtype == torch.bool and keep.shape == (500, 1000)
    assert abs(rounded - p) <= 1 / 65536
    assert abs(1 - keep.float().mean().item() - p) < 0.005  # 500,000 draws
    y = dropout(torch.ones(500, 1000), p)
    values = torch.unique(y).tolist()
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / (1 - rounded))
    assert abs(y.mean().item() - 1.0) < 0.02


def test_masks_are_independent_between_positions_and_calls():
    torch.manual_seed(1)
    a, _ = keep_mask((100_000,), 0.5, torch.device("cpu"))
    b, _ = keep_mask((100_000,), 0.5, torch.device("cpu"))
    agree = (a == b).float().mean().item()
    neighbours = (a[1:] == a[:-1]).float().mean().item()
    assert abs(agree - 0.5) < 0.01 and abs(neighbours - 0.5) < 0.01
    # every one of the three 16-bit draws per 64-bit word is used and uniform
    for offset in range(3):
        assert abs(a[offset::3].float().mean().item() - 0.5) < 0.01


def test_seeded_and_odd_sizes():
    x = torch.randn(7, 5)
    torch.manual_seed(3)
    first = dropout(x, 0.4)
    torch.manual_seed(3)
    assert torch.equal(first, dropout(x, 0.4))
    assert dropout(torch.randn(1), 0.2).shape == (1,)
    assert dropout(torch.randn(0, 4), 0.2).shape == (0, 4)


def test_gradient_is_the_mask_and_eval_is_identity():
    x = torch.randn(64, 33, requires_grad=True)
    torch.manual_seed(4)
    y = dropout(x, 0.3)
    y.sum().backward()
    kept = y != 0
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 1 / (1 - 0.3)),
                          rtol=1e-4)
    assert torch.all(x.grad[~kept] == 0)
    module = Dropout(0.3).eval()
    assert module(x) is x
    assert dropout(x, 0.0) is x
    assert torch.all(dropout(x, 1.0) == 0)
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.5)
