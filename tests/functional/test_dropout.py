"""dropkit.functional.dropout: semantics, modes, dtypes, errors, autograd, compile."""

import math
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import dropkit
from dropkit import rng
from dropkit.functional import dropout

FLOAT_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def reference_dropout(x, p, seed, mode="inverted", offset=0):
    """The documented formula, written out independently of the kernels."""
    keep = rng.keep_mask(x.shape, p, seed, offset)
    scale = 1.0 if mode == "classic" else (0.0 if p == 1 else 1.0 / (1.0 - p))
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    mult = keep.to(acc) * torch.tensor(scale, dtype=acc)
    return (x.to(acc) * mult).to(x.dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("mode", ["inverted", "classic"])
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_matches_documented_formula(dtype, mode, backend, cpu_kernels):
    x = torch.randn(37, 41).to(dtype)
    with cpu_kernels(backend):
        y = dropout(x, 0.3, mode=mode, seed=99)
    assert y.dtype == dtype and y.shape == x.shape
    assert torch.equal(y, reference_dropout(x, 0.3, 99, mode))


def test_backends_bit_identical_on_large_input(cpu_kernels):
    x = torch.randn(300_001)
    with cpu_kernels("reference"):
        ref = dropout(x, 0.42, seed=5, offset=3)
    fast = dropout(x, 0.42, seed=5, offset=3)
    assert torch.equal(ref.view(torch.int32), fast.view(torch.int32))


def test_keep_rate_and_expectation_in_inverted_mode():
    n = 1 << 20
    x = torch.full((n,), 2.0)
    y = dropout(x, 0.3, seed=1)
    kept = int((y != 0).sum())
    assert abs(kept - 0.7 * n) < 5 * math.sqrt(n * 0.3 * 0.7)
    assert torch.allclose(y[y != 0], torch.tensor(2.0 / 0.7))
    assert abs(float(y.double().mean()) - 2.0) < 5 * 2.0 / 0.7 * math.sqrt(0.3 * 0.7 / n)


def test_classic_mode_train_and_eval():
    x = torch.randn(1000)
    y = dropout(x, 0.25, mode="classic", seed=3)
    kept = y != 0
    assert torch.equal(y[kept], x[kept])
    assert torch.equal(dropout(x, 0.25, training=False, mode="classic"), x * 0.75)
    # expectation of train output equals the eval output
    big = torch.ones(1 << 20)
    assert abs(float(dropout(big, 0.25, mode="classic", seed=4).mean()) - 0.75) < 0.005


def test_inverted_eval_is_identity_and_returns_input():
    x = torch.randn(10)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0) is x


def test_p_one_zeroes_and_p_zero_keeps():
    x = torch.randn(100)
    assert torch.equal(dropout(x, 1.0), torch.zeros(100))
    assert torch.equal(dropout(x, 1.0, mode="classic"), torch.zeros(100))
    assert torch.equal(dropout(x, 0.0), x)


def test_nan_and_inf_propagate_like_torch():
    x = torch.tensor([math.nan, math.inf, -math.inf, 1.0] * 64)
    y = dropout(x, 0.5, seed=8)
    keep = rng.keep_mask(x.shape, 0.5, 8)
    assert torch.isnan(y[~keep & ~torch.isfinite(x)]).all()  # dropped NaN/Inf become NaN
    assert torch.isnan(y[torch.isnan(x)]).all()
    assert torch.isinf(y[keep & torch.isinf(x)]).all()
    t = torch.nn.functional.dropout(x, 0.5)
    assert torch.isnan(t[torch.isnan(x)]).all()  # torch behaves the same way


def test_zero_element_and_scalar_inputs():
    empty = torch.empty(0, 3)
    assert dropout(empty, 0.5).shape == (0, 3)
    scalar = torch.tensor(3.0)
    y = dropout(scalar, 0.5, seed=1)
    assert y.shape == () and float(y) in (0.0, 6.0)


