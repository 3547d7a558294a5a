"""Broadcast dropout (Keras noise_shape): stream layout, statistics, modes, compile, errors."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import dropkit
from dropkit import functional as F
from dropkit import rng


def test_mask_is_shared_along_the_size_one_dims_only():
    x = torch.ones(64, 3, 5, 32)
    y = F.broadcast_dropout(x, 0.5, noise_shape=(None, 1, 1, None), seed=2)
    assert torch.equal(y, y[:, :1, :1, :].expand_as(y))
    zero = y[:, 0, 0, :] == 0
    assert not torch.equal(zero, zero[:1].expand_as(zero))  # varies over dim 0
    assert not torch.equal(zero, zero[:, :1].expand_as(zero))  # and over dim 3


def test_explicit_sizes_equal_none():
    x = torch.randn(4, 6)
    a = F.broadcast_dropout(x, 0.3, noise_shape=(4, 1), seed=1)
    assert torch.equal(a, F.broadcast_dropout(x, 0.3, noise_shape=(None, 1), seed=1))


def test_keep_rate_and_expectation_within_5_sigma():
    n = 100_000
    x = torch.full((n, 4), 2.0, dtype=torch.float64)
    y = F.broadcast_dropout(x, 0.2, noise_shape=(None, 1), seed=3)
    kept = float((y[:, 0] != 0).double().mean())
    assert abs(kept - 0.8) < 5 * math.sqrt(0.16 / n)
    assert abs(float(y[:, 0].mean()) - 2.0) < 5 * 2.0 * math.sqrt(0.25 / n)


def test_classic_mode_training_and_eval():
    x = torch.randn(6, 5)
    keep = rng.keep_mask((6, 1), 0.4, 8)
    y = F.broadcast_dropout(x, 0.4, noise_shape=(None, 1), mode="classic", seed=8)
    assert torch.equal(y, x * keep)
    evaluated = F.broadcast_dropout(x, 0.4, False, noise_shape=(None, 1), mode="classic")
    torch.testing.assert_close(evaluated, x * 0.6)
    assert F.broadcast_dropout(x, 0.4, False, noise_shape=(None, 1)) is x


def test_drops_by_multiplying_so_nan_propagates():
    x = torch.full((16, 3), float("nan"))
    y = F.broadcast_dropout(x, 0.5, noise_shape=(None, 1), seed=1)
    assert torch.isnan(y).all()


def test_edge_probabilities_and_empty_input():
    x = torch.randn(3, 4)
    assert F.broadcast_dropout(x, 0.0, noise_shape=(None, 1)) is x
    assert torch.equal(F.broadcast_dropout(x, 1.0, noise_shape=(None, 1)), torch.zeros(3, 4))
    empty = torch.randn(0, 4)
    assert F.broadcast_dropout(empty, 0.5, noise_shape=(None, 1)).shape == (0, 4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtypes_round_once(dtype):
    x = torch.randn(8, 5).to(dtype)
    y = F.broadcast_dropout(x, 0.3, noise_shape=(None, 1), seed=4)
    assert y.dtype == dtype
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    mult = rng.keep_mask((8, 1), 0.3, 4).to(acc) * torch.tensor(1 / 0.7, dtype=acc)
    assert torch.equal(y, (x.to(acc) * mult).to(dtype))


def test_reproducibility_and_generator():
    x = torch.randn(10, 10)
    torch.manual_seed(5)
    a = F.broadcast_dropout(x, noise_shape=(None, 1))
    torch.manual_seed(5)
    assert torch.equal(a, F.broadcast_dropout(x, noise_shape=(None, 1)))
    g = torch.Generator().manual_seed(1)
    b = F.broadcast_dropout(x, noise_shape=(None, 1), generator=g)
    g.manual_seed(1)
    assert torch.equal(b, F.broadcast_dropout(x, noise_shape=(None, 1), generator=g))
    with pytest.raises(ValueError):
        F.broadcast_dropout(x, noise_shape=(None, 1), generator=g, seed=1)


def test_monte_carlo_switch():
    x = torch.ones(32, 4)
    with dropkit.mc.stochastic():
        y = F.broadcast_dropout(x, 0.5, False, noise_shape=(None, 1), seed=2)
    assert torch.equal(y, F.broadcast_dropout(x, 0.5, True, noise_shape=(None, 1), seed=2))


def test_gradcheck_and_compile_fullgraph():
    x = torch.randn(4, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda t: F.broadcast_dropout(t, 0.5, noise_shape=(None, 1, None), seed=6), (x,)
    )

    def fn(t):
        return F.broadcast_dropout(t, 0.5, noise_shape=(1, None), seed=3) * 2

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    inp = torch.randn(5, 7)
    assert torch.equal(compiled(inp), fn(inp))


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"noise_shape": (None, 1, 1)}, ValueError, "one entry per input dimension"),
        ({"noise_shape": (None, 3)}, ValueError, r"noise_shape\[1\] must be 1, None"),
        ({"noise_shape": (None, 1), "mode": "weird"}, ValueError, "mode"),
        ({"noise_shape": (None, 1), "p": -0.5}, ValueError, "between 0 and 1"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        F.broadcast_dropout(torch.randn(2, 4), **kwargs)


def test_integer_input_rejected():
    with pytest.raises(TypeError):
        F.broadcast_dropout(torch.ones(2, 2, dtype=torch.long), noise_shape=(None, 1))


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
