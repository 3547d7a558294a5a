"""AlphaDropout and FeatureAlphaDropout modules."""

import pytest
import torch

import dropkit
from dropkit import functional as F
from dropkit import nn as dnn


@pytest.mark.parametrize(
    "cls,fn",
    [(dnn.AlphaDropout, F.alpha_dropout), (dnn.FeatureAlphaDropout, F.feature_alpha_dropout)],
)
def test_alpha_modules_train_eval_mc(cls, fn):
    name = cls.__name__
    assert repr(cls(0.1)) == "dropkit." + repr(getattr(torch.nn, name)(0.1))
    layer = cls(0.3, seed=2)
    x = torch.randn(4, 6, 3)
    expected = fn(x, 0.3, True, seed=2)
    assert torch.equal(layer(x), expected)
    assert torch.equal(layer.eval()(x), x)
    with dropkit.mc.stochastic():
        assert torch.equal(layer(x), expected)


def test_selu_network_keeps_its_moments():
    torch.manual_seed(0)
    x = torch.randn(4096, 256, dtype=torch.float64)
    y = dnn.AlphaDropout(0.1, seed=3)(torch.selu(x))
    assert abs(float(y.mean())) < 0.02 and abs(float(y.var()) - 1.0) < 0.03


def test_alpha_validation():
    with pytest.raises(ValueError, match="between 0 and 1"):
        dnn.FeatureAlphaDropout(1.5)
