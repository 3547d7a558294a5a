"""dropkit.functional.bias_dropout_add: Megatron's fused residual + dropout(x + bias)."""

import pytest
import torch

from dropkit import functional as F
from dropkit import kernels, mc, rng
from dropkit import nn as dnn


def _inputs(dtype=torch.float32, shape=(4, 7, 16)):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g).to(dtype)
    bias = torch.randn(shape[-1], generator=g).to(dtype)
    residual = torch.randn(shape, generator=g).to(dtype)
    return x, bias, residual


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_is_the_reference_definition(dtype):
    x, bias, residual = _inputs(dtype)
    got = F.bias_dropout_add(x, bias, residual, 0.3, seed=5, offset=2)
    want = kernels.reference.bias_dropout_add(
        x, bias, residual, 5, 2, rng.keep_threshold(0.3), 1 / 0.7
    )
    assert got.dtype == dtype and torch.equal(got, want)


def test_mask_is_dropouts_mask():
    x, bias, residual = _inputs(torch.float64)
    got = F.bias_dropout_add(x, bias, residual, 0.4, seed=9)
    assert torch.allclose(got, residual + F.dropout(x + bias, 0.4, seed=9))


def test_eval_and_p_zero():
    x, bias, residual = _inputs()
    for y in (F.bias_dropout_add(x, bias, residual, 0.5, False),
              F.bias_dropout_add(x, bias, residual, 0.0)):  # fmt: skip
        assert torch.equal(y, residual + x + bias)
    with mc.stochastic():
        assert not torch.equal(F.bias_dropout_add(x, bias, residual, 0.5, False), y)


def test_gradients_and_only_the_seed_kept():
    x, bias, residual = (t.double().requires_grad_() for t in _inputs(shape=(3, 5, 4)))
    torch.autograd.gradcheck(
        lambda a, b, r: F.bias_dropout_add(a, b, r, 0.5, seed=3), (x, bias, residual)
    )
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = F.bias_dropout_add(x, bias, residual, 0.5, seed=3)
    assert saved == []
    g = torch.randn_like(y)
    gx, gb, gr = torch.autograd.grad(y, (x, bias, residual), g)
    m = F.dropout(torch.ones_like(x), 0.5, seed=3)
    assert torch.allclose(gx, g * m) and torch.equal(gr, g)
    assert torch.allclose(gb, (g * m).sum((0, 1)))


def test_layout_is_kept():
    x, bias, residual = _inputs()
    xt = x.transpose(0, 1).contiguous().transpose(0, 1)  # same values, another layout
    rt = residual.transpose(0, 1).contiguous().transpose(0, 1)
    got = F.bias_dropout_add(xt, bias, rt, 0.5, seed=4)
    assert got.stride() == xt.stride()
    assert torch.allclose(got, F.bias_dropout_add(x, bias, residual, 0.5, seed=4))


def test_compile_matches_eager():
    x, bias, residual = _inputs()
    fn = torch.compile(lambda a, b, r: F.bias_dropout_add(a, b, r, 0.5), fullgraph=True,
                       backend="aot_eager")  # fmt: skip
    torch.manual_seed(1)
    eager = F.bias_dropout_add(x, bias, residual, 0.5)
    torch.manual_seed(1)
    assert torch.equal(fn(x, bias, residual), eager)


def test_module():
    layer = dnn.BiasDropoutAdd(0.2, seed=3)
    assert repr(layer) == "dropkit.BiasDropoutAdd(p=0.2, seed=3)"
    x, bias, residual = _inputs()
    assert torch.equal(layer(x, bias, residual), F.bias_dropout_add(x, bias, residual, 0.2, seed=3))
    assert torch.equal(layer.eval()(x, bias, residual), residual + x + bias)


def test_errors():
    x, bias, residual = _inputs()
    with pytest.raises(ValueError, match="residual must have x's shape"):
        F.bias_dropout_add(x, bias, residual[:1])
    with pytest.raises(ValueError, match="does not broadcast"):
        F.bias_dropout_add(x, torch.zeros(3), residual)
    with pytest.raises(TypeError, match="argument 'bias' .* must be Tensor, not list"):
        F.bias_dropout_add(x, [0.0], residual)
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
        F.bias_dropout_add(x, bias, residual, 1.5)
