"""Broadcast, channel (spatial) and locked dropout: structure, rates, torch agreement, errors."""

import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import dropkit
from dropkit import functional as F
from dropkit import rng


def test_broadcast_mask_structure_and_stream_layout():
    x = torch.randn(4, 5, 6)
    y = F.broadcast_dropout(x, 0.5, noise_shape=(None, 1, None), seed=3)
    keep = rng.keep_mask((4, 1, 6), 0.5, 3)
    assert torch.equal(y, x * keep * 2.0)


@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    data=st.data(),
    p=st.floats(0, 1),
)
@settings(max_examples=40, deadline=None)
def test_broadcast_property(shape, data, p):
    share = data.draw(st.lists(st.booleans(), min_size=len(shape), max_size=len(shape)))
    noise = [1 if s else None for s in share]
    x = torch.randn(shape)
    y = F.broadcast_dropout(x, p, noise_shape=noise, seed=11)
    mask_shape = [1 if s else n for s, n in zip(share, shape)]
    scale = 0.0 if p == 1 else 1 / (1 - p)
    expected = x if p == 0 else (x * (rng.keep_mask(mask_shape, p, 11).float() * scale))
    assert torch.equal(y, expected)


def test_broadcast_errors():
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="one entry per input dimension"):
        F.broadcast_dropout(x, 0.5, noise_shape=(1,))
    with pytest.raises(ValueError, match=r"noise_shape\[1\] must be 1, None or the input size 3"):
        F.broadcast_dropout(x, 0.5, noise_shape=(None, 2))
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.broadcast_dropout(x, 2.0, noise_shape=(None, 1))


def test_broadcast_gradient_and_no_saved_mask():
    x = torch.randn(8, 16, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = F.broadcast_dropout(x, 0.3, noise_shape=(None, 1), seed=2)
    assert sum(t.numel() for t in saved) <= 1
    y.sum().backward()
    keep = rng.keep_mask((8, 1), 0.3, 2)
    assert torch.allclose(x.grad, (keep.float() / 0.7).expand(8, 16))


@pytest.mark.parametrize(
    "fn,shape",
    [(F.dropout1d, (6, 5, 7)), (F.dropout2d, (6, 5, 3, 4)), (F.dropout3d, (6, 5, 2, 3, 2))],
)
def test_channel_dropout_zeroes_whole_channels(fn, shape):
    x = torch.randn(shape) + 10
    y = fn(x, 0.5, seed=4)
    flat = y.reshape(shape[0], shape[1], -1)
    zero = (flat == 0).all(-1)
    kept = (flat != 0).all(-1)
    assert torch.equal(zero | kept, torch.ones_like(zero))
    assert torch.equal(kept, rng.keep_mask(shape[:2], 0.5, 4))


@pytest.mark.parametrize("fn,batched", [(F.dropout1d, (3, 4, 5)), (F.dropout3d, (3, 4, 2, 2, 2))])
def test_unbatched_input_equals_batch_of_one(fn, batched):
    x = torch.randn(batched[1:])
    assert torch.equal(fn(x, 0.5, seed=5), fn(x[None], 0.5, seed=5)[0])


@pytest.mark.parametrize("fn,shape", [(F.dropout1d, (2, 3, 5)), (F.dropout2d, (2, 3, 4, 5))])
def test_channels_last_draws_the_same_channel_mask(fn, shape):
    x = torch.randn(shape)
    channels_first = fn(x, 0.5, seed=6)
    perm = [0, *range(2, len(shape)), 1]
    last = fn(x.permute(perm), 0.5, seed=6, channels_last=True)
    assert torch.equal(last, channels_first.permute(perm))


def test_channel_keep_rate_and_torch_distribution():
    x = torch.ones(400, 500, 1, 1)
    ours = (F.dropout2d(x, 0.3, seed=1).reshape(-1) != 0).float().mean()
    theirs = (torch.nn.functional.dropout2d(x, 0.3).reshape(-1) != 0).float().mean()
    n = 400 * 500
    bound = 5 * math.sqrt(0.21 / n)
    assert abs(float(ours) - 0.7) < bound and abs(float(theirs) - 0.7) < bound
    y = F.dropout2d(x, 0.3, seed=1)
    assert torch.allclose(y[y != 0], torch.tensor(1 / 0.7))


def test_torch_compatible_errors_and_warnings():
    with pytest.raises(RuntimeError, match="dropout1d: Expected 2D or 3D input"):
        F.dropout1d(torch.randn(2, 3, 4, 5))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        F.dropout2d(torch.randn(2, 3, 4), 0.5)
    assert any("assuming that channel-wise 1D" in str(w.message) for w in caught)
    with pytest.warns(UserWarning, match="Received a 3-D input to dropout3d"):
        F.dropout3d(torch.randn(2, 3, 4), 0.5)
    with pytest.raises(TypeError, match="torch.int64"):
        F.dropout2d(torch.zeros(2, 3, 4, 4, dtype=torch.long))


def test_eval_and_classic_mode():
    x = torch.randn(2, 3, 4, 4)
    assert F.dropout2d(x, 0.5, training=False) is x
    assert torch.equal(F.dropout2d(x, 0.5, training=False, mode="classic"), x * 0.5)


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


def test_channel_dropout_gradcheck_and_compile():
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: F.dropout2d(t, 0.5, seed=3), (x,))
    layer = dropkit.nn.Dropout2d(0.5)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    inp = torch.randn(4, 3, 2, 2)
    torch.manual_seed(0)
    eager = layer(inp)
    torch.manual_seed(0)
    assert torch.equal(compiled(inp), eager)
