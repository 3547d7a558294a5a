"""DropBlock (Ghiasi et al. 2018): exact stream layout, structure, distribution, normalisation."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as tnf
from hypothesis import given, settings
from hypothesis import strategies as st

from dropkit import functional as F
from dropkit import mc, rng


def reference_keep(shape, p, bs, seed, per_channel=True, offset=0):
    """Plain-loop keep mask M of the documented layout (seed map over (N, C', *S))."""
    n, c, *spatial = shape
    bs = min(bs, *spatial)
    a = bs // 2
    gamma = F.drop_block_gamma(p, bs, tuple(spatial))
    cc = c if per_channel else 1
    words = rng.stream_words(n * cc * math.prod(spatial), seed, offset).reshape(n, cc, *spatial)
    seeds = words < round(gamma * 2**32)
    keep = torch.ones(n, cc, *spatial, dtype=torch.float64)
    for idx in seeds.nonzero().tolist():
        pos = idx[2:]
        if all(a <= i <= s - bs + a for i, s in zip(pos, spatial)):
            box = tuple(slice(i - a, i - a + bs) for i in pos)
            keep[(idx[0], idx[1]) + box] = 0
    return keep.expand(n, c, *spatial)


@given(
    n=st.integers(1, 3),
    c=st.integers(1, 3),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    bs=st.integers(1, 6),
    p=st.floats(0.01, 1.0),
    per_channel=st.booleans(),
    seed=st.integers(0, 2**63 - 1),
)
@settings(max_examples=25, deadline=None)
def test_matches_the_documented_layout(n, c, h, w, bs, p, per_channel, seed):
    x = torch.randn(n, c, h, w, dtype=torch.float64)
    y = F.drop_block2d(x, p, bs, per_channel=per_channel, seed=seed)
    keep = reference_keep((n, c, h, w), p, bs, seed, per_channel)
    scale = keep[0].numel() / (1e-6 + keep.reshape(n, -1).sum(1))
    assert y.shape == x.shape
    assert torch.allclose(y, x * keep * scale.reshape(n, 1, 1, 1), rtol=1e-12, atol=0)


def test_3d_layout_and_batch_normalisation():
    x = torch.randn(2, 2, 5, 6, 4, dtype=torch.float64)
    y = F.drop_block3d(x, 0.4, 2, normalize="batch", seed=8)
    keep = reference_keep(tuple(x.shape), 0.4, 2, 8)
    assert (keep == 0).any()
    assert torch.allclose(y, x * keep * keep.numel() / (1e-6 + keep.sum()), rtol=1e-12, atol=0)


@pytest.mark.parametrize("block_size", [1, 2, 3, 4, 5])
def test_zeros_are_unions_of_whole_blocks_inside_the_map(block_size):
    x = torch.ones(4, 3, 11, 9)
    y = F.drop_block2d(x, 0.2, block_size, seed=block_size)
    dropped = (y == 0).float()
    assert dropped.sum() > 0
    full = tnf.avg_pool2d(dropped, block_size, stride=1) == 1  # all-zero squares in the map
    covered = tnf.max_pool2d(tnf.pad(full.float(), [block_size - 1] * 4), block_size, stride=1)
    assert torch.equal(covered, dropped)


def test_seed_rate_is_gamma_with_block_size_one():
    x = torch.ones(64, 16, 16, 16)
    y = F.drop_block2d(x, 0.3, 1, seed=3)
    rate = float((y == 0).float().mean())
    assert abs(rate - 0.3) < 5 * math.sqrt(0.21 / x.numel())


@pytest.mark.parametrize("bs,pos", [(3, (6, 6)), (3, (0, 0)), (4, (6, 6)), (4, (12, 12))])
def test_per_pixel_drop_probability_matches_the_formula(bs, pos):
    h = w = 13
    p = 0.15
    x = torch.ones(3000, 1, h, w)
    y = F.drop_block2d(x, p, bs, seed=11)
    gamma = F.drop_block_gamma(p, bs, (h, w))
    a = bs // 2

    def covering(i, size):  # seed coordinates in the region whose block covers i
        return sum(1 for s in range(a, size - bs + a + 1) if s - a <= i < s - a + bs)

    k = covering(pos[0], h) * covering(pos[1], w)
    expected = 1 - (1 - gamma) ** k
    observed = float((y[:, 0, pos[0], pos[1]] == 0).float().mean())
    assert abs(observed - expected) < 5 * math.sqrt(expected * (1 - expected) / 3000) + 1e-9


def test_normalisation_preserves_the_mean_per_sample_or_per_batch():
    x = torch.ones(32, 8, 16, 16)
    per_sample = F.drop_block2d(x, 0.2, 3, seed=5).reshape(32, -1).mean(1)
    assert torch.allclose(per_sample, torch.ones(32), atol=1e-4)
    batch = F.drop_block2d(x, 0.2, 3, normalize="batch", seed=5)
    assert abs(float(batch.mean()) - 1.0) < 1e-4
    assert not torch.allclose(batch.reshape(32, -1).mean(1), torch.ones(32), atol=1e-3)


def test_expectation_per_position_follows_the_formula():
    """The normaliser makes every sample's mean exactly that of x (for x = 1); per position the
    keep rate is (1 - gamma)^k_i with k_i the seeds whose block covers i (fewer at the border)."""
    h = w = 8
    bs, p, n = 3, 0.3, 4000
    gamma = F.drop_block_gamma(p, bs, (h, w))
    a = bs // 2

    def covering(i, size):
        return sum(1 for s in range(a, size - bs + a + 1) if s - a <= i < s - a + bs)

    cover = torch.tensor([[covering(i, h) * covering(j, w) for j in range(w)] for i in range(h)])
    keep_rate = (1 - gamma) ** cover.double()
    # per-sample normalisation keeps samples independent: n copies are n draws
    y = F.drop_block2d(torch.ones(n, 1, h, w, dtype=torch.float64), p, bs, seed=1)
    assert torch.allclose(y.mean((1, 2, 3)), torch.ones(n, dtype=y.dtype), atol=1e-5)
    observed = (y[:, 0] != 0).double().mean(0)
    sigma = torch.sqrt(keep_rate * (1 - keep_rate) / n)
    assert ((observed - keep_rate).abs() < 5 * sigma).all()
    assert observed[0, 0] > observed[4, 4] + 0.1  # corners are dropped less than the centre


def test_shared_channel_mask():
    x = torch.ones(4, 5, 10, 10)
    zero = F.drop_block2d(x, 0.3, 3, per_channel=False, seed=6) == 0
    assert zero.any() and torch.equal(zero, zero[:, :1].expand_as(zero))
    zero_pc = F.drop_block2d(x, 0.3, 3, seed=6) == 0
    assert not torch.equal(zero_pc, zero_pc[:, :1].expand_as(zero_pc))


def test_block_larger_than_map_is_clipped_and_eval_identity():
    x = torch.randn(8, 2, 3, 5)
    y = F.drop_block2d(x, 0.5, 7, seed=1)
    assert y.shape == x.shape
    assert torch.equal(y, F.drop_block2d(x, 0.5, 3, seed=1))
    assert F.drop_block2d(x, 0.5, 3, training=False) is x
    assert F.drop_block2d(x, 0.0, 3) is x
    assert torch.equal(F.drop_block2d(x, 1.0, 1, seed=2), torch.zeros_like(x))
    with mc.stochastic():
        assert not torch.equal(F.drop_block2d(x, 0.5, 3, training=False), x)


def test_inplace_and_dtypes():
    x = torch.randn(2, 3, 8, 8)
    expected = F.drop_block2d(x, 0.3, 3, seed=4)
    out = F.drop_block2d(x, 0.3, 3, inplace=True, seed=4)
    assert out is x and torch.equal(x, expected)
    half = torch.randn(2, 3, 8, 8, dtype=torch.bfloat16)
    ref = F.drop_block2d(half.float(), 0.3, 3, seed=4).to(torch.bfloat16)
    assert torch.equal(F.drop_block2d(half, 0.3, 3, seed=4), ref)


def test_reproducible_by_seed_generator_and_manual_seed():
    x = torch.randn(4, 3, 8, 8)
    assert torch.equal(F.drop_block2d(x, 0.3, 3, seed=9), F.drop_block2d(x, 0.3, 3, seed=9))
    torch.manual_seed(1)
    a = F.drop_block2d(x, 0.3, 3)
    torch.manual_seed(1)
    assert torch.equal(a, F.drop_block2d(x, 0.3, 3))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(
        F.drop_block2d(x, 0.3, 3, generator=g1), F.drop_block2d(x, 0.3, 3, generator=g2)
    )
    assert not torch.equal(F.drop_block2d(x, 0.3, 3, seed=1), F.drop_block2d(x, 0.3, 3, seed=2))


def test_replicated_batch_equals_offset_calls():
    x = torch.randn(3, 2, 7, 7)
    per_call = 3 * 2 * 7 * 7
    both = F.drop_block2d(torch.cat([x, x]), 0.3, 3, seed=5)
    first = F.drop_block2d(x, 0.3, 3, seed=5)
    second = F.drop_block2d(x, 0.3, 3, seed=5, offset=per_call)
    assert torch.equal(both, torch.cat([first, second]))


def test_gradient_regenerates_the_mask():
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: F.drop_block2d(t, 0.3, 2, seed=3), (x,))
    assert torch.autograd.gradcheck(lambda t: F.drop_block3d(t[..., None], 0.3, 1, seed=3), (x,))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = F.drop_block2d(x, 0.3, 3, seed=3)
    assert sum(t.numel() for t in saved) <= 1
    y.sum().backward()
    assert torch.allclose(x.grad, F.drop_block2d(torch.ones_like(x), 0.3, 3, seed=3))


def test_compiles_fullgraph_and_matches_eager():
    x = torch.randn(2, 3, 8, 8)

    def f(t):
        return F.drop_block2d(t, 0.3, 3) * 2

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    torch.manual_seed(0)
    eager = f(x)
    torch.manual_seed(0)
    assert torch.equal(compiled(x), eager)


def test_matches_torchvision_formula_for_odd_blocks():
    """torchvision's pipeline (seeds on the valid map, pad bs//2, centred max-pool, batch
    normalisation) applied to dropkit's seeds gives dropkit's output exactly."""
    x = torch.randn(3, 2, 9, 8, dtype=torch.float64)
    bs, p, seed = 3, 0.4, 12
    gamma = F.drop_block_gamma(p, bs, (9, 8))
    words = rng.stream_words(x.numel(), seed).reshape(x.shape)
    a = bs // 2
    noise = (words < round(gamma * 2**32)).double()[:, :, a : a + 9 - bs + 1, a : a + 8 - bs + 1]
    noise = tnf.pad(noise, [a] * 4)
    noise = 1 - tnf.max_pool2d(noise, bs, stride=1, padding=a)
    expected = x * noise * (noise.numel() / (1e-6 + noise.sum()))
    assert torch.allclose(F.drop_block2d(x, p, bs, normalize="batch", seed=seed), expected)


def test_drop_rate_agrees_with_torchvision(tv_ops):
    x = torch.ones(256, 4, 12, 12)
    ours = float((F.drop_block2d(x, 0.15, 3, normalize="batch", seed=1) == 0).float().mean())
    theirs = float((tv_ops.drop_block2d(x, 0.15, 3) == 0).float().mean())
    # per-pixel drop indicators are correlated within blocks: bound by 9x the binomial variance
    assert abs(ours - theirs) < 5 * math.sqrt(2 * 9 * 0.15 * 0.85 / x.numel())


def test_errors_name_the_argument():
    x = torch.randn(2, 2, 6, 6)
    with pytest.raises(ValueError, match="block_size must be an integer >= 1"):
        F.drop_block2d(x, 0.1, 0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.drop_block2d(x, 1.5, 3)
    with pytest.raises(ValueError, match="expected a 4D input"):
        F.drop_block2d(torch.randn(3, 4, 4), 0.1, 2)
    with pytest.raises(ValueError, match="expected a 5D input"):
        F.drop_block3d(x, 0.1, 2)
    with pytest.raises(ValueError, match="normalize must be one of"):
        F.drop_block2d(x, 0.1, 2, normalize="batchwise")
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        F.drop_block2d(x, 0.1, 2, eps=0.0)
    with pytest.raises(TypeError, match="floating dtype"):
        F.drop_block2d(torch.zeros(2, 2, 4, 4, dtype=torch.long), 0.1, 2)
    assert F.drop_block_gamma(1.0, 3, (5, 5)) <= 1.0


def _timm_pipeline(seeds: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """timm >= 1.0.23's block growth: stride-1 max-pool of the seed map, cropped for even sides."""
    grown = tnf.max_pool2d(seeds, (kh, kw), stride=1, padding=(kh // 2, kw // 2))
    return grown[..., (kh + 1) % 2 :, (kw + 1) % 2 :]


@pytest.mark.parametrize("block_size, h, w", [(3, 9, 8), (4, 9, 8), (7, 5, 12), (2, 6, 6)])
def test_clip_border_is_timms_pipeline_on_our_seeds(block_size, h, w):
    x = torch.randn(3, 2, h, w, dtype=torch.float64)
    p, seed = 0.3, 21
    kh, kw = min(block_size, h), min(block_size, w)
    gamma = p * h * w / (kh * kw * (h - kh + 1) * (w - kw + 1))
    assert gamma == pytest.approx(F.drop_block_gamma(p, [kh, kw], (h, w)))
    words = rng.stream_words(3 * h * w, seed).reshape(3, 1, h, w)
    seeds = (words < round(gamma * 2**32)).double()
    keep = 1 - _timm_pipeline(seeds, kh, kw)
    expected = x * keep * (keep.numel() / (1e-6 + keep.sum()))
    got = F.drop_block2d(x, p, block_size, normalize="batch", border="clip", per_channel=False,
                         seed=seed)  # fmt: skip
    assert torch.allclose(got, expected)
    unscaled = F.drop_block2d(x, p, block_size, normalize="none", border="clip",
                              per_channel=False, seed=seed)  # fmt: skip
    assert torch.equal(unscaled, x * keep)


def test_clip_drop_rate_agrees_with_timm(timm_layers):
    """p=0.1, block 7 on 56x56: timm drops about 0.111 of the elements (blocks clipped at the
    border); dropkit's border='clip' agrees, border='valid' drops less."""
    x = torch.ones(64, 8, 56, 56)
    torch.manual_seed(0)
    theirs = float((timm_layers.drop_block_2d(x, 0.1, 7) == 0).float().mean())
    ours = float((F.drop_block2d(x, 0.1, 7, border="clip", per_channel=False,
                                 normalize="batch", seed=1) == 0).float().mean())  # fmt: skip
    valid = float((F.drop_block2d(x, 0.1, 7, per_channel=False, seed=1) == 0).float().mean())
    assert abs(theirs - 0.111) < 0.01 and abs(ours - theirs) < 0.01
    assert valid < ours - 0.01


def test_noise_fills_dropped_elements_with_stream_normals(timm_layers):
    x = torch.randn(4, 3, 10, 10, dtype=torch.float64)
    plain = F.drop_block2d(x, 0.3, 3, normalize="none", border="clip", seed=8)
    noisy = F.drop_block2d(x, 0.3, 3, border="clip", noise=True, seed=8)
    dropped = (plain == 0) & (x != 0)
    assert dropped.any() and torch.equal(noisy[~dropped], x[~dropped])
    seed_words = x.numel()  # per_channel: N * C * H * W seed words
    z = rng.normal(x.shape, 8, (seed_words + 1) // 2, dtype=torch.float64)
    assert torch.allclose(noisy[dropped], z[dropped], rtol=1e-12, atol=0)  # the backend: libm
    # timm's with_noise: the same kind of output (kept unscaled, dropped ~ N(0, 1))
    theirs = timm_layers.drop_block_2d(x, 0.3, 3, with_noise=True)
    assert theirs.shape == noisy.shape


def test_drop_block_gamma_refuses_blocks_larger_than_the_map():
    with pytest.raises(ValueError, match=r"block_size 9 must lie in \[1, S\]"):
        F.drop_block_gamma(0.5, 9, (8, 8))
    with pytest.raises(ValueError, match="block_size 10"):
        F.drop_block_gamma(0.5, 10, (8, 8, 8))
    assert F.drop_block_gamma(0.5, [8, 3], (8, 8)) == pytest.approx(0.5 * 64 / (8 * 3 * 1 * 6))


@pytest.mark.parametrize("p", [np.float32(0.1), torch.tensor(0.1), True])
def test_p_as_torch_takes_it(p):
    x = torch.randn(2, 3, 8, 8)
    value = float(p)
    assert torch.equal(F.drop_block2d(x, p, 3, seed=2), F.drop_block2d(x, value, 3, seed=2))
    from dropkit import nn as dnn

    assert dnn.DropBlock2d(p, 3).p == value


def test_new_options_are_checked():
    x = torch.randn(2, 2, 6, 6)
    with pytest.raises(ValueError, match=r"border must be one of \('valid', 'clip'\)"):
        F.drop_block2d(x, 0.1, 3, border="same")
    with pytest.raises(TypeError, match="noise must be a bool"):
        F.drop_block2d(x, 0.1, 3, noise=1)
    with pytest.raises(TypeError, match="per_channel must be a bool"):
        F.drop_block2d(x, 0.1, 3, per_channel="yes")
