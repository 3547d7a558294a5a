"""GaussianDropout module."""

import pytest
import torch

import dropkit
from dropkit import functional as F
from dropkit import nn as dnn


def test_gaussian_module_train_eval_mc_and_repr():
    layer = dnn.GaussianDropout(0.2, seed=5)
    assert repr(layer) == "dropkit.GaussianDropout(p=0.2, inplace=False, seed=5)"
    x = torch.randn(3, 7)
    expected = F.gaussian_dropout(x, 0.2, seed=5)
    assert torch.equal(layer(x), expected)
    assert torch.equal(layer.eval()(x), x)
    with dropkit.mc.stochastic():
        assert torch.equal(layer(x), expected)


@pytest.mark.parametrize("p", [1.0, -0.5, True])
def test_gaussian_validation(p):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        dnn.GaussianDropout(p)


def test_compiled_module_fullgraph():
    layer = dnn.GaussianDropout(0.5, seed=1)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    x = torch.randn(4, 4)
    assert torch.equal(compiled(x), layer(x))
