"""DropConnectLinear / DropConnectConv2d: wrapping existing layers, modes, inference, errors."""

import copy
import pickle

import pytest
import torch

import dropkit
from dropkit import nn as dnn
from dropkit import rng


def test_from_linear_keeps_parameters_bit_for_bit():
    linear = torch.nn.Linear(7, 3)
    x = torch.randn(4, 7)
    layer = dnn.DropConnectLinear.from_linear(linear, 0.0)
    assert layer.weight is linear.weight and layer.bias is linear.bias
    assert torch.equal(layer(x), linear(x))
    layer = dnn.DropConnectLinear.from_linear(linear, 0.5).eval()
    assert torch.equal(layer(x), linear(x))
    no_bias = torch.nn.Linear(7, 3, bias=False)
    assert dnn.DropConnectLinear.from_linear(no_bias).bias is None


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "circular", "replicate"])
def test_from_conv2d_keeps_every_hyper_parameter(padding_mode):
    conv = torch.nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2,
                           padding_mode=padding_mode)  # fmt: skip
    x = torch.randn(2, 4, 9, 8)
    layer = dnn.DropConnectConv2d.from_conv2d(conv, 0.0)
    for name in ("stride", "padding", "dilation", "groups", "padding_mode", "kernel_size"):
        assert getattr(layer, name) == getattr(conv, name)
    assert layer.weight is conv.weight and layer.bias is conv.bias
    assert torch.equal(layer(x), conv(x))
    layer = dnn.DropConnectConv2d.from_conv2d(conv, 0.5, seed=3)
    assert torch.equal(layer.eval()(x), conv(x))
    layer.train()
    keep = rng.keep_mask(conv.weight.shape, 0.5, 3).float() * 2.0
    masked = copy.deepcopy(conv)
    with torch.no_grad():
        masked.weight.mul_(keep)
    assert torch.allclose(layer(x), masked(x), atol=1e-5)


def test_same_padding_module():
    conv = torch.nn.Conv2d(2, 3, 4, padding="same", bias=False)
    layer = dnn.DropConnectConv2d.from_conv2d(conv, 0.3, seed=1)
    x = torch.randn(1, 2, 6, 6)
    keep = rng.keep_mask(conv.weight.shape, 0.3, 1).float() / 0.7
    expected = torch.nn.functional.conv2d(x, conv.weight * keep, None, 1, "same")
    assert torch.allclose(layer(x), expected, atol=1e-5)


def test_linear_module_modes_and_per_sample():
    layer = dnn.DropConnectLinear(5, 4, p=0.5, mode="classic", seed=2)
    x = torch.randn(3, 5)
    keep = rng.keep_mask((4, 5), 0.5, 2).float()
    assert torch.allclose(layer(x), x @ (layer.weight * keep).t() + layer.bias)
    layer.eval()
    assert torch.allclose(layer(x), x @ (0.5 * layer.weight).t() + layer.bias)
    per = dnn.DropConnectLinear(5, 4, p=0.5, per_sample=True, seed=2)
    masks = rng.keep_mask((3, 4, 5), 0.5, 2).float() * 2.0
    expected = torch.einsum("noi,ni->no", per.weight * masks, x) + per.bias
    assert torch.allclose(per(x), expected, atol=1e-5)


def test_moment_matching_module_and_training_loop():
    torch.manual_seed(0)
    layer = dnn.DropConnectLinear(6, 5, p=0.5, inference="moment_matching", samples=64,
                                  activation=torch.relu)  # fmt: skip
    x = torch.randn(8, 6)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    constraint = dropkit.MaxNorm(1.0)
    handle = constraint.attach(opt, layer)
    for _ in range(2):
        opt.zero_grad()
        layer(x).sum().backward()
        opt.step()
    handle.remove()
    assert layer.weight.norm(dim=1).max() <= 1.0 + 1e-6
    layer.eval()
    with torch.no_grad():
        out = layer(x)
    assert out.shape == (8, 5) and torch.all(out >= 0)
    # Relu of a Gaussian averages to at least relu of its mean (Jensen): moment matching is not
    # the mean network.
    assert torch.all(out >= torch.relu(layer.weight @ x.t() + layer.bias[:, None]).t() - 0.1)


def test_extra_repr_pickle_and_state_dict():
    layer = dnn.DropConnectLinear(3, 2, p=0.25, mode="classic", inference="moment_matching",
                                  samples=10, activation=torch.relu, seed=5)  # fmt: skip
    text = repr(layer)
    for part in ("in_features=3", "p=0.25", "'classic'", "'moment_matching'", "samples=10",
                 "activation=relu", "seed=5"):  # fmt: skip
        assert part in text
    conv = dnn.DropConnectConv2d(2, 3, 3, padding=1, p=0.1, generator=torch.Generator())
    assert "p=0.1" in repr(conv) and "padding=(1, 1)" in repr(conv)
    clone = pickle.loads(pickle.dumps(conv))
    # the generator travels with the layer (its state too)
    assert isinstance(clone.generator, torch.Generator) and torch.equal(clone.weight, conv.weight)
    assert set(layer.state_dict()) == {"weight", "bias"}


def test_module_errors():
    with pytest.raises(ValueError, match="between 0 and 1"):
        dnn.DropConnectLinear(3, 2, p=1.5)
    with pytest.raises(ValueError, match="inference must be one of"):
        dnn.DropConnectLinear(3, 2, inference="mc")
    with pytest.raises(ValueError, match="samples must be an integer >= 1"):
        dnn.DropConnectConv2d(1, 1, 1, samples=0)
    with pytest.raises(TypeError, match="activation must be callable"):
        dnn.DropConnectLinear(3, 2, activation=3)
    with pytest.raises(ValueError, match="mode must be one of"):
        dnn.DropConnectConv2d(1, 1, 1, mode="x")
    with pytest.raises(ValueError, match="either seed or generator"):
        dnn.DropConnectLinear(3, 2, seed=1, generator=torch.Generator())
    with pytest.raises(TypeError, match="nn.Linear"):
        dnn.DropConnectLinear.from_linear(torch.nn.Conv2d(1, 1, 1))
    with pytest.raises(TypeError, match="nn.Conv2d"):
        dnn.DropConnectConv2d.from_conv2d(torch.nn.Linear(1, 1))


def test_conv2d_per_sample_module():
    layer = dnn.DropConnectConv2d(2, 3, 3, padding=1, padding_mode="reflect", p=0.4,
                                  per_sample=True, seed=4)  # fmt: skip
    assert "per_sample=True" in repr(layer)
    x = torch.randn(3, 2, 5, 5)
    y = layer(x)
    masks = rng.keep_mask((3, *layer.weight.shape), 0.4, 4).float() / 0.6
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    for n in range(3):
        ref = torch.nn.functional.conv2d(padded[n : n + 1], layer.weight * masks[n], layer.bias)
        assert torch.allclose(y[n : n + 1], ref, atol=1e-5)


def test_mc_predict_batched_equals_looped_with_per_sample_masks():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        dnn.DropConnectLinear(6, 8, p=0.5, per_sample=True, activation=torch.relu),
        torch.nn.Linear(8, 3),
    ).eval()
    x = torch.randn(5, 6)
    batched = dropkit.mc.mc_predict(model, x, samples=6, batch_replicas=True, seed=3)
    looped = dropkit.mc.mc_predict(model, x, samples=6, batch_replicas=False, seed=3)
    assert torch.allclose(batched.mean, looped.mean, atol=1e-6)
    assert torch.allclose(batched.mutual_information, looped.mutual_information, atol=1e-5)
    assert batched.mutual_information.max() > 0  # the passes really differ
