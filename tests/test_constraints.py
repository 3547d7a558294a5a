"""Max-norm: rows of torch's (out, in) weights, conv kernels, optimiser hook, bias option."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import dropkit
from dropkit import MaxNorm, max_norm_


def _keras_max_norm(kernel: np.ndarray, c: float, axis: int, eps: float = 1e-7) -> np.ndarray:
    """Keras' MaxNorm formula (tf.keras.constraints.MaxNorm.__call__), in numpy."""
    norms = np.sqrt(np.sum(np.square(kernel), axis=axis, keepdims=True))
    return kernel * (np.clip(norms, 0, c) / (eps + norms))


def test_linear_rows_are_constrained_not_columns():
    layer = torch.nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 4.0, 0.0], [0.3, 0.4, 0.0]]))
    max_norm_(layer, 1.0)
    assert torch.allclose(layer.weight[0], torch.tensor([0.6, 0.8, 0.0]), atol=1e-6)
    assert torch.equal(layer.weight[1], torch.tensor([0.3, 0.4, 0.0]))  # untouched, bit for bit
    assert torch.allclose(layer.weight.norm(dim=1).max(), torch.tensor(1.0), atol=1e-6)


def test_agrees_with_keras_axis0_on_the_transposed_kernel():
    torch.manual_seed(0)
    layer = torch.nn.Linear(6, 4, bias=False)
    with torch.no_grad():
        layer.weight.mul_(torch.tensor([5.0, 0.1, 8.0, 0.2])[:, None])  # two rows outside
    keras_kernel = layer.weight.detach().numpy().T.astype(np.float64)  # Keras layout (in, out)
    expected = _keras_max_norm(keras_kernel, 1.0, axis=0).T
    naive = _keras_max_norm(layer.weight.detach().numpy().astype(np.float64), 1.0, axis=0)
    max_norm_(layer, 1.0)
    got = layer.weight.detach().numpy()
    assert np.allclose(got, expected, atol=1e-6)
    # Keras' axis=0 on torch's (out, in) weight would constrain columns, a different result.
    assert not np.allclose(got, naive, atol=1e-3)
    assert np.all(np.linalg.norm(got, axis=1) <= 1.0 + 1e-6)


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 6),
    cols=st.integers(1, 6),
    scale=st.floats(0.01, 10.0),
    c=st.floats(0.1, 5.0),
    seed=st.integers(0, 1000),
)
def test_property_inside_untouched_outside_on_the_sphere(rows, cols, scale, c, seed):
    weight = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed)) * scale
    before = weight.clone()
    max_norm_(weight, c)
    norms = before.norm(dim=1)
    inside = norms <= c
    assert torch.equal(weight[inside], before[inside])
    assert torch.allclose(weight[~inside].norm(dim=1), torch.full_like(norms[~inside], c),
                          rtol=1e-5)  # fmt: skip
    # Direction is kept: a positive multiple of the original row.
    assert torch.allclose(weight[~inside] / weight[~inside].norm(dim=1, keepdim=True),
                          before[~inside] / norms[~inside, None], atol=1e-5)  # fmt: skip


def test_conv_norm_over_all_but_dim0_and_bias_option():
    for conv in (torch.nn.Conv1d(2, 3, 3), torch.nn.Conv2d(2, 3, 3, groups=1),
                 torch.nn.Conv3d(4, 6, 2, groups=2)):  # fmt: skip
        with torch.no_grad():
            conv.weight.mul_(100)
        max_norm_(conv, 2.0)
        norms = conv.weight.reshape(conv.weight.shape[0], -1).norm(dim=1)
        assert torch.allclose(norms, torch.full_like(norms, 2.0), atol=1e-5)
    layer = torch.nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 0.0]]))
        layer.bias.fill_(4.0)
    max_norm_(layer, 1.0, include_bias=True)
    assert torch.allclose(layer.weight, torch.tensor([[0.6, 0.0]]), atol=1e-6)
    assert torch.allclose(layer.bias, torch.tensor([0.8]), atol=1e-6)
    # Without include_bias the same layer's bias is ignored and left alone.
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 0.0]]))
        layer.bias.fill_(4.0)
    max_norm_(layer, 1.0)
    assert torch.allclose(layer.weight, torch.tensor([[1.0, 0.0]]), atol=1e-6)
    assert torch.equal(layer.bias, torch.tensor([4.0]))


