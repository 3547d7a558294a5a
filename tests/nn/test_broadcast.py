"""BroadcastDropout; checks shared by the part-A modules (validation, train/eval, copies)."""

import copy
import pickle

import pytest
import torch

from dropkit import functional as F
from dropkit import nn as dnn


def test_broadcast_module_equals_functional_and_repr():
    layer = dnn.BroadcastDropout(0.3, noise_shape=[None, 1, None], seed=2)
    assert (
        repr(layer)
        == "dropkit.BroadcastDropout(p=0.3, inplace=False, seed=2, noise_shape=(None, 1, None))"
    )
    x = torch.randn(3, 4, 5)
    assert torch.equal(layer(x), F.broadcast_dropout(x, 0.3, noise_shape=(None, 1, None), seed=2))
    assert torch.equal(layer.eval()(x), x)
    clone = pickle.loads(pickle.dumps(copy.deepcopy(layer)))
    assert repr(clone) == repr(layer)


@pytest.mark.parametrize(
    "noise_shape,error",
    [((0, None), ValueError), ((1.5,), TypeError), ("ab", TypeError), (3, TypeError)],
)
def test_broadcast_validation(noise_shape, error):
    with pytest.raises(error, match="noise_shape"):
        dnn.BroadcastDropout(0.5, noise_shape=noise_shape)


def test_broadcast_shape_mismatch_is_reported_in_forward():
    with pytest.raises(ValueError, match="one entry per input dimension"):
        dnn.BroadcastDropout(0.5, noise_shape=(None, 1))(torch.randn(2, 3, 4))


def test_validation_in_init():
    with pytest.raises(ValueError, match="between 0 and 1"):
        dnn.Dropout2d(1.2)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        dnn.GaussianDropout(1.0)
    with pytest.raises(ValueError, match="noise_shape entries"):
        dnn.BroadcastDropout(0.5, noise_shape=(0, None))
    with pytest.raises(ValueError, match="mode must be one of"):
        dnn.LockedDropout(0.5, mode="other")


def test_train_eval_and_copies():
    layers = [
        dnn.BroadcastDropout(0.5, noise_shape=(None, 1)),
        dnn.Dropout1d(0.5),
        dnn.LockedDropout(0.5),
        dnn.GaussianDropout(0.5),
        dnn.AlphaDropout(0.5),
    ]
    inputs = [torch.randn(4, 5), torch.randn(2, 3, 4), torch.randn(3, 2, 4), torch.randn(9),
              torch.randn(9)]  # fmt: skip
    for layer, x in zip(layers, inputs):
        layer.train()
        assert not torch.equal(layer(x), x)
        layer.eval()
        assert torch.equal(layer(x), x)
        clone = pickle.loads(pickle.dumps(copy.deepcopy(layer)))
        assert repr(clone) == repr(layer)
