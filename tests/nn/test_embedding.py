"""EmbeddingDropout module."""

import copy

import pytest
import torch

import dropkit
from dropkit import functional as F
from dropkit import nn as dnn


def test_from_embedding_keeps_everything_and_shares_the_weight():
    emb = torch.nn.Embedding(20, 4, padding_idx=2, max_norm=3.0, norm_type=1.0,
                             scale_grad_by_freq=True, sparse=True)  # fmt: skip
    layer = dnn.EmbeddingDropout.from_embedding(emb, 0.3, seed=4)
    assert layer.weight is emb.weight
    for name in ("num_embeddings", "embedding_dim", "padding_idx", "max_norm", "norm_type",
                 "scale_grad_by_freq", "sparse"):  # fmt: skip
        assert getattr(layer, name) == getattr(emb, name)
    assert "p=0.3" in repr(layer)
    assert list(layer.state_dict()) == ["weight"]


def test_module_equals_functional_train_eval_mc():
    layer = dnn.EmbeddingDropout(15, 3, p=0.5, seed=1)
    ids = torch.randint(0, 15, (4, 6))
    expected = F.embedding_dropout(ids, layer.weight, 0.5, seed=1)
    assert torch.equal(layer(ids), expected)
    layer.eval()
    assert torch.equal(layer(ids), layer.weight[ids])
    with dropkit.mc.stochastic():
        assert torch.equal(layer(ids), expected)
    assert repr(copy.deepcopy(layer)) == repr(layer)


def test_validation():
    with pytest.raises(ValueError, match="between 0 and 1"):
        dnn.EmbeddingDropout(5, 2, p=1.5)
    with pytest.raises(TypeError, match="nn.Embedding"):
        dnn.EmbeddingDropout.from_embedding(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="either seed or generator"):
        dnn.EmbeddingDropout(5, 2, seed=1, generator=torch.Generator())
