"""Cutout: hole placement from the stream, clipping, channels, independence, errors, module."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import dropkit
from dropkit import functional as F
from dropkit import nn as dnn
from dropkit import rng


def _reference_holes(n, h, w, size, n_holes, seed, offset=0):
    """Plain-Python hole masks (n, h, w) from the documented formula."""
    u = rng.uniform((n * n_holes * 2,), seed, offset).tolist()
    mask = torch.zeros(n, h, w, dtype=torch.bool)
    for img in range(n):
        for k in range(n_holes):
            j = img * n_holes + k
            cy, cx = math.floor(u[2 * j] * h), math.floor(u[2 * j + 1] * w)
            top, left = cy - size // 2, cx - size // 2
            mask[img, max(top, 0) : max(top + size, 0), max(left, 0) : max(left + size, 0)] = True
    return mask


def test_holes_match_the_documented_formula_and_channels_share_them():
    x = torch.randn(6, 3, 11, 9)
    y = F.cutout(x, 4, n_holes=2, fill=-1.5, seed=13)
    holes = _reference_holes(6, 11, 9, 4, 2, 13)
    assert torch.equal(y, torch.where(holes[:, None], torch.tensor(-1.5), x))
    assert not torch.equal(holes[0], holes[1])  # images are independent
    # Sample n's words come first for n: a prefix of the batch gets the same holes.
    assert torch.equal(F.cutout(x[:2], 4, n_holes=2, fill=-1.5, seed=13), y[:2])
    assert torch.equal(F.cutout(x[0], 4, n_holes=2, fill=-1.5, seed=13), y[0])


def test_centres_uniform_and_holes_clipped():
    # size 1: each pixel is the hole with probability 1 / (H W); per-pixel counts within 5 sigma.
    n, side = 6000, 6
    y = F.cutout(torch.ones(n, 1, side, side), 1, seed=3)
    counts = (y == 0).sum(0)[0].double()
    prob = 1 / side**2
    assert torch.all((counts - n * prob).abs() < 5 * math.sqrt(n * prob * (1 - prob)))
    assert torch.all((y == 0).sum((1, 2, 3)) == 1)
    # size 4 on 6x6: holes near the edge are clipped, so the area varies between 2x2 and 4x4,
    # with mean E[rows covered] * E[cols covered] (rows and columns are independent).
    y = F.cutout(torch.ones(n, 1, side, side), 4, seed=4)
    area = (y == 0).sum((1, 2, 3)).double()
    assert area.min() == 4 and area.max() == 16
    covered = [min(c + 2, side) - max(c - 2, 0) for c in range(side)]  # rows covered by centre c
    mean_side = sum(covered) / side
    var_area = (sum(c * c for c in covered) / side) ** 2 - mean_side**4
    assert abs(area.mean() - mean_side**2) < 5 * math.sqrt(var_area / n)


def test_train_eval_mc_and_gradient():
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    assert F.cutout(x, 4, training=False) is x
    assert dnn.Cutout(4).eval()(x) is x
    with dropkit.mc.stochastic():
        assert torch.equal(F.cutout(x, 4, training=False, seed=1), F.cutout(x, 4, seed=1))
    y = F.cutout(x, 3, seed=2)
    y.sum().backward()
    holes = _reference_holes(2, 8, 8, 3, 1, 2)
    assert torch.equal(x.grad, (~holes[:, None]).float().expand_as(x))
    assert F.cutout(x, 3, n_holes=0) is x
    with pytest.raises(ValueError, match="size must be an integer >= 1 and <= 2147483647, got 0"):
        F.cutout(x, 0)  # a hole of no area is a mistake, not an identity (issue 17)


def test_reproducibility_and_dtypes():
    x = torch.rand(4, 3, 10, 10)
    torch.manual_seed(5)
    a = F.cutout(x, 5)
    torch.manual_seed(5)
    assert torch.equal(F.cutout(x, 5), a)
    assert not torch.equal(F.cutout(x, 5), a)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(F.cutout(x, 5, generator=g1), F.cutout(x, 5, generator=g2))
    images = (x * 255).to(torch.uint8)
    out = F.cutout(images, 5, fill=128, seed=9)
    holes = _reference_holes(4, 10, 10, 5, 1, 9)
    assert out.dtype == torch.uint8
    assert torch.equal(out, torch.where(holes[:, None], torch.tensor(128, dtype=torch.uint8),
                                        images))  # fmt: skip
    assert torch.equal(F.cutout(x.double(), 5, seed=9), F.cutout(x, 5, seed=9).double())


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 4),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    size=st.integers(1, 12),
    n_holes=st.integers(0, 3),
    seed=st.integers(-(2**63), 2**63 - 1),
    offset=st.integers(0, 10),
)
def test_property_matches_reference(n, h, w, size, n_holes, seed, offset):
    x = torch.randn(n, 2, h, w)
    y = F.cutout(x, size, n_holes, 7.0, seed=seed, offset=offset)
    holes = _reference_holes(n, h, w, size, n_holes, seed, offset)
    assert torch.equal(y, torch.where(holes[:, None], torch.tensor(7.0), x))


def test_module_repr_and_errors():
    layer = dnn.Cutout(16, n_holes=2, fill=0.5, seed=3)
    assert repr(layer) == "dropkit.Cutout(size=16, n_holes=2, fill=0.5, seed=3)"
    x = torch.randn(2, 3, 20, 20)
    assert torch.equal(layer(x), F.cutout(x, 16, 2, 0.5, seed=3))
    with pytest.raises(ValueError, match="size must be an integer >= 1"):
        dnn.Cutout(-1)
    with pytest.raises(TypeError, match="n_holes must be an integer, got float 1.5"):
        dnn.Cutout(3, n_holes=1.5)
    with pytest.raises(TypeError, match="argument 'fill' must be float, not str"):
        dnn.Cutout(3, fill="black")
    with pytest.raises(ValueError, match="either seed or generator"):
        dnn.Cutout(3, seed=1, generator=torch.Generator())
    with pytest.raises(TypeError, match="size must be an integer, got float 2.5"):
        F.cutout(x, 2.5)
    with pytest.raises(ValueError, match=r"\(C, H, W\) or \(N, C, H, W\)"):
        F.cutout(torch.ones(10, 10), 3)
    with pytest.raises(TypeError, match="real floating or integer"):
        F.cutout(torch.ones(1, 4, 4, dtype=torch.bool), 3)
    with pytest.raises(ValueError, match=r"offset must be an integer in \[0, 2\*\*63 - 1\)"):
        F.cutout(x, 3, offset=-1)
