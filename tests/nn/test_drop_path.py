"""StochasticDepth and DropPath modules: torchvision/timm names, repr, train/eval."""

import pytest
import torch

from dropkit import functional as F
from dropkit import mc
from dropkit.nn import DropPath, StochasticDepth


def test_modules_equal_functionals():
    x = torch.randn(16, 4)
    assert torch.equal(
        StochasticDepth(0.3, "row", seed=2)(x), F.stochastic_depth(x, 0.3, "row", seed=2)
    )
    assert torch.equal(
        StochasticDepth(0.3, "batch", seed=2)(x), F.stochastic_depth(x, 0.3, "batch", seed=2)
    )
    assert torch.equal(DropPath(0.3, seed=2)(x), F.drop_path(x, 0.3, True, seed=2))
    layer = DropPath(0.5, scale_by_keep=False, seed=2)
    assert torch.equal(layer(x), F.drop_path(x, 0.5, True, False, seed=2))


def test_eval_and_monte_carlo():
    x = torch.randn(16, 4)
    for layer in (StochasticDepth(0.5, "row"), DropPath(0.5)):
        layer.eval()
        assert layer(x) is x
        with mc.stochastic():
            assert not torch.equal(layer(x), x)


def test_repr_like_torchvision_and_timm():
    assert repr(StochasticDepth(0.2, "row")) == "dropkit.StochasticDepth(p=0.2, mode=row)"
    assert repr(DropPath(0.1)) == "dropkit.DropPath(drop_prob=0.100)"
    assert "seed=3" in repr(DropPath(0.1, seed=3))


def test_validation():
    with pytest.raises(ValueError, match="drop probability has to be between 0 and 1"):
        StochasticDepth(1.2, "row")
    with pytest.raises(ValueError, match="mode has to be either"):
        StochasticDepth(0.2, "sample")
    assert DropPath(True).drop_prob == 1.0  # a bool is a probability, as torch takes p=True
    with pytest.raises(ValueError, match="drop_prob has to be between 0 and 1"):
        DropPath(-0.5)