def test_dim_argument_and_half_precision():
    weight = torch.tensor([[3.0, 0.1], [4.0, 0.1]])
    max_norm_(weight, 1.0, dim=1)  # units along dim 1: columns
    assert torch.allclose(weight[:, 0], torch.tensor([0.6, 0.8]), atol=1e-6)
    assert torch.equal(weight[:, 1], torch.tensor([0.1, 0.1]))
    whole = torch.full((2, 2), 3.0)
    max_norm_(whole, 3.0, dim=None)
    assert torch.allclose(whole.norm(), torch.tensor(3.0), atol=1e-5)
    half = torch.full((2, 300), 100.0, dtype=torch.float16)  # the sum of squares overflows fp16
    max_norm_(half, 1.0)
    assert torch.isfinite(half).all()
    assert torch.allclose(half.float().norm(dim=1), torch.ones(2), atol=1e-2)


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


def test_hook_with_model_and_with_modules():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 3))
    with torch.no_grad():
        for param in model.parameters():
            param.mul_(50)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    MaxNorm(1.0, include_bias=True).attach(opt, model)
    opt.step()
    linear = model[1]
    joint = torch.cat([linear.weight, linear.bias[:, None]], 1).norm(dim=1)
    assert joint.max() <= 1.0 + 1e-5
    assert model[0].weight.norm(dim=1).max() > 1.0  # the embedding table is not a layer's fan-in
    first, second = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    with torch.no_grad():
        first.weight.mul_(50)
        second.weight.mul_(50)
    opt = torch.optim.SGD([*first.parameters(), *second.parameters()], lr=0.0)
    MaxNorm(1.0, modules=[first]).attach(opt)
    opt.step()
    assert first.weight.norm(dim=1).max() <= 1.0 + 1e-5
    assert second.weight.norm(dim=1).max() > 1.0


def test_drop_connect_layers_are_constrained():
    layer = dropkit.nn.DropConnectLinear(4, 3, p=0.5)
    with torch.no_grad():
        layer.weight.mul_(100)
    dropkit.MaxNorm(2.0).apply(layer)
    assert layer.weight.norm(dim=1).max() <= 2.0 + 1e-5


def test_call_on_model_repr_and_errors():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with torch.no_grad():
        model[0].weight.mul_(50)
    dropkit.MaxNorm(1.0)(model)
    assert model[0].weight.norm(dim=1).max() <= 1.0 + 1e-6
    assert repr(MaxNorm(3)) == "MaxNorm(max_norm=3.0, include_bias=False)"
    assert dropkit.constraints.MaxNorm is MaxNorm
    with pytest.raises(ValueError, match="max_norm must be a finite number > 0"):
        MaxNorm(0)
    with pytest.raises(ValueError, match="max_norm must be a finite number > 0"):
        max_norm_(model, -1.0)
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
        MaxNorm(1.0, eps=-1)
    with pytest.raises(ValueError, match="include_bias needs dim=0"):
        MaxNorm(1.0, dim=1, include_bias=True)
    with pytest.raises(ValueError, match="no Linear or Conv"):
        max_norm_(torch.nn.ReLU(), 1.0)
    with pytest.raises(ValueError, match="MaxNorm needs a model"):
        MaxNorm(1.0)()
    with pytest.raises(ValueError, match=">= 2 dims"):
        max_norm_(torch.ones(3), 1.0)
    with pytest.raises(ValueError, match="dim must be in"):
        max_norm_(torch.ones(3, 3), 1.0, dim=2)
    with pytest.raises(TypeError, match="tensor or an nn.Module"):
        max_norm_([1.0], 1.0)
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        MaxNorm(1.0).attach(model)