def test_non_contiguous_input_uses_logical_order():
    base = torch.randn(20, 30)
    x = base.t()
    assert not x.is_contiguous()
    assert torch.equal(dropout(x, 0.5, seed=2), dropout(x.contiguous(), 0.5, seed=2))
    strided = base[:, ::3]
    assert torch.equal(dropout(strided, 0.5, seed=2), dropout(strided.contiguous(), 0.5, seed=2))


@pytest.mark.parametrize("mode", ["inverted", "classic"])
def test_inplace(mode):
    x = torch.randn(50, 7)
    expected = dropout(x, 0.4, mode=mode, seed=6)
    y = x.clone()
    out = dropout(y, 0.4, inplace=True, mode=mode, seed=6)
    assert out is y and torch.equal(y, expected)
    t = x.t().clone().t()  # non-contiguous storage
    dropout(t, 0.4, inplace=True, mode=mode, seed=6)
    assert torch.equal(t, expected)
    e = x.clone()
    dropout(e, 0.4, training=False, inplace=True, mode=mode)
    assert torch.equal(e, x if mode == "inverted" else x * 0.6)


def test_inplace_with_autograd_on_non_leaf():
    w = torch.randn(30, requires_grad=True)
    h = w * 2
    out = dropout(h, 0.5, inplace=True, seed=3)
    out.sum().backward()
    keep = rng.keep_mask((30,), 0.5, 3)
    assert torch.equal(w.grad, keep.float() * 4.0)


def test_seed_generator_and_manual_seed_reproducibility():
    x = torch.randn(1000)
    torch.manual_seed(5)
    a, b = dropout(x, 0.5), dropout(x, 0.5)
    torch.manual_seed(5)
    assert torch.equal(a, dropout(x, 0.5)) and torch.equal(b, dropout(x, 0.5))
    assert not torch.equal(a, b)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(dropout(x, 0.5, generator=g1), dropout(x, 0.5, generator=g2))
    # the same seed gives the same mask for two inputs
    y = torch.randn(1000)
    assert torch.equal(dropout(x, 0.5, seed=77) == 0, dropout(y, 0.5, seed=77) == 0)


def test_generator_does_not_consume_default_stream():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    dropout(torch.randn(10), 0.5, generator=torch.Generator().manual_seed(3))
    dropout(torch.randn(10), 0.5, seed=4)
    # only torch.randn consumed the default stream: compare with the same sequence without dropout
    torch.set_rng_state(before)
    torch.randn(10)
    torch.randn(10)
    after_plain = torch.get_rng_state()
    torch.set_rng_state(before)
    torch.randn(10)
    dropout(torch.randn(10), 0.5, seed=4)
    assert torch.equal(torch.get_rng_state(), after_plain)


@pytest.mark.parametrize("p", [-0.01, 1.01, math.nan, math.inf])
def test_bad_probability(p):
    # torch's types: NaN is a RuntimeError, other out-of-range values a ValueError
    error = RuntimeError if math.isnan(p) else ValueError
    with pytest.raises(error, match="dropout probability has to be between 0 and 1"):
        dropout(torch.randn(3), p)
    with pytest.raises(error, match="dropout probability has to be between 0 and 1"):
        torch.nn.functional.dropout(torch.randn(3), p)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"mode": "scaled"}, ValueError, "mode must be one of"),
        ({"seed": 1.5}, TypeError, "seed must be an int"),
        ({"seed": 2**64}, ValueError, "seed must be an integer in"),
        ({"offset": -1}, ValueError, "offset must be an integer in"),
        ({"generator": "g"}, TypeError, "generator must be a torch.Generator"),
        ({"seed": 1, "generator": torch.Generator()}, ValueError, "either seed or generator"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        dropout(torch.randn(3), 0.5, **kwargs)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.uint8])
def test_integer_and_bool_inputs_raise(dtype):
    with pytest.raises(TypeError, match=str(dtype)):
        dropout(torch.zeros(3, dtype=dtype), 0.5)


def test_gradient_is_the_same_mask():
    x = torch.randn(64, 9, requires_grad=True)
    y = dropout(x, 0.3, seed=12)
    g = torch.randn(64, 9)
    y.backward(g)
    assert torch.equal(x.grad, dropout(g, 0.3, seed=12))


