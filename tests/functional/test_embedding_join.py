"""Embedding (word) dropout and FractalNet branch dropping."""

import math

import pytest
import torch

import dropkit
from dropkit import functional as F
from dropkit import rng


def test_stream_words_at_matches_stream():
    idx = torch.tensor([[0, 5, 1023], [7, 7, 3]])
    words = rng.stream_words(1024, seed=4, offset=9)
    assert torch.equal(rng.stream_words_at(idx, 4, 9), words[idx])


def test_embedding_dropout_drops_word_types_consistently():
    weight = torch.randn(100, 8)
    ids = torch.randint(0, 100, (20, 30))
    y = F.embedding_dropout(ids, weight, 0.4, seed=2)
    keep = rng.stream_words(100, 2) >= rng.keep_threshold(0.4)
    assert torch.allclose(y, weight[ids] * keep[ids, None] / 0.6)
    # the mask of a word does not depend on the other ids in the batch
    alone = F.embedding_dropout(ids[:1, :3], weight, 0.4, seed=2)
    assert torch.equal(alone, y[:1, :3])
    assert torch.equal(F.embedding_dropout(ids, weight, 0.4, training=False), weight[ids])


def test_embedding_dropout_rate_gradient_and_errors():
    weight = torch.randn(20000, 2, requires_grad=True)
    ids = torch.arange(20000)
    y = F.embedding_dropout(ids, weight, 0.25, seed=1)
    kept = float((y[:, 0] != 0).float().mean())
    assert abs(kept - 0.75) < 5 * math.sqrt(0.1875 / 20000)
    y.sum().backward()
    assert torch.equal(weight.grad[:, 0] != 0, y[:, 0] != 0)
    with pytest.raises(TypeError, match="integer ids"):
        F.embedding_dropout(torch.zeros(3), weight)


def test_embedding_module_keeps_embedding():
    emb = torch.nn.Embedding(10, 3, padding_idx=0, max_norm=2.0)
    layer = dropkit.nn.EmbeddingDropout.from_embedding(emb, 0.5)
    assert layer.weight is emb.weight and layer.padding_idx == 0 and layer.max_norm == 2.0
    ids = torch.tensor([1, 2, 3])
    assert torch.equal(layer.eval()(ids), emb(ids))


def test_local_drop_keeps_at_least_one_branch_and_averages():
    n, k = 5000, 3
    branches = [torch.full((n, 2), float(10**i)) for i in range(k)]
    y = F.drop_branches(branches, 0.5, seed=3)
    words = rng.stream_words(n * (k + 1), 3).reshape(n, k + 1)
    keep = words[:, :k] >= rng.keep_threshold(0.5)
    rows_with_keep = keep.any(1)
    values = torch.tensor([10.0**i for i in range(k)])
    expected = (keep.float() * values).sum(1) / keep.sum(1).clamp_min(1)
    assert torch.allclose(y[rows_with_keep, 0], expected[rows_with_keep])
    assert (y[:, 0] > 0).all()  # never all dropped
    singles = ~rows_with_keep
    assert abs(float(singles.float().mean()) - 0.125) < 5 * math.sqrt(0.125 * 0.875 / n)


def test_global_and_eval_joins():
    policy = dropkit.nn.FractalDropPath(3, p=0.15, eval_column=2)
    join = dropkit.nn.JoinDrop(policy, [1, 2])
    b = [torch.zeros(4, 1), torch.ones(4, 1)]
    policy.mode, policy.column = "global", 2
    assert torch.equal(join(b), b[1])
    policy.column = 0  # a column that does not pass through this join
    assert torch.equal(join(b), torch.full((4, 1), 0.5))
    join.eval()
    assert torch.equal(join(b), b[1])  # evaluating column 2 alone
    policy.eval_column = None
    assert torch.equal(join(b), torch.full((4, 1), 0.5))


def test_policy_mixes_local_and_global_batches():
    policy = dropkit.nn.FractalDropPath(4)
    torch.manual_seed(0)
    modes, columns = [], []
    for _ in range(2000):
        policy.sample()
        modes.append(policy.mode == "global")
        if policy.column is not None:
            columns.append(policy.column)
    assert abs(sum(modes) / 2000 - 0.5) < 5 * math.sqrt(0.25 / 2000)
    assert set(columns) == {0, 1, 2, 3}


def test_branch_errors():
    with pytest.raises(ValueError, match="non-empty list"):
        F.drop_branches([], 0.1)
    with pytest.raises(ValueError, match="one shape"):
        F.drop_branches([torch.zeros(2), torch.zeros(3)], 0.1)
    with pytest.raises(ValueError, match="needs the kept column"):
        F.drop_branches([torch.zeros(2)], 0.1, mode="global")
