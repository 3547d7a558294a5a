"""Max-norm: rows of torch's (out, in) weights, conv kernels, optimiser hook, bias option."""

import pytest
import torch

import dropkit
from dropkit import MaxNorm, max_norm_


def test_linear_rows_are_constrained_not_columns():
    layer = torch.nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 4.0, 0.0], [0.3, 0.4, 0.0]]))
    max_norm_(layer, 1.0)
    assert torch.allclose(layer.weight[0], torch.tensor([0.6, 0.8, 0.0]), atol=1e-6)
    assert torch.equal(layer.weight[1], torch.tensor([0.3, 0.4, 0.0]))  # untouched, bit for bit
    assert torch.allclose(layer.weight.norm(dim=1).max(), torch.tensor(1.0), atol=1e-6)


def test_conv_norm_over_all_but_dim0_and_bias_option():
    conv = torch.nn.Conv2d(2, 3, 3)
    with torch.no_grad():
        conv.weight.mul_(100)
    max_norm_(conv, 2.0)
    norms = conv.weight.reshape(3, -1).norm(dim=1)
    assert torch.allclose(norms, torch.full((3,), 2.0), atol=1e-5)
    layer = torch.nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 0.0]]))
        layer.bias.fill_(4.0)
    max_norm_(layer, 1.0, include_bias=True)
    assert torch.allclose(layer.weight, torch.tensor([[0.6, 0.0]]), atol=1e-6)
    assert torch.allclose(layer.bias, torch.tensor([0.8]), atol=1e-6)


def test_optimizer_hook_and_removal():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=10.0)
    handle = MaxNorm(0.5).attach(opt)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(16, 5)).pow(2).mean().backward()
        opt.step()
        for layer in (model[0], model[2]):
            assert layer.weight.norm(dim=1).max() <= 0.5 + 1e-5
    handle.remove()
    with torch.no_grad():
        model[0].weight.mul_(100)
    opt.zero_grad()
    model(torch.randn(16, 5)).pow(2).mean().backward()
    opt.step()
    assert model[0].weight.norm(dim=1).max() > 0.5


def test_call_on_model_and_errors():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with torch.no_grad():
        model[0].weight.mul_(50)
    dropkit.MaxNorm(1.0)(model)
    assert model[0].weight.norm(dim=1).max() <= 1.0 + 1e-6
    with pytest.raises(ValueError, match="max_norm must be a number > 0"):
        MaxNorm(0)
    with pytest.raises(ValueError, match="no Linear or Conv"):
        max_norm_(torch.nn.ReLU(), 1.0)
    with pytest.raises(ValueError, match="MaxNorm needs a model"):
        MaxNorm(1.0)()
