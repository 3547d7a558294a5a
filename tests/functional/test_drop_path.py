"""Stochastic depth / drop-path (Huang et al. 2016): stream layout, rates, torchvision/timm."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dropkit import functional as F
from dropkit import mc, rng


@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    p=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**63 - 1),
)
@settings(max_examples=40, deadline=None)
def test_row_mode_layout(shape, p, seed):
    x = torch.randn(shape, dtype=torch.float64)
    y = F.stochastic_depth(x, p, "row", seed=seed)
    if p == 0:
        assert y is x
        return
    keep = rng.keep_mask([shape[0]] + [1] * (len(shape) - 1), p, seed)
    scale = 0.0 if p == 1 else 1 / (1 - p)
    assert torch.allclose(y, x * keep * scale, rtol=1e-15, atol=0)


def test_row_rate_and_whole_samples():
    x = torch.randn(4000, 3, 2) + 5
    y = F.stochastic_depth(x, 0.3, "row", seed=2)
    flat = y.reshape(4000, -1)
    kept = (flat != 0).all(1)
    assert torch.equal(kept | (flat == 0).all(1), torch.ones(4000, dtype=torch.bool))
    assert abs(float(kept.float().mean()) - 0.7) < 5 * math.sqrt(0.21 / 4000)
    assert torch.allclose(y[kept], x[kept] / 0.7)


def test_batch_mode_one_draw_for_the_batch():
    x = torch.randn(16, 3) + 5
    outcomes = []
    for seed in range(1000):
        y = F.stochastic_depth(x, 0.4, "batch", seed=seed)
        kept = bool(rng.stream_words(1, seed)[0] >= rng.keep_threshold(0.4))
        assert torch.allclose(y, x / 0.6 if kept else torch.zeros_like(x), rtol=1e-6, atol=0)
        outcomes.append(kept)
    assert abs(sum(outcomes) / 1000 - 0.6) < 5 * math.sqrt(0.24 / 1000)


def test_expectation_preserved_and_eval_identity():
    x = torch.randn(1, 4, dtype=torch.float64)
    mean = F.stochastic_depth(x.expand(20000, 4), 0.25, "row", seed=7).mean(0)
    assert torch.allclose(
        mean, x[0], atol=5 * math.sqrt(0.25 / 0.75 / 20000) * float(x.abs().max())
    )
    assert F.stochastic_depth(x, 0.5, "row", training=False) is x
    assert torch.equal(F.stochastic_depth(x, 1.0, "row"), torch.zeros_like(x))
    with mc.stochastic():
        outs = {
            float(F.stochastic_depth(x, 0.5, "batch", training=False).abs().sum())
            for _ in range(40)
        }
    assert 0.0 in outs and len(outs) == 2


def test_drop_path_is_timm_semantics():
    x = torch.randn(64, 5)
    assert F.drop_path(x, 0.5) is x  # timm's default training=False
    keep = rng.keep_mask((64, 1), 0.5, 4)
    assert torch.equal(F.drop_path(x, 0.5, True, scale_by_keep=False, seed=4), x * keep)
    assert torch.equal(F.drop_path(x, 0.5, True, seed=4), F.stochastic_depth(x, 0.5, "row", seed=4))
    assert torch.equal(F.drop_path(x, 1.0, True), torch.zeros_like(x))
    assert F.drop_path(x, 0.0, True) is x


def test_reproducibility_and_replicas():
    x = torch.randn(8, 3)
    torch.manual_seed(3)
    a = F.drop_path(x, 0.5, True)
    torch.manual_seed(3)
    assert torch.equal(a, F.drop_path(x, 0.5, True))
    g = torch.Generator().manual_seed(1)
    b = F.stochastic_depth(x, 0.5, "row", generator=g)
    assert torch.equal(
        b, F.stochastic_depth(x, 0.5, "row", generator=torch.Generator().manual_seed(1))
    )
    both = F.stochastic_depth(torch.cat([x, x]), 0.5, "row", seed=9)
    second = F.stochastic_depth(x, 0.5, "row", seed=9, offset=8)
    assert torch.equal(both[8:], second)


def test_gradient_and_saved_state():
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: F.stochastic_depth(t, 0.5, "row", seed=1), (x,))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        F.drop_path(x, 0.5, True, seed=1)
    assert sum(t.numel() for t in saved) <= 1


def test_compiles_fullgraph():
    x = torch.randn(8, 4)
    f = lambda t: F.drop_path(t, 0.5, True) + 1  # noqa: E731
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    torch.manual_seed(0)
    eager = f(x)
    torch.manual_seed(0)
    assert torch.equal(compiled(x), eager)


def test_linear_decay_rule():
    assert F.linear_decay_rates(0.5, 4) == [0.125, 0.25, 0.375, 0.5]
    assert F.linear_decay_rates(0.0, 2) == [0.0, 0.0]
    with pytest.raises(ValueError, match="num_layers"):
        F.linear_decay_rates(0.5, 0)
    with pytest.raises(ValueError, match="p_last"):
        F.linear_decay_rates(1.5, 3)


def test_torchvision_compatible_errors():
    with pytest.raises(ValueError, match="drop probability has to be between 0 and 1"):
        F.stochastic_depth(torch.randn(2, 2), 1.5, "row")
    with pytest.raises(ValueError, match="mode has to be either 'batch' or 'row'"):
        F.stochastic_depth(torch.randn(2, 2), 0.5, "column")
    with pytest.raises(ValueError, match="drop_prob has to be between 0 and 1"):
        F.drop_path(torch.randn(2, 2), -0.1, True)
    with pytest.raises(TypeError, match="floating dtype"):
        F.drop_path(torch.zeros(2, 2, dtype=torch.long), 0.1, True)


def test_agrees_with_torchvision_distribution(tv_ops):
    x = torch.ones(20000, 1)
    theirs = float((tv_ops.stochastic_depth(x, 0.25, "row") != 0).float().mean())
    ours = float((F.stochastic_depth(x, 0.25, "row", seed=1) != 0).float().mean())
    assert abs(theirs - ours) < 5 * math.sqrt(2 * 0.1875 / 20000)


def test_agrees_with_timm_distribution(timm_layers):
    x = torch.ones(20000, 1)
    theirs = timm_layers.drop_path(x, 0.25, True)
    ours = F.drop_path(x, 0.25, True, seed=1)
    assert set(theirs.unique().tolist()) == set(ours.unique().tolist())
    assert abs(float((theirs != 0).float().mean()) - float((ours != 0).float().mean())) < 0.03
