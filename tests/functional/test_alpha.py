"""Alpha and feature-alpha dropout: torch's formula and structure, statistics, autograd, errors."""

import math

import pytest
import torch

import dropkit
from dropkit import functional as F
from dropkit import rng

ALPHA_PRIME = 1.7580993408473766  # -lambda * alpha of SELU


def _coefficients(p):
    a = 1 / math.sqrt((ALPHA_PRIME**2 * p + 1) * (1 - p))
    return a, ALPHA_PRIME * a * p, -ALPHA_PRIME * a * (1 - p)


def test_torch_constant_is_selu_saturation():
    lam, alpha = 1.0507009873554804934193349852946, 1.6732632423543772848170429916717
    assert math.isclose(lam * alpha, ALPHA_PRIME, rel_tol=1e-15)
    assert math.isclose(float(-torch.selu(torch.tensor(-1e4, dtype=torch.float64))), ALPHA_PRIME)


@pytest.mark.parametrize("p", [0.05, 0.3])
def test_drop_rate_and_values_like_torch(p):
    n = 200_000
    x = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    a, shift, dropped = _coefficients(p)
    ours = F.alpha_dropout(x, p, True, seed=2)
    torch.manual_seed(2)
    theirs = torch.nn.functional.alpha_dropout(x, p, True)
    bound = 5 * math.sqrt(p * (1 - p) / n)
    for y in (ours, theirs):
        is_dropped = torch.isclose(y, torch.tensor(dropped, dtype=torch.float64))
        assert abs(float(is_dropped.double().mean()) - p) < bound
        torch.testing.assert_close(y[~is_dropped], (a * x + shift)[~is_dropped])


def test_feature_alpha_channel_structure_and_rate_like_torch():
    n, c = 100, 400
    x = torch.randn(n, c, 3, 3)
    p = 0.25
    _, _, dropped = _coefficients(p)
    ours = F.feature_alpha_dropout(x, p, True, seed=4)
    torch.manual_seed(4)
    theirs = torch.nn.functional.feature_alpha_dropout(x, p, True)
    keep = rng.keep_mask((n, c), p, 4)
    assert torch.allclose(ours[~keep], torch.tensor(dropped))
    bound = 5 * math.sqrt(p * (1 - p) / (n * c))
    for y in (ours, theirs):
        channel_dropped = torch.isclose(y, torch.tensor(dropped)).all(-1).all(-1)
        assert abs(float(channel_dropped.double().mean()) - p) < bound


def test_feature_alpha_needs_two_dims_like_torch():
    for fn in (F.feature_alpha_dropout, torch.nn.functional.feature_alpha_dropout):
        with pytest.raises(RuntimeError, match="Feature dropout requires at least 2 dimensions"):
            fn(torch.randn(5), 0.5, True)
    assert torch.equal(F.feature_alpha_dropout(torch.ones(5), 0.5, False), torch.ones(5))


def test_p_one_gives_zeros_like_torch():
    x = torch.randn(3, 4)
    assert torch.equal(
        F.alpha_dropout(x, 1.0, True), torch.nn.functional.alpha_dropout(x, 1.0, True)
    )


