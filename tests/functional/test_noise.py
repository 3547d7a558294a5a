"""Gaussian and alpha dropout: moments, torch agreement, gradients, errors."""

import math

import pytest
import torch

from dropkit import functional as F
from dropkit import rng

SELU_ALPHA_PRIME = 1.7580993408473766


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_gaussian_noise_moments(p):
    n = 1 << 18
    y = F.gaussian_dropout(torch.ones(n, dtype=torch.float64), p, seed=1)
    var = p / (1 - p)
    assert abs(float(y.mean()) - 1.0) < 5 * math.sqrt(var / n)
    assert abs(float(y.var()) - var) < 5 * var * math.sqrt(2 / n)


def test_gaussian_formula_eval_and_gradient():
    x = torch.randn(100, dtype=torch.float64, requires_grad=True)
    y = F.gaussian_dropout(x, 0.3, seed=5)
    z = rng.normal((100,), 5, dtype=torch.float64)
    multiplier = 1 + math.sqrt(0.3 / 0.7) * z
    assert torch.allclose(y, x * multiplier)
    y.sum().backward()
    assert torch.allclose(x.grad, multiplier)
    assert F.gaussian_dropout(x, 0.3, training=False) is x
    small = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: F.gaussian_dropout(t, 0.4, seed=2), (small,))


@pytest.mark.parametrize("p", [-0.1, 1.0, 2.0])
def test_gaussian_rejects_p(p):
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        F.gaussian_dropout(torch.randn(3), p)


def test_alpha_dropout_values_match_torch_formula():
    p = 0.2
    x = torch.randn(1000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = F.alpha_dropout(x, p, training=True, seed=3)
    keep = rng.keep_mask((1000,), p, 3)
    a = 1 / math.sqrt((SELU_ALPHA_PRIME**2 * p + 1) * (1 - p))
    expected = torch.where(keep, a * x + SELU_ALPHA_PRIME * a * p, -SELU_ALPHA_PRIME * a * (1 - p))
    assert torch.allclose(y, expected, rtol=1e-12, atol=1e-12)
    # torch draws its own mask; its kept and dropped values follow the same formula
    torch.manual_seed(0)
    t = torch.nn.functional.alpha_dropout(x, p, training=True)
    dropped_value = -SELU_ALPHA_PRIME * a * (1 - p)
    is_dropped = torch.isclose(t, torch.tensor(dropped_value, dtype=torch.float64))
    assert torch.allclose(t[~is_dropped], (a * x + SELU_ALPHA_PRIME * a * p)[~is_dropped])


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
    a = 1 / math.sqrt((SELU_ALPHA_PRIME**2 * 0.3 + 1) * 0.7)
    assert torch.allclose(x.grad, rng.keep_mask((50,), 0.3, 4).double() * a)
