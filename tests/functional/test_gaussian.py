"""Gaussian dropout: stream words consumed, moments, no stored noise, compile, errors."""

import math

import numpy as np
import pytest
import torch

import dropkit
from dropkit import functional as F
from dropkit import rng


def test_element_i_uses_the_variate_at_i_plus_offset():
    x = torch.ones(64, dtype=torch.float64)
    base = F.gaussian_dropout(x, 0.5, seed=4)
    shifted = F.gaussian_dropout(x[:60], 0.5, seed=4, offset=4)
    assert torch.equal(shifted, base[4:])
    z = rng.normal((64,), 4, dtype=torch.float64)
    torch.testing.assert_close(base, 1 + z, rtol=0, atol=1e-12)  # std = 1 at p = 0.5


def test_multidim_row_major_and_float32():
    x = torch.randn(3, 5)
    y = F.gaussian_dropout(x, 0.2, seed=9)
    z = rng.normal((15,), 9, dtype=torch.float64).view(3, 5)
    expected = (x * (1 + math.sqrt(0.25) * z).float()).float()
    torch.testing.assert_close(y, expected)
    assert y.dtype == torch.float32


def test_no_noise_tensor_saved_for_backward():
    x = torch.randn(32, 32, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = F.gaussian_dropout(x, 0.3, seed=1)
    assert sum(t.numel() for t in saved) <= 1
    y.backward(torch.ones_like(y))
    torch.testing.assert_close(x.grad, F.gaussian_dropout(torch.ones(32, 32), 0.3, seed=1))


def test_compile_fullgraph_matches_eager():
    def fn(t):
        return F.gaussian_dropout(t, 0.4, seed=2).sum(-1)

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    inp = torch.randn(4, 6)
    assert torch.equal(compiled(inp), fn(inp))


def test_eval_mc_inplace_and_reproducibility():
    x = torch.randn(5, 4)
    assert F.gaussian_dropout(x, 0.5, training=False) is x
    with dropkit.mc.stochastic():
        sampled = F.gaussian_dropout(x, 0.5, False, seed=3)
    assert torch.equal(sampled, F.gaussian_dropout(x, 0.5, True, seed=3))
    torch.manual_seed(8)
    a = F.gaussian_dropout(x, 0.5)
    torch.manual_seed(8)
    assert torch.equal(a, F.gaussian_dropout(x, 0.5))
    expected = F.gaussian_dropout(x, 0.5, seed=6)
    assert F.gaussian_dropout(x, 0.5, inplace=True, seed=6) is x and torch.equal(x, expected)


def test_expectation_of_product_preserved():
    n = 1 << 16
    x = torch.full((n,), -2.0, dtype=torch.float64)
    y = F.gaussian_dropout(x, 0.75, seed=10)
    assert abs(float(y.mean()) + 2.0) < 5 * 2.0 * math.sqrt(3.0 / n)


@pytest.mark.parametrize("p", ["0.5", None])
def test_p_type_errors(p):
    # torch's error for a p that is no number
    with pytest.raises(TypeError, match="argument 'p' must be float"):
        F.gaussian_dropout(torch.randn(3), p)


def test_p_as_torch_takes_it():
    x = torch.randn(50)
    want = F.gaussian_dropout(x, 0.5, seed=3)
    for p in (np.float32(0.5), torch.tensor(0.5), 0.5):
        assert torch.equal(F.gaussian_dropout(x, p, seed=3), want)
    with pytest.raises(ValueError, match=r"p has to be in \[0, 1\)"):
        F.gaussian_dropout(x, True)  # a bool is p = 1: infinite variance


def test_integer_input_rejected():
    with pytest.raises(TypeError):
        F.gaussian_dropout(torch.ones(3, dtype=torch.int32), 0.5)


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