def test_gradcheck_no_saved_mask_and_compile():
    x = torch.randn(4, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: F.feature_alpha_dropout(t, 0.4, True, seed=1), (x,))
    saved = []
    leaf = torch.randn(64, 64, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        F.alpha_dropout(leaf, 0.3, True, seed=1)
    assert sum(t.numel() for t in saved) <= 1

    def fn(t):
        return F.alpha_dropout(t, 0.2, True, seed=5) + 1

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    inp = torch.randn(8, 8)
    assert torch.equal(compiled(inp), fn(inp))


def test_eval_mc_inplace_and_reproducibility():
    x = torch.randn(6, 5)
    assert F.alpha_dropout(x, 0.5, training=False) is x
    with dropkit.mc.stochastic():
        sampled = F.alpha_dropout(x, 0.5, False, seed=3)
    assert torch.equal(sampled, F.alpha_dropout(x, 0.5, True, seed=3))
    torch.manual_seed(9)
    a = F.feature_alpha_dropout(x, 0.5, True)
    torch.manual_seed(9)
    assert torch.equal(a, F.feature_alpha_dropout(x, 0.5, True))
    expected = F.alpha_dropout(x, 0.5, True, seed=2)
    assert F.alpha_dropout(x, 0.5, True, True, seed=2) is x and torch.equal(x, expected)


@pytest.mark.parametrize("p", [-0.2, 1.2])
def test_bad_probability(p):
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.feature_alpha_dropout(torch.randn(2, 3), p, True)


def test_feature_alpha_rounds_like_torch_formula_in_float32():
    x = torch.randn(3, 4, 5, 5)
    p = 0.3
    a, shift, dropped = _coefficients(p)
    keep = rng.keep_mask((3, 4, 1, 1), p, 6)
    multiplier = keep.float() * torch.tensor(a, dtype=torch.float32)
    b = torch.where(keep, torch.tensor(shift), torch.tensor(dropped)).float()
    assert torch.equal(F.feature_alpha_dropout(x, p, True, seed=6), x * multiplier + b)


def test_alpha_dropout_values_match_torch_formula():
    p = 0.2
    x = torch.randn(1000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = F.alpha_dropout(x, p, training=True, seed=3)
    keep = rng.keep_mask((1000,), p, 3)
    a = 1 / math.sqrt((ALPHA_PRIME**2 * p + 1) * (1 - p))
    expected = torch.where(keep, a * x + ALPHA_PRIME * a * p, -ALPHA_PRIME * a * (1 - p))
    assert torch.allclose(y, expected, rtol=1e-12, atol=1e-12)
    # torch draws its own mask; its kept and dropped values follow the same formula
    torch.manual_seed(0)
    t = torch.nn.functional.alpha_dropout(x, p, training=True)
    dropped_value = -ALPHA_PRIME * a * (1 - p)
    is_dropped = torch.isclose(t, torch.tensor(dropped_value, dtype=torch.float64))
    assert torch.allclose(t[~is_dropped], (a * x + ALPHA_PRIME * a * p)[~is_dropped])


def test_alpha_dropout_preserves_selu_moments():
    n = 1 << 18
    x = torch.randn(n, dtype=torch.float64)
    y = F.alpha_dropout(x, 0.1, training=True, seed=8)
    assert abs(float(y.mean())) < 0.02 and abs(float(y.var()) - 1) < 0.02


def test_alpha_defaults_and_feature_form():
    x = torch.randn(4, 6, 3, 3)
    assert F.alpha_dropout(x, 0.5) is x  # torch's default training=False
    y = F.feature_alpha_dropout(x, 0.5, training=True, seed=2)
    flat = (y - y[..., :1, :1]).reshape(4, 6, -1)
    keep = rng.keep_mask((4, 6), 0.5, 2)
    assert torch.all(flat[~keep] == 0)  # dropped channels are constant
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.alpha_dropout(x, 1.5, training=True)


def test_alpha_gradient_is_scaled_mask():
    x = torch.randn(50, dtype=torch.float64, requires_grad=True)
    F.alpha_dropout(x, 0.3, training=True, seed=4).sum().backward()
    a = 1 / math.sqrt((ALPHA_PRIME**2 * 0.3 + 1) * 0.7)
    assert torch.allclose(x.grad, rng.keep_mask((50,), 0.3, 4).double() * a)


@pytest.mark.parametrize("a", [1e-46, -1e-46, 0.0, 2.0**-150, 2.0**-149])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_affine_kernel_and_multiplier_route_agree_for_any_a(a, dtype):
    # The reference tells kept from dropped by a * m != 0, the one-pass kernels by the stream
    # word: where a rounds to 0 (float32 accumulation) the op must keep the reference's values.
    from dropkit import kernels
    from dropkit.kernels import reference

    x = torch.randn(6, 4, 5).to(dtype)
    strided = torch.empty(5, 4, 6, dtype=dtype).permute(2, 1, 0).copy_(x)
    t = rng.keep_threshold(0.5)
    for mask_shape in ([6, 4, 5], [6, 1, 5]):
        fused = kernels.apply_keep_affine(x, 3, 0, t, a, 0.25, -0.5, mask_shape=mask_shape)
        route = kernels.apply_keep_affine(strided, 3, 0, t, a, 0.25, -0.5, mask_shape=mask_shape)
        want = reference.apply_keep_affine(x, 3, 0, t, a, 0.25, -0.5, mask_shape=mask_shape)
        assert torch.equal(fused, want) and torch.equal(route.contiguous(), want)
