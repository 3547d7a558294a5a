"""Modules of the structured and noise dropouts: repr, validation, train/eval, copies."""

import copy
import pickle

import pytest
import torch

from dropkit import nn as dnn


@pytest.mark.parametrize("name", ["Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout",
                                  "FeatureAlphaDropout"])  # fmt: skip
def test_repr_matches_torch(name):
    assert repr(getattr(dnn, name)(0.3)) == repr(getattr(torch.nn, name)(0.3))


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


def test_channels_last_and_seed_repr():
    layer = dnn.Dropout2d(0.5, channels_last=True, seed=3)
    assert "channels_last=True" in repr(layer) and "seed=3" in repr(layer)
    x = torch.randn(2, 4, 4, 3)
    assert torch.equal(layer(x), layer(x))
