"""DropConnect: weight and per-sample masks, inference, gradients, saved tensors, errors."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import dropkit
from dropkit import functional as F
from dropkit import rng

P = 0.3


def _five_sigma(n: int, p: float) -> float:
    return 5 * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("mode", ["inverted", "classic"])
def test_per_batch_mask_on_weights_matches_stream(mode):
    x = torch.randn(2, 5, 4)
    w, b = torch.randn(3, 4), torch.randn(3)
    y = F.drop_connect_linear(x, w, b, 0.5, mode=mode, seed=7)
    keep = rng.keep_mask(w.shape, 0.5, 7)
    scale = 2.0 if mode == "inverted" else 1.0
    assert torch.equal(y, torch.nn.functional.linear(x, w * keep * scale, b))


def test_keep_rate_within_five_sigma():
    w = torch.ones(300, 400)
    # An identity input reads the masked weight back: y[i, o] = W[o, i] * m[o, i] * s.
    y = F.drop_connect_linear(torch.eye(400), w, None, P, seed=11)
    kept = (y != 0).double().mean().item()
    assert abs(kept - (1 - P)) < _five_sigma(w.numel(), 1 - P)
    assert torch.all((y == 0) | (y == torch.tensor(1 / (1 - P), dtype=torch.float32)))


def test_expectation_preserved_inverted_and_classic():
    torch.manual_seed(0)
    x, w = torch.randn(3, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    draws = 3000
    for mode in ("inverted", "classic"):
        ys = torch.stack([F.drop_connect_linear(x, w, None, P, mode=mode, seed=s)
                          for s in range(draws)])  # fmt: skip
        target = F.drop_connect_linear(x, w, None, P, training=False, mode=mode)
        bound = 5 * ys.std(0) / math.sqrt(draws) + 1e-9
        assert torch.all((ys.mean(0) - target).abs() < bound)


def test_per_sample_masks_chunks_and_rows():
    import dropkit.functional.drop_connect as module

    x = torch.randn(9, 5, dtype=torch.float64)
    w = torch.randn(4, 5, dtype=torch.float64)
    y = F.drop_connect_linear(x, w, None, 0.4, per_sample=True, seed=2)
    masks = rng.keep_mask((9, 4, 5), 0.4, 2).double() / 0.6
    assert torch.allclose(y, torch.einsum("noi,ni->no", w[None] * masks, x))
    # Sample n's mask lives at n * out * in: a prefix of the batch draws the same masks.
    assert torch.equal(F.drop_connect_linear(x[:3], w, None, 0.4, per_sample=True, seed=2), y[:3])
    # The chunking that bounds memory does not change the result.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "_CHUNK_BUDGET", 40)  # two samples a chunk
        assert torch.allclose(F.drop_connect_linear(x, w, None, 0.4, per_sample=True, seed=2), y)


def test_per_sample_shares_mask_over_inner_dims():
    x = torch.randn(3, 7, 5)
    w = torch.randn(4, 5)
    y = F.drop_connect_linear(x, w, None, 0.5, per_sample=True, seed=9)
    masks = rng.keep_mask((3, 4, 5), 0.5, 9).float() * 2.0
    for n in range(3):
        assert torch.allclose(y[n], x[n] @ (w * masks[n]).t(), atol=1e-6)


def test_gradcheck_linear_per_batch_and_per_sample():
    torch.manual_seed(1)
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: F.drop_connect_linear(*a, P, seed=5), (x, w, b))
    assert torch.autograd.gradcheck(
        lambda *a: F.drop_connect_linear(*a, P, per_sample=True, seed=5), (x, w, b)
    )


@pytest.mark.parametrize("per_sample", [False, True])
def test_backward_keeps_no_mask(per_sample):
    x = torch.randn(16, 32, requires_grad=True)
    w = torch.randn(24, 32, requires_grad=True)
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = F.drop_connect_linear(x, w, None, 0.5, per_sample=per_sample, seed=3)
    # Only the input, the weight and the 0-d seed are saved: no mask, no masked weight.
    assert all(t.data_ptr() in (x.data_ptr(), w.data_ptr()) or t.dim() == 0 for t in saved)
    y.sum().backward()
    keep = rng.keep_mask((16, 24, 32) if per_sample else (24, 32), 0.5, 3).float() * 2.0
    assert torch.allclose(x.grad, (w * keep).sum(-2).expand(16, 32), atol=1e-5)


def test_weight_scaling_inference():
    x, w, b = torch.randn(3, 4), torch.randn(2, 4), torch.randn(2)
    assert torch.equal(
        F.drop_connect_linear(x, w, b, P, training=False), torch.nn.functional.linear(x, w, b)
    )
    classic = F.drop_connect_linear(x, w, b, P, training=False, mode="classic")
    assert torch.equal(classic, torch.nn.functional.linear(x, w * (1 - P), b))
    relu = F.drop_connect_linear(x, w, b, P, training=False, activation=torch.relu)
    assert torch.equal(relu, torch.relu(torch.nn.functional.linear(x, w, b)))


@pytest.mark.parametrize("mode", ["inverted", "classic"])
def test_moment_matching_moments(mode):
    # With a(u) = u^2 the average estimates E[u^2] = mu^2 + sigma^2: checks the variance formula.
    torch.manual_seed(0)
    x, w = torch.randn(2, 20, dtype=torch.float64), torch.randn(3, 20, dtype=torch.float64)
    b = torch.randn(3, dtype=torch.float64)
    samples = 20000
    got = F.drop_connect_linear(x, w, b, P, training=False, mode=mode, inference="moment_matching",
                                samples=samples, activation=torch.square, seed=4)  # fmt: skip
    mean_factor = 1.0 if mode == "inverted" else 1 - P
    var_factor = P / (1 - P) if mode == "inverted" else P * (1 - P)
    mu = x @ (mean_factor * w).t() + b
    var = var_factor * (x * x) @ (w * w).t()
    # Var[u^2] = 4 mu^2 var + 2 var^2 for a Gaussian u.
    bound = 5 * torch.sqrt((4 * mu**2 * var + 2 * var**2) / samples)
    assert torch.all((got - (mu**2 + var)).abs() < bound)


@pytest.mark.parametrize("mode", ["inverted", "classic"])
def test_moment_matching_matches_monte_carlo(mode):
    torch.manual_seed(0)
    x = torch.randn(2, 30, dtype=torch.float64)
    w = torch.randn(5, 30, dtype=torch.float64) * 0.3
    mm = F.drop_connect_linear(x, w, None, 0.5, training=False, mode=mode,
                               inference="moment_matching", samples=4000, activation=torch.relu,
                               seed=1)  # fmt: skip
    draws = torch.stack([
        torch.relu(F.drop_connect_linear(x, w, None, 0.5, mode=mode, seed=s)) for s in range(2000)
    ])  # fmt: skip
    # 30 inputs: the Gaussian approximation is close; allow sampling error plus a small bias.
    tol = 5 * float(draws.std(0).max()) / math.sqrt(2000) + 0.03
    assert torch.allclose(mm, draws.mean(0), atol=tol)
    ws = torch.relu(F.drop_connect_linear(x, w, None, 0.5, training=False, mode=mode))
    assert (mm - ws).abs().max() > 0.05  # moment matching is not the mean network


def test_moment_matching_stream_layout_and_reproducibility():
    import dropkit.functional.drop_connect as module

    x, w = torch.randn(4, 6), torch.randn(3, 6)
    kw = dict(training=False, inference="moment_matching", samples=50, activation=torch.relu)
    y = F.drop_connect_linear(x, w, None, P, seed=8, **kw)
    assert torch.equal(F.drop_connect_linear(x[:2], w, None, P, seed=8, **kw), y[:2])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "_CHUNK_BUDGET", 7)  # chunks over samples within a row
        assert torch.allclose(F.drop_connect_linear(x, w, None, P, seed=8, **kw), y)
    torch.manual_seed(3)
    a = F.drop_connect_linear(x, w, None, P, **kw)
    torch.manual_seed(3)
    assert torch.equal(F.drop_connect_linear(x, w, None, P, **kw), a)
    assert not torch.equal(F.drop_connect_linear(x, w, None, P, seed=9, **kw), y)
    # No activation: moment matching is the mean exactly.
    kw.pop("activation")
    assert torch.equal(F.drop_connect_linear(x, w, None, P, seed=8, **kw), x @ w.t())


def test_reproducible_by_seed_generator_and_manual_seed():
    x, w = torch.randn(3, 8), torch.randn(5, 8)
    for per_sample in (False, True):
        kw = dict(per_sample=per_sample)
        torch.manual_seed(0)
        a = F.drop_connect_linear(x, w, None, 0.5, **kw)
        torch.manual_seed(0)
        assert torch.equal(F.drop_connect_linear(x, w, None, 0.5, **kw), a)
        g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
        assert torch.equal(
            F.drop_connect_linear(x, w, None, 0.5, generator=g1, **kw),
            F.drop_connect_linear(x, w, None, 0.5, generator=g2, **kw),
        )
        assert not torch.equal(F.drop_connect_linear(x, w, None, 0.5, **kw), a)


@pytest.mark.parametrize("padding", [1, "same", "valid", (2, 0)])
def test_conv2d_mask_and_gradcheck(padding):
    torch.manual_seed(2)
    x = torch.randn(2, 4, 5, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    stride = 1 if padding == "same" else (2, 1)
    y = F.drop_connect_conv2d(x, w, b, stride, padding, (1, 2), 2, P, seed=3)
    keep = rng.keep_mask(w.shape, P, 3).double() / (1 - P)
    ref = torch.nn.functional.conv2d(x, w * keep, b, stride, padding, (1, 2), 2)
    assert torch.allclose(y, ref)
    assert torch.autograd.gradcheck(
        lambda *a: F.drop_connect_conv2d(*a, stride, padding, (1, 2), 2, P, seed=3),
        (x[:1].detach().requires_grad_(), w, b),
    )
    unbatched = F.drop_connect_conv2d(x[0], w, b, stride, padding, (1, 2), 2, P, seed=3)
    assert torch.allclose(unbatched, y[0])


def test_conv2d_per_sample_masks_gradients_and_chunks():
    import dropkit.functional.drop_connect as module

    torch.manual_seed(4)
    x = torch.randn(3, 4, 6, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    args = (1, "same", (1, 2), 2, P)
    y = F.drop_connect_conv2d(x, w, b, *args, per_sample=True, seed=6)
    masks = rng.keep_mask((3, *w.shape), P, 6).double() / (1 - P)
    for n in range(3):
        ref = torch.nn.functional.conv2d(x[n : n + 1], w * masks[n], b, 1, "same", (1, 2), 2)
        assert torch.allclose(y[n : n + 1], ref)
    assert torch.equal(F.drop_connect_conv2d(x[:1], w, b, *args, per_sample=True, seed=6), y[:1])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "_CHUNK_BUDGET", w.numel() * 2)  # two samples a chunk
        assert torch.allclose(F.drop_connect_conv2d(x, w, b, *args, per_sample=True, seed=6), y)
        assert torch.autograd.gradcheck(
            lambda *a: F.drop_connect_conv2d(*a, 2, 1, 1, 2, P, per_sample=True, seed=6),
            (x[:, :, :4, :4].detach().requires_grad_(), w, b),
        )
    with pytest.raises(ValueError, match="batched"):
        F.drop_connect_conv2d(x[0], w, b, *args, per_sample=True)


def test_conv2d_inference():
    x, w, b = torch.randn(2, 3, 6, 6), torch.randn(4, 3, 3, 3), torch.randn(4)
    conv = torch.nn.functional.conv2d
    assert torch.equal(F.drop_connect_conv2d(x, w, b, padding=1, training=False),
                       conv(x, w, b, padding=1))  # fmt: skip
    assert torch.equal(F.drop_connect_conv2d(x, w, b, padding=1, p=0.0), conv(x, w, b, padding=1))
    classic = F.drop_connect_conv2d(x, w, b, p=P, training=False, mode="classic")
    assert torch.equal(classic, conv(x, w * (1 - P), b))
    samples = 4000
    got = F.drop_connect_conv2d(x.double(), w.double(), None, p=P, training=False,
                                inference="moment_matching", samples=samples,
                                activation=torch.square, seed=1)  # fmt: skip
    mu = conv(x.double(), w.double())
    var = P / (1 - P) * conv(x.double() ** 2, w.double() ** 2)
    bound = 5 * torch.sqrt((4 * mu**2 * var + 2 * var**2) / samples)
    assert torch.all((got - (mu**2 + var)).abs() < bound)


def test_mc_context_samples_at_inference():
    x, w = torch.randn(3, 8), torch.randn(5, 8)
    with dropkit.mc.stochastic():
        y = F.drop_connect_linear(x, w, None, 0.5, training=False, seed=1)
    assert torch.equal(y, F.drop_connect_linear(x, w, None, 0.5, seed=1))


@pytest.mark.parametrize("per_sample", [False, True])
def test_torch_compile_fullgraph_matches_eager(per_sample):
    x = torch.randn(4, 6, requires_grad=True)
    w = torch.randn(3, 6, requires_grad=True)

    def f(x, w):
        return F.drop_connect_linear(x, w, None, 0.5, per_sample=per_sample).sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    torch.manual_seed(0)
    eager = f(x, w)
    grads = torch.autograd.grad(eager, (x, w))
    torch.manual_seed(0)
    out = compiled(x, w)
    assert torch.equal(out, eager)
    for got, want in zip(torch.autograd.grad(out, (x, w)), grads):
        assert torch.allclose(got, want)


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1, 5),
    fan_in=st.integers(1, 7),
    fan_out=st.integers(1, 6),
    p=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**63 - 1),
)
def test_property_per_batch_equals_reference(n, fan_in, fan_out, p, seed):
    x, w = torch.randn(n, fan_in, dtype=torch.float64), torch.randn(fan_out, fan_in).double()
    w_before = w.clone()
    y = F.drop_connect_linear(x, w, None, p, seed=seed)
    scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
    masked = w * rng.keep_mask(w.shape, p, seed).double() * scale if p > 0 else w
    assert torch.allclose(y, x @ masked.t())
    ys = F.drop_connect_linear(x, w, None, p, per_sample=True, seed=seed)
    masks = rng.keep_mask((n, fan_out, fan_in), p, seed).double() * scale if p > 0 else 1.0
    assert torch.allclose(ys, torch.einsum("noi,ni->no", w * masks * torch.ones(n, 1, 1), x))
    assert torch.equal(w, w_before)  # the weight is never written


def test_errors():
    x, w = torch.randn(2, 3), torch.randn(2, 3)
    with pytest.raises(ValueError, match="inference must be one of"):
        F.drop_connect_linear(x, w, inference="sampling")
    with pytest.raises(ValueError, match="samples must be an integer >= 1"):
        F.drop_connect_linear(x, w, samples=0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.drop_connect_linear(x, w, p=-0.1)
    with pytest.raises(TypeError, match="activation must be callable"):
        F.drop_connect_linear(x, w, activation="relu")
    with pytest.raises(ValueError, match="mode must be one of"):
        F.drop_connect_linear(x, w, mode="scaled")
    with pytest.raises(TypeError, match="weight must have input's dtype"):
        F.drop_connect_linear(x, w.double())
    with pytest.raises(TypeError, match="floating dtype"):
        F.drop_connect_linear(x.long(), w)
    with pytest.raises(ValueError, match="batch dimension"):
        F.drop_connect_linear(x[0], w, per_sample=True)
    with pytest.raises(ValueError, match="either seed or generator"):
        F.drop_connect_linear(x, w, seed=1, generator=torch.Generator())
    xc, wc = torch.randn(1, 2, 5, 5), torch.randn(2, 2, 3, 3)
    with pytest.raises(ValueError, match="padding must be"):
        F.drop_connect_conv2d(xc, wc, padding="full")
    with pytest.raises(ValueError, match="strided"):
        F.drop_connect_conv2d(xc, wc, stride=2, padding="same")
    with pytest.raises(ValueError, match="groups must be an integer >= 1"):
        F.drop_connect_conv2d(xc, wc, groups=0)
    with pytest.raises(ValueError, match="expects"):
        F.drop_connect_conv2d(xc[0, 0], wc)
