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


# Every broadcast-mask method (and alpha dropout's affine map) takes the C++ backend's one-pass
# kernel for a contiguous input: its forward, gradient and in-place forms must give the bits of
# the reference backend, in every layout (channels-last memory takes the multiplier route).
# (name, call, shape, whether it has an in-place form)
BROADCAST_METHODS = [
    ("dropout1d", lambda x, **k: F.dropout1d(x, 0.4, **k), (3, 6, 11), True),
    ("dropout1d channels_last", lambda x, **k: F.dropout1d(x, 0.4, channels_last=True, **k),
     (3, 11, 6), True),
    ("dropout2d", lambda x, **k: F.dropout2d(x, 0.4, **k), (3, 6, 5, 7), True),
    ("dropout2d channels_last", lambda x, **k: F.dropout2d(x, 0.4, channels_last=True, **k),
     (3, 5, 7, 6), True),
    ("dropout3d", lambda x, **k: F.dropout3d(x, 0.4, **k), (2, 4, 3, 5, 6), True),
    ("dropout3d unbatched", lambda x, **k: F.dropout3d(x, 0.4, **k), (4, 3, 5, 6), True),
    ("locked", lambda x, **k: F.locked_dropout(x, 0.4, **k), (7, 3, 5), True),
    ("locked batch_first", lambda x, **k: F.locked_dropout(x, 0.4, batch_first=True, **k),
     (3, 7, 5), True),
    ("broadcast two groups", lambda x, **k: F.broadcast_dropout(x, 0.4, noise_shape=(None, 1,
     None, 1), **k), (3, 4, 5, 6), True),
    ("drop_path", lambda x, **k: F.drop_path(x, 0.4, True, **k), (5, 3, 4, 6), False),
    ("stochastic_depth row", lambda x, **k: F.stochastic_depth(x, 0.4, "row", **k),
     (5, 3, 4, 6), False),
    ("stochastic_depth batch", lambda x, **k: F.stochastic_depth(x, 0.4, "batch", **k),
     (5, 3, 4, 6), False),
    ("alpha", lambda x, **k: F.alpha_dropout(x, 0.4, True, **k), (5, 3, 4, 6), True),
    ("feature_alpha", lambda x, **k: F.feature_alpha_dropout(x, 0.4, True, **k), (5, 3, 4, 6),
     True),
]  # fmt: skip
BITS = {torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float32: torch.int32,
        torch.float64: torch.int64}  # fmt: skip


def _forward_backward_inplace(fn, x, grad, inplace):
    leaf = x.clone().requires_grad_()
    y = fn(leaf, seed=2**40 + 7, offset=3)
    y.backward(grad)
    results = [y.detach(), leaf.grad]
    if inplace:
        work = x.clone()
        assert fn(work, seed=2**40 + 7, offset=3, inplace=True) is work
        results.append(work)
    return results


@pytest.mark.parametrize(("name", "fn", "shape", "inplace"), BROADCAST_METHODS,
                         ids=[m[0] for m in BROADCAST_METHODS])  # fmt: skip
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_broadcast_methods_give_the_reference_bits(name, fn, shape, inplace, dtype, cpu_kernels):
    x = (torch.randn(shape) * 3).to(dtype)
    x.view(-1)[:3] = torch.tensor([float("nan"), float("inf"), -0.0]).to(dtype)
    grad = torch.randn(shape).to(dtype)
    # The same values in reversed memory order: not contiguous, so the multiplier route.
    dims = tuple(reversed(range(x.dim())))
    strided = torch.empty(x.permute(dims).shape, dtype=dtype).permute(dims).copy_(x)
    assert not strided.is_contiguous()
    runs = []
    for xs in (x, strided):
        for backend in ("cpu", "reference"):
            with cpu_kernels(backend):
                runs.append(_forward_backward_inplace(fn, xs, grad, inplace))
    for results in runs[1:]:  # the one-pass kernels against the reference and the old route
        for got, want in zip(runs[0], results, strict=True):
            nan = torch.isnan(want)
            assert torch.equal(torch.isnan(got), nan), name
            got, want = got.contiguous(), want.contiguous()
            assert torch.equal(got[~nan].view(BITS[dtype]), want[~nan].view(BITS[dtype])), name
