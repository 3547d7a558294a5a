"""DropConnect: weight masks, per-sample masks, inference rules, gradients, wrappers."""

import math

import pytest
import torch

from dropkit import functional as F
from dropkit import nn as dnn
from dropkit import rng


def test_per_batch_mask_on_weights():
    x = torch.randn(5, 4)
    w = torch.randn(3, 4)
    b = torch.randn(3)
    y = F.drop_connect_linear(x, w, b, 0.5, seed=7)
    keep = rng.keep_mask(w.shape, 0.5, 7)
    assert torch.allclose(y, x @ (w * keep * 2.0).t() + b)
    classic = F.drop_connect_linear(x, w, b, 0.5, mode="classic", seed=7)
    assert torch.allclose(classic, x @ (w * keep).t() + b)


def test_per_sample_masks_and_gradients():
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    y = F.drop_connect_linear(x, w, None, 0.4, per_sample=True, seed=2)
    masks = rng.keep_mask((6, 3, 4), 0.4, 2).double() / 0.6
    expected = torch.einsum("noi,ni->no", w[None] * masks, x)
    assert torch.allclose(y, expected)
    assert torch.autograd.gradcheck(
        lambda a, b: F.drop_connect_linear(a, b, None, 0.4, per_sample=True, seed=2), (x, w)
    )


def test_per_sample_chunks_agree(monkeypatch):
    import dropkit.functional.drop_connect as module

    x, w = torch.randn(9, 5), torch.randn(4, 5)
    whole = F.drop_connect_linear(x, w, None, 0.5, per_sample=True, seed=1)
    monkeypatch.setattr(module, "_PER_SAMPLE_BUDGET", 40)  # two samples a chunk
    assert torch.allclose(F.drop_connect_linear(x, w, None, 0.5, per_sample=True, seed=1), whole)


def test_weight_scaling_inference():
    x, w, b = torch.randn(3, 4), torch.randn(2, 4), torch.randn(2)
    assert torch.allclose(F.drop_connect_linear(x, w, b, 0.3, training=False), x @ w.t() + b)
    classic = F.drop_connect_linear(x, w, b, 0.3, training=False, mode="classic")
    assert torch.allclose(classic, x @ (0.7 * w).t() + b)


@pytest.mark.parametrize("mode", ["inverted", "classic"])
def test_moment_matching_matches_monte_carlo(mode):
    torch.manual_seed(0)
    x = torch.randn(2, 30, dtype=torch.float64)
    w = torch.randn(5, 30, dtype=torch.float64) * 0.3
    mm = F.drop_connect_linear(x, w, None, 0.5, training=False, mode=mode,
                               inference="moment_matching", samples=4000, activation=torch.relu,
                               seed=1)  # fmt: skip
    draws = torch.stack([
        torch.relu(F.drop_connect_linear(x, w, None, 0.5, mode=mode, seed=s)) for s in range(4000)
    ])  # fmt: skip
    mc = draws.mean(0)
    assert torch.allclose(mm, mc, atol=5 * float(draws.std(0).max()) / math.sqrt(4000) + 0.02)
    ws = torch.relu(F.drop_connect_linear(x, w, None, 0.5, training=False, mode=mode))
    assert (mm - ws).abs().max() > 0.01  # moment matching differs from the mean network


def test_conv2d_mask_and_from_conv2d():
    conv = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1, groups=2)
    x = torch.randn(2, 4, 9, 9)
    layer = dnn.DropConnectConv2d.from_conv2d(conv, 0.5, seed=3)
    keep = rng.keep_mask(conv.weight.shape, 0.5, 3)
    expected = torch.nn.functional.conv2d(x, conv.weight * keep * 2.0, conv.bias, 2, 1, 1, 2)
    assert torch.allclose(layer(x), expected, atol=1e-6)
    layer.eval()
    assert torch.equal(layer(x), conv(x))


def test_from_linear_keeps_parameters_bit_for_bit():
    linear = torch.nn.Linear(7, 3)
    layer = dnn.DropConnectLinear.from_linear(linear, 0.0)
    x = torch.randn(4, 7)
    assert layer.weight is linear.weight and layer.bias is linear.bias
    assert torch.equal(layer(x), linear(x))
    layer.eval()
    assert torch.equal(layer(x), linear(x))


def test_errors():
    x, w = torch.randn(2, 3), torch.randn(2, 3)
    with pytest.raises(ValueError, match="inference must be one of"):
        F.drop_connect_linear(x, w, inference="sampling")
    with pytest.raises(ValueError, match="samples must be an integer >= 1"):
        F.drop_connect_linear(x, w, samples=0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        dnn.DropConnectLinear(3, 2, p=1.5)
    with pytest.raises(TypeError, match="nn.Linear"):
        dnn.DropConnectLinear.from_linear(torch.nn.Conv2d(1, 1, 1))
