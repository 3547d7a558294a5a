import pytest
import torch
from torch import nn

import dropkit.nn as dnn
from dropkit_lab.engine import MLPConfig, build_mlp


def kinds(model):
    return [type(m).__name__ for m in model.layers]


def test_layout_input_and_hidden_dropout():
    cfg = MLPConfig(784, (800, 800), 10, method="dropout", input_p=0.2, hidden_p=0.5)
    model = build_mlp(cfg, seed=0)
    assert kinds(model) == [
        "Dropout",
        "Linear",
        "ReLU",
        "Dropout",
        "Linear",
        "ReLU",
        "Dropout",
        "Linear",
    ]
    assert [m.p for m in model.layers if isinstance(m, dnn.Dropout)] == [0.2, 0.5, 0.5]
    assert model(torch.zeros(3, 784)).shape == (3, 10)
    assert [w.shape for w in model.hidden_weights()] == [(800, 784), (800, 800)]


def test_layout_batchnorm_noise_after_last_only():
    cfg = MLPConfig(
        64,
        (32, 32),
        10,
        activation="logistic",
        method="dropout",
        hidden_p=0.5,
        batchnorm=True,
        hidden_noise_on="last",
    )
    assert kinds(build_mlp(cfg, 0)) == [
        "Linear",
        "BatchNorm1d",
        "Sigmoid",
        "Linear",
        "BatchNorm1d",
        "Sigmoid",
        "Dropout",
        "Linear",
    ]


def test_no_noise_layers_when_method_none_or_p_zero():
    for cfg in (MLPConfig(8, (4,), 2), MLPConfig(8, (4,), 2, method="dropout")):
        assert kinds(build_mlp(cfg, 0)) == ["Linear", "ReLU", "Linear"]


def test_init_normal_001_and_zero_bias_deterministic():
    cfg = MLPConfig(784, (800,), 10)
    a, b, c = build_mlp(cfg, 1), build_mlp(cfg, 1), build_mlp(cfg, 2)
    w = a.layers[0].weight.detach()
    n = w.numel()
    # Sample std of n normals: standard error sigma / sqrt(2n); 5-sigma bound.
    assert abs(float(w.std()) - 0.01) < 5 * 0.01 / (2 * n) ** 0.5
    assert abs(float(w.mean())) < 5 * 0.01 / n**0.5
    assert float(a.layers[0].bias.detach().abs().max()) == 0.0
    assert torch.equal(w, b.layers[0].weight)
    assert not torch.equal(w, c.layers[0].weight)


def test_hidden_returns_post_activation_values():
    model = build_mlp(MLPConfig(8, (5, 3), 2, method="dropout", hidden_p=0.5), 0).eval()
    with torch.no_grad():
        h = model.hidden(torch.randn(4, 8))
    assert [t.shape for t in h] == [(4, 5), (4, 3)]
    assert all(float(t.min()) >= 0 for t in h)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "bogus"}, "method"),
        ({"activation": "tanh"}, "activation"),
        ({"input_p": 1.0}, "input_p"),
        ({"hidden_p": -0.1}, "hidden_p"),
        ({"widths": ()}, "widths"),
        ({"hidden_noise_on": "first"}, "hidden_noise_on"),
        ({"init_std": 0.0}, "init_std"),
    ],
)
def test_config_validation(kwargs, match):
    base = {"in_features": 8, "widths": (4,), "num_classes": 2}
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        MLPConfig(**base)


def test_gaussian_and_dropconnect_layers():
    if hasattr(dnn, "GaussianDropout"):
        model = build_mlp(MLPConfig(8, (4,), 2, method="gaussian", hidden_p=0.5), 0)
        assert "GaussianDropout" in kinds(model)
    else:
        with pytest.raises(ImportError, match="GaussianDropout"):
            build_mlp(MLPConfig(8, (4,), 2, method="gaussian", hidden_p=0.5), 0)
    cfg = MLPConfig(8, (4, 4), 2, method="dropconnect", input_p=0.2, hidden_p=0.5)
    if hasattr(dnn, "DropConnectLinear"):
        model = build_mlp(cfg, 0)
        assert kinds(model) == ["Dropout", "DropConnectLinear", "DropConnectLinear", "Linear"]
        assert model(torch.zeros(2, 8)).shape == (2, 2)
        assert isinstance(model.hidden_weights()[0], nn.Parameter)
    else:
        with pytest.raises(ImportError, match="DropConnectLinear"):
            build_mlp(cfg, 0)