@pytest.mark.parametrize("mode", ["inverted", "classic"])
def test_gradcheck(mode):
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: dropout(t, 0.4, mode=mode, seed=21), (x,))
    assert torch.autograd.gradgradcheck(lambda t: dropout(t, 0.4, mode=mode, seed=21), (x,))


def test_saves_no_tensor_of_the_input_size():
    x = torch.randn(4096, requires_grad=True)
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = dropout(x, 0.5)
    assert sum(saved) <= 8  # the seed, an int64 scalar
    y.sum().backward()
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        torch.nn.functional.dropout(x, 0.5)
    assert sum(saved) >= 4 * x.numel()  # torch keeps a float32 mask on the CPU


def test_torch_compile_fullgraph_matches_eager():
    net = torch.nn.Sequential(
        torch.nn.Linear(8, 16), dropkit.nn.Dropout(0.5), torch.nn.ReLU(), torch.nn.Linear(16, 4)
    )
    x = torch.randn(5, 8)
    torch.manual_seed(1)
    eager = [net(x) for _ in range(2)]
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")
    torch.manual_seed(1)
    again = [compiled(x) for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(eager, again))
    assert not torch.equal(again[0], again[1])
    again[0].sum().backward()


@pytest.mark.slow
def test_torch_compile_inductor_and_export():
    net = torch.nn.Sequential(
        torch.nn.Linear(8, 16), dropkit.nn.Dropout(0.5), torch.nn.Linear(16, 4)
    )
    x = torch.randn(5, 8)
    torch.manual_seed(2)
    eager = net(x)
    # Inductor replaces the seed draws (torch.randint) with its own generator, as it does for
    # torch's dropout; with fallback_random it keeps torch's, and compiled masks equal eager ones.
    torch._dynamo.reset()
    with torch._inductor.config.patch(fallback_random=True):
        compiled = torch.compile(net, fullgraph=True)
        torch.manual_seed(2)
        assert torch.equal(compiled(x), eager)
    torch._dynamo.reset()
    compiled = torch.compile(net, fullgraph=True)
    assert not torch.equal(compiled(x), compiled(x))  # a fresh mask on every call
    exported = torch.export.export(net, (x,))
    torch.manual_seed(2)
    assert torch.equal(exported.module()(x), eager)


@given(
    shape=st.lists(st.integers(0, 9), min_size=0, max_size=4),
    p=st.floats(0.0, 1.0),
    transpose=st.booleans(),
    seed=st.integers(0, 2**64 - 1),
)
@settings(max_examples=60, deadline=None)
def test_property_any_shape_stride_and_p(shape, p, transpose, seed):
    x = torch.randn(shape) if shape else torch.randn(())
    if transpose and x.dim() >= 2:
        x = x.transpose(0, -1)
    y = dropout(x, p, seed=seed)
    assert y.shape == x.shape
    expected = reference_dropout(x.contiguous(), p, seed) if p > 0 else x
    assert torch.equal(y, expected)


def test_two_dropouts_in_one_compiled_graph_draw_distinct_masks():
    def two(x):
        return dropout(x, 0.5), dropout(x, 0.5)

    compiled = torch.compile(two, fullgraph=True, backend="aot_eager")
    x = torch.ones(1000, requires_grad=True)
    torch.manual_seed(0)
    a, b = compiled(x)
    torch.manual_seed(0)
    eager_a, eager_b = two(x)
    assert not torch.equal(a, b)
    assert torch.equal(a, eager_a) and torch.equal(b, eager_b)


def test_one_eager_call_enters_at_most_six_python_functions():
    """The call's plumbing stays thin: its checks, its seed draw and one operator call (torch's
    own F.dropout enters two)."""
    x = torch.randn(100, 800)
    dropout(x, 0.5)  # first-call work (imports, caches) is not what is counted
    entered = []

    def profile(frame, event, arg):
        if event == "call":
            entered.append(f"{frame.f_code.co_filename}:{frame.f_code.co_name}")

    sys.setprofile(profile)
    try:
        dropout(x, 0.5)
    finally:
        sys.setprofile(None)
    assert len(entered) <= 6, entered
