"""FractalNet branch dropping at joins (Larsson et al. 2016): local drops and their layout."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dropkit import functional as F
from dropkit import mc, rng


@given(
    n=st.integers(1, 6),
    k=st.integers(1, 4),
    p=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**63 - 1),
)
@settings(max_examples=40, deadline=None)
def test_local_layout_and_fallback(n, k, p, seed):
    branches = [torch.randn(n, 3, dtype=torch.float64) for _ in range(k)]
    y = F.drop_branches(branches, p, seed=seed)
    words = rng.stream_words(n * (k + 1), seed).reshape(n, k + 1)
    keep = words[:, :k] >= rng.keep_threshold(p)
    for i in range(n):
        if not keep[i].any():
            u = (int(words[i, k]) >> 8) * 2.0**-24
            keep[i, int(u * k)] = True
    stacked = torch.stack(branches)  # (K, N, 3)
    w = keep.double().t()[..., None]
    expected = (stacked * w).sum(0) / w.sum(0)
    assert torch.allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_at_least_one_branch_kept_and_rates():
    n, k, p = 6000, 3, 0.5
    branches = [torch.full((n, 1), float(10**i)) for i in range(k)]
    y = F.drop_branches(branches, p, seed=3)[:, 0]
    assert (y > 0).all()
    words = rng.stream_words(n * (k + 1), 3).reshape(n, k + 1)
    none = ~(words[:, :k] >= rng.keep_threshold(p)).any(1)
    assert abs(float(none.float().mean()) - p**k) < 5 * math.sqrt(p**k * (1 - p**k) / n)
    # rows with a single survivor equal that branch; the fallback is uniform over the branches
    singles = y[none]
    for value in (1.0, 10.0, 100.0):
        share = float((singles == value).float().mean())
        assert abs(share - 1 / 3) < 5 * math.sqrt(2 / 9 / int(none.sum()))
    # each branch survives the local drop (before the fallback) with probability 1 - p
    kept_first = (words[:, 0] >= rng.keep_threshold(p)).float().mean()
    assert abs(float(kept_first) - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)


def test_p_zero_is_the_mean_and_p_one_keeps_exactly_one():
    branches = [torch.full((500, 2), float(i)) for i in range(4)]
    assert torch.equal(F.drop_branches(branches, 0.0, seed=1), torch.full((500, 2), 1.5))
    y = F.drop_branches(branches, 1.0, seed=1)
    assert set(y[:, 0].tolist()) == {0.0, 1.0, 2.0, 3.0}


def test_eval_global_and_single_column():
    b = [torch.zeros(4, 2), torch.ones(4, 2), torch.full((4, 2), 2.0)]
    assert torch.equal(F.drop_branches(b, 0.5, training=False), torch.ones(4, 2))
    assert torch.equal(F.drop_branches(b, 0.5, training=False, column=2), b[2])
    assert F.drop_branches(b, 0.5, mode="global", column=1) is b[1]
    with mc.stochastic():
        assert not torch.equal(F.drop_branches(b, 0.5, training=False, seed=3), torch.ones(4, 2))


def test_reproducible_and_replicated_batch():
    b = [torch.randn(5, 2) for _ in range(3)]
    torch.manual_seed(4)
    a = F.drop_branches(b, 0.5)
    torch.manual_seed(4)
    assert torch.equal(a, F.drop_branches(b, 0.5))
    g = [torch.Generator().manual_seed(2) for _ in range(2)]
    assert torch.equal(
        F.drop_branches(b, 0.5, generator=g[0]), F.drop_branches(b, 0.5, generator=g[1])
    )
    both = F.drop_branches([torch.cat([t, t]) for t in b], 0.5, seed=6)
    assert torch.equal(both[5:], F.drop_branches(b, 0.5, seed=6, offset=5 * 4))


def test_gradient_flows_to_kept_branches_only():
    b = [torch.randn(4, 3, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    assert torch.autograd.gradcheck(lambda *t: F.drop_branches(list(t), 0.5, seed=2), tuple(b))
    F.drop_branches(b, 0.5, seed=2).sum().backward()
    words = rng.stream_words(4 * 4, 2).reshape(4, 4)
    keep = words[:, :3] >= rng.keep_threshold(0.5)
    for i in range(4):
        if not keep[i].any():
            keep[i, int((int(words[i, 3]) >> 8) * 2.0**-24 * 3)] = True
    weights = keep.double() / keep.sum(1, keepdim=True)
    for j, t in enumerate(b):
        assert torch.equal(t.grad, weights[:, j : j + 1].expand(4, 3))


def test_errors():
    with pytest.raises(ValueError, match="non-empty list"):
        F.drop_branches([], 0.1)
    with pytest.raises(ValueError, match="one shape"):
        F.drop_branches([torch.zeros(2), torch.zeros(3)], 0.1)
    with pytest.raises(ValueError, match="needs the kept column"):
        F.drop_branches([torch.zeros(2)], 0.1, mode="global")
    with pytest.raises(ValueError, match=r"mode must be one of \('local', 'global'\)"):
        F.drop_branches([torch.zeros(2)], 0.1, mode="row")
    with pytest.raises(ValueError, match="column must be an integer >= 0 and <= 1, got 2"):
        F.drop_branches([torch.zeros(2)] * 2, 0.1, column=2)
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.drop_branches([torch.zeros(2)], 1.1)
