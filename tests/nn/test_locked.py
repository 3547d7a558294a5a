"""LockedDropout module."""

import pytest
import torch

import dropkit
from dropkit import functional as F
from dropkit import nn as dnn


@pytest.mark.parametrize("batch_first", [False, True])
def test_locked_module_equals_functional(batch_first):
    layer = dnn.LockedDropout(0.4, batch_first=batch_first, seed=3)
    assert f"batch_first={batch_first}" in repr(layer)
    x = torch.randn(4, 5, 6)
    expected = F.locked_dropout(x, 0.4, batch_first=batch_first, seed=3)
    assert torch.equal(layer(x), expected)
    layer.eval()
    assert torch.equal(layer(x), x)
    with dropkit.mc.stochastic():
        assert torch.equal(layer(x), expected)


def test_locked_validation():
    with pytest.raises(TypeError, match="batch_first must be a bool"):
        dnn.LockedDropout(0.5, batch_first=1)
    with pytest.raises(ValueError, match="between 0 and 1"):
        dnn.LockedDropout(2.0)


def test_locked_in_an_lstm_stack_backpropagates():
    lstm = torch.nn.LSTM(3, 4)
    drop = dnn.LockedDropout(0.5, seed=1)
    out, _ = lstm(torch.randn(6, 2, 3))
    drop(out).sum().backward()
    assert lstm.weight_ih_l0.grad is not None
