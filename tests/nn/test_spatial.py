"""Dropout1d/2d/3d modules: torch's interface, channels_last, train/eval, Monte-Carlo."""

import pytest
import torch

import dropkit
from dropkit import functional as F
from dropkit import nn as dnn


@pytest.mark.parametrize("name", ["Dropout1d", "Dropout2d", "Dropout3d"])
def test_torch_repr_signature_and_no_state(name):
    ours, theirs = getattr(dnn, name)(0.2, True), getattr(torch.nn, name)(0.2, True)
    assert repr(ours) == "dropkit." + repr(theirs)
    assert ours.state_dict() == {}


@pytest.mark.parametrize(
    "cls,fn,shape",
    [
        (dnn.Dropout1d, F.dropout1d, (2, 5, 3)),
        (dnn.Dropout2d, F.dropout2d, (2, 3, 4, 5)),
        (dnn.Dropout3d, F.dropout3d, (2, 3, 4, 2, 5)),
    ],
)
def test_module_equals_functional_train_eval_and_mc(cls, fn, shape):
    layer = cls(0.5, channels_last=True, seed=4)
    x = torch.randn(shape)
    assert torch.equal(layer(x), fn(x, 0.5, channels_last=True, seed=4))
    layer.eval()
    assert torch.equal(layer(x), x)
    with dropkit.mc.stochastic():
        assert torch.equal(layer(x), fn(x, 0.5, channels_last=True, seed=4))


def test_classic_mode_and_generator():
    layer = dnn.Dropout2d(0.25, mode="classic", generator=torch.Generator().manual_seed(1))
    assert "mode='classic'" in repr(layer)
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(layer.eval()(x), x * 0.75)


def test_validation_in_init():
    with pytest.raises(ValueError, match="between 0 and 1"):
        dnn.Dropout3d(-0.1)
    with pytest.raises(TypeError, match="channels_last must be a bool"):
        dnn.Dropout1d(0.5, channels_last="yes")
    with pytest.raises(ValueError, match="either seed or generator"):
        dnn.Dropout1d(0.5, seed=1, generator=torch.Generator())


def test_torch_warning_passes_through_module():
    with pytest.warns(UserWarning, match="Received a 3D input to dropout2d"):
        dnn.Dropout2d(0.5)(torch.randn(2, 3, 4))


def test_channels_last_and_seed_repr():
    layer = dnn.Dropout2d(0.5, channels_last=True, seed=3)
    assert "channels_last=True" in repr(layer) and "seed=3" in repr(layer)
    x = torch.randn(2, 4, 4, 3)
    assert torch.equal(layer(x), layer(x))
