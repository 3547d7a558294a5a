"""Locked (variational) dropout: one mask per sequence shared over time."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import dropkit
from dropkit import functional as F
from dropkit import rng


@given(t=st.integers(1, 6), n=st.integers(1, 4), c=st.integers(1, 5), p=st.floats(0.05, 0.95))
@settings(max_examples=30, deadline=None)
def test_same_mask_at_every_time_step(t, n, c, p):
    x = torch.randn(t, n, c) + 5.0
    y = F.locked_dropout(x, p, seed=3)
    zero = y == 0
    assert torch.equal(zero, zero[:1].expand_as(zero))
    assert torch.equal(~zero[0], rng.keep_mask((n, c), p, 3))


def test_keep_rate_and_expectation_within_5_sigma():
    t, n, c = 3, 200, 250
    x = torch.ones(t, n, c, dtype=torch.float64)
    y = F.locked_dropout(x, 0.3, seed=12)
    m = n * c
    kept = float((y[0] != 0).double().mean())
    assert abs(kept - 0.7) < 5 * math.sqrt(0.21 / m)
    assert abs(float(y[0].mean()) - 1.0) < 5 * math.sqrt(0.3 / 0.7 / m)


def test_batch_first_replicas_follow_the_stream_layout():
    x = torch.randn(2, 5, 3)  # (N, T, C)
    y = F.locked_dropout(x.repeat(4, 1, 1), 0.5, batch_first=True, seed=2)
    for r in range(4):
        expected = F.locked_dropout(x, 0.5, batch_first=True, seed=2, offset=6 * r)
        assert torch.equal(y[2 * r : 2 * r + 2], expected)


def test_eval_classic_mc_and_reproducibility():
    x = torch.randn(4, 3, 2)
    assert F.locked_dropout(x, 0.5, training=False) is x
    torch.testing.assert_close(F.locked_dropout(x, 0.5, False, mode="classic"), x * 0.5)
    with dropkit.mc.stochastic():
        sampled = F.locked_dropout(x, 0.5, False, seed=1)
    assert torch.equal(sampled, F.locked_dropout(x, 0.5, True, seed=1))
    torch.manual_seed(3)
    a = F.locked_dropout(x, 0.5)
    torch.manual_seed(3)
    assert torch.equal(a, F.locked_dropout(x, 0.5))


def test_inplace_and_gradcheck():
    x = torch.randn(3, 2, 4)
    expected = F.locked_dropout(x, 0.5, seed=5)
    assert F.locked_dropout(x, 0.5, seed=5, inplace=True) is x and torch.equal(x, expected)
    leaf = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: F.locked_dropout(t, 0.5, seed=7), (leaf,))


@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 4, 5)])
def test_rank_error(shape):
    with pytest.raises(ValueError, match=r"3D input \(T, N, C\)"):
        F.locked_dropout(torch.randn(shape), 0.5)


def test_probability_error():
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.locked_dropout(torch.randn(2, 2, 2), 1.1)


@pytest.mark.parametrize("batch_first", [False, True])
def test_locked_dropout_shares_mask_over_time(batch_first):
    t, n, c = 7, 3, 5
    x = torch.randn(n, t, c) if batch_first else torch.randn(t, n, c)
    y = F.locked_dropout(x, 0.5, batch_first=batch_first, seed=9)
    seq = y if not batch_first else y.transpose(0, 1)
    xs = x if not batch_first else x.transpose(0, 1)
    keep = rng.keep_mask((n, c), 0.5, 9)
    assert torch.equal(seq, xs * keep * 2.0)


def test_locked_dropout_layouts_agree_and_errors():
    x = torch.randn(6, 2, 4)
    assert torch.equal(
        F.locked_dropout(x, 0.4, seed=1).transpose(0, 1),
        F.locked_dropout(x.transpose(0, 1), 0.4, batch_first=True, seed=1),
    )
    with pytest.raises(ValueError, match="3D input"):
        F.locked_dropout(torch.randn(3, 4), 0.5)
