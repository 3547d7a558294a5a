"""Channel (spatial) dropout: torch's rank/unbatched semantics, warnings, errors, statistics."""

import math
import warnings

import pytest
import torch

import dropkit
from dropkit import functional as F
from dropkit import rng

TNF = torch.nn.functional


def _varying_dims(y: torch.Tensor) -> set[int]:
    """Dimensions along which the zero pattern of ``y`` changes somewhere."""
    zero = y == 0
    return {
        d for d in range(y.dim()) if not torch.equal(zero, zero.narrow(d, 0, 1).expand_as(zero))
    }


def _call(fn, x, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = fn(x, 0.5, True, **kwargs)
    return y, [str(w.message) for w in caught]


CASES = [
    ("dropout1d", 2),
    ("dropout1d", 3),
    ("dropout2d", 2),
    ("dropout2d", 3),
    ("dropout2d", 4),
    ("dropout2d", 5),
    ("dropout3d", 2),
    ("dropout3d", 3),
    ("dropout3d", 4),
    ("dropout3d", 5),
    ("dropout3d", 6),
]


@pytest.mark.parametrize("name,rank", CASES)
def test_mask_structure_and_warnings_match_torch_for_every_rank(name, rank):
    x = torch.ones((16,) + (8,) * (rank - 1))
    torch.manual_seed(0)
    theirs, their_warnings = _call(getattr(TNF, name), x)
    ours, our_warnings = _call(getattr(F, name), x, seed=1)
    assert _varying_dims(ours) == _varying_dims(theirs)
    assert our_warnings == their_warnings


@pytest.mark.parametrize("name,rank", [("dropout2d", 1), ("dropout3d", 0)])
def test_too_few_dims_error_like_torch_only_when_sampling(name, rank):
    x = torch.ones((5,) * rank)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match="Feature dropout requires at least 2 dimensions"):
            getattr(TNF, name)(x, 0.5, True)
        with pytest.raises(RuntimeError, match="Feature dropout requires at least 2 dimensions"):
            getattr(F, name)(x, 0.5, True)
        for p, training in [(0.5, False), (0.0, True)]:
            assert torch.equal(getattr(F, name)(x, p, training), getattr(TNF, name)(x, p, training))


@pytest.mark.parametrize("rank", [1, 4])
def test_dropout1d_rank_error(rank):
    with pytest.raises(RuntimeError, match=f"received a {rank}D input"):
        F.dropout1d(torch.ones((3,) * rank))


def test_dropout3d_unbatched_and_channels_last_stream():
    x = torch.randn(4, 3, 2, 5)  # (C, D, H, W)
    y = F.dropout3d(x, 0.5, seed=2)
    keep = rng.keep_mask((4,), 0.5, 2)
    assert torch.equal(y, x * keep.view(4, 1, 1, 1) * 2.0)
    last = F.dropout3d(x.permute(1, 2, 3, 0), 0.5, seed=2, channels_last=True)
    assert torch.equal(last, y.permute(1, 2, 3, 0))


def test_dropout1d_unbatched_channels_last():
    x = torch.randn(7, 5)  # (L, C)
    y = F.dropout1d(x, 0.3, seed=4, channels_last=True)
    torch.testing.assert_close(y, x * rng.keep_mask((5,), 0.3, 4) / 0.7)


def test_expectation_preserved_and_rate_within_5_sigma():
    n, c = 200, 300
    x = torch.full((n, c, 2, 2), 3.0, dtype=torch.float64)
    y = F.dropout2d(x, 0.4, seed=9)
    per_channel = y[:, :, 0, 0]
    m = n * c
    assert abs(float(per_channel.mean()) - 3.0) < 5 * 3.0 * math.sqrt(0.4 / 0.6 / m)
    kept = float((per_channel != 0).double().mean())
    assert abs(kept - 0.6) < 5 * math.sqrt(0.24 / m)


def test_reproducible_by_seed_generator_and_manual_seed():
    x = torch.randn(8, 16, 3, 3)
    assert torch.equal(F.dropout2d(x, seed=5), F.dropout2d(x, seed=5))
    assert not torch.equal(F.dropout2d(x, seed=5), F.dropout2d(x, seed=6))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(F.dropout2d(x, generator=g1), F.dropout2d(x, generator=g2))
    torch.manual_seed(11)
    a = F.dropout2d(x)
    torch.manual_seed(11)
    assert torch.equal(F.dropout2d(x), a)


def test_replicated_batch_blocks_follow_the_stream_layout():
    # replica t of a batch replicated along dim 0 reads the words starting at t * N * C
    x = torch.randn(3, 4, 2, 2)
    y = F.dropout2d(x.repeat(5, 1, 1, 1), 0.5, seed=7)
    for t in range(5):
        assert torch.equal(y[3 * t : 3 * t + 3], F.dropout2d(x, 0.5, seed=7, offset=12 * t))


def test_monte_carlo_switch_samples_in_eval():
    x = torch.ones(4, 32, 2, 2)
    assert F.dropout2d(x, 0.5, training=False) is x
    with dropkit.mc.stochastic():
        y = F.dropout2d(x, 0.5, training=False, seed=1)
    assert torch.equal(y, F.dropout2d(x, 0.5, training=True, seed=1))


def test_inplace_returns_the_input_and_p_one_zeroes():
    x = torch.randn(2, 3, 4)
    expected = F.dropout1d(x, 0.5, seed=3)
    out = F.dropout1d(x, 0.5, inplace=True, seed=3)
    assert out is x and torch.equal(x, expected)
    assert torch.equal(F.dropout3d(torch.randn(2, 3, 2, 2, 2), 1.0), torch.zeros(2, 3, 2, 2, 2))


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_bad_probability(p):
    with pytest.raises(RuntimeError if p != p else ValueError, match="between 0 and 1"):
        F.dropout2d(torch.randn(2, 3, 4, 4), p)


@pytest.mark.parametrize("fn,shape", [(F.dropout1d, (2, 3, 4)), (F.dropout3d, (2, 2, 2, 2, 2))])
def test_gradcheck(fn, shape):
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: fn(t, 0.4, seed=3), (x,))


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
