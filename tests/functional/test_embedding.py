"""Embedding (word) dropout: whole word types, scaling, only present ids, autograd, errors."""

import math

import pytest
import torch

import dropkit
from dropkit import functional as F
from dropkit import rng


def test_equals_awd_lstm_masked_weight_reference():
    # AWD-LSTM builds a V x D masked weight: weight * mask[:, None] / (1 - p); same result here
    weight = torch.randn(50, 6)
    ids = torch.randint(0, 50, (4, 9), generator=torch.Generator().manual_seed(0))
    keep = rng.stream_words(50, 7) >= rng.keep_threshold(0.3)
    masked = weight * keep[:, None].float() / 0.7
    torch.testing.assert_close(F.embedding_dropout(ids, weight, 0.3, seed=7), masked[ids])


def test_word_rate_and_expectation_within_5_sigma():
    v = 40_000
    weight = torch.ones(v, 1, dtype=torch.float64)
    y = F.embedding_dropout(torch.arange(v), weight, 0.4, seed=3)[:, 0]
    assert abs(float((y != 0).double().mean()) - 0.6) < 5 * math.sqrt(0.24 / v)
    assert abs(float(y.mean()) - 1.0) < 5 * math.sqrt(0.4 / 0.6 / v)


def test_padding_idx_max_norm_and_scale_grad_like_torch_in_eval():
    weight = torch.randn(12, 4) * 5
    ids = torch.tensor([[0, 3, 3, 5], [0, 7, 11, 3]])
    kwargs = dict(padding_idx=0, max_norm=1.0, scale_grad_by_freq=True)
    w1, w2 = weight.clone().requires_grad_(), weight.clone().requires_grad_()
    ours = F.embedding_dropout(ids, w1, 0.5, False, **kwargs)
    theirs = torch.nn.functional.embedding(ids, w2, **kwargs)
    assert torch.equal(ours, theirs)
    ours.sum().backward()
    theirs.sum().backward()
    assert torch.equal(w1.grad, w2.grad)
    assert torch.equal(w1.detach(), w2.detach())  # max_norm renormalised both in place


def test_gradient_is_the_scaled_mask_and_padding_gets_none():
    weight = torch.randn(30, 3, requires_grad=True)
    ids = torch.arange(30).repeat(2)
    F.embedding_dropout(ids, weight, 0.5, padding_idx=4, seed=2).sum().backward()
    keep = rng.stream_words(30, 2) >= rng.keep_threshold(0.5)
    expected = (keep.float() * 2.0 * 2.0)[:, None].expand(30, 3).clone()
    expected[4] = 0
    torch.testing.assert_close(weight.grad, expected)


def test_eval_mc_and_reproducibility():
    weight = torch.randn(20, 3)
    ids = torch.randint(0, 20, (5, 5))
    assert torch.equal(F.embedding_dropout(ids, weight, 0.5, False), weight[ids])
    with dropkit.mc.stochastic():
        sampled = F.embedding_dropout(ids, weight, 0.5, False, seed=1)
    assert torch.equal(sampled, F.embedding_dropout(ids, weight, 0.5, True, seed=1))
    torch.manual_seed(4)
    a = F.embedding_dropout(ids, weight, 0.5)
    torch.manual_seed(4)
    assert torch.equal(a, F.embedding_dropout(ids, weight, 0.5))
    g = torch.Generator().manual_seed(2)
    b = F.embedding_dropout(ids, weight, 0.5, generator=g)
    g.manual_seed(2)
    assert torch.equal(b, F.embedding_dropout(ids, weight, 0.5, generator=g))


def test_p_one_drops_everything_and_offset_shifts_words():
    weight = torch.randn(10, 2)
    ids = torch.arange(10)
    assert torch.equal(F.embedding_dropout(ids, weight, 1.0), torch.zeros(10, 2))
    keep = rng.stream_words(10, 5, offset=3) >= rng.keep_threshold(0.5)
    y = F.embedding_dropout(ids, weight, 0.5, seed=5, offset=3)
    assert torch.equal(y[:, 0] != 0, keep)


@pytest.mark.parametrize(
    "args,kwargs,error,match",
    [
        ((torch.tensor([1.0]), torch.randn(3, 2)), {}, TypeError, "integer ids"),
        ((torch.tensor([1]), torch.ones(3, 2, dtype=torch.long)), {}, TypeError, "weight must"),
        ((torch.tensor([1]), torch.randn(3)), {}, ValueError, "weight must be 2D"),
        ((torch.tensor([1]), torch.randn(3, 2), 1.5), {}, ValueError, "between 0 and 1"),
        ((torch.tensor([1]), torch.randn(3, 2)), {"offset": -1}, ValueError, "offset"),
    ],
)
def test_bad_arguments(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        F.embedding_dropout(*args, **kwargs)


def test_gradcheck_and_only_seed_and_ids_saved():
    weight = torch.randn(9, 3, dtype=torch.float64, requires_grad=True)
    ids = torch.tensor([[1, 4, 4], [8, 0, 1]])
    torch.autograd.gradcheck(lambda w: F.embedding_dropout(ids, w, 0.4, seed=6), (weight,))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        F.embedding_dropout(ids, weight, 0.4, seed=6)
    # the lookup saves the ids; the word mask saves the ids (its eager route holds the seed as a
    # Python int), never a mask
    assert saved and all(t.dtype == torch.int64 and t.shape == ids.shape for t in saved)


def test_compile_fullgraph_matches_eager():
    weight = torch.randn(30, 4)
    ids = torch.randint(0, 30, (3, 7))

    def fn(i, w):
        return F.embedding_dropout(i, w, 0.5, seed=11)

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(ids, weight), fn(ids, weight))


def test_bfloat16_multiplier_rounded_once():
    weight = torch.randn(16, 5, dtype=torch.bfloat16)
    ids = torch.arange(16)
    keep = rng.stream_words(16, 3) >= rng.keep_threshold(0.3)
    expected = (weight.float() * keep[:, None].float() * torch.tensor(1 / 0.7)).bfloat16()
    assert torch.equal(F.embedding_dropout(ids, weight, 0.3, seed=3), expected)
