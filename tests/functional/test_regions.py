"""DropBlock, drop-path and Cutout: structure, rates, normalisation, gradients, errors."""

import math

import pytest
import torch

import dropkit
from dropkit import functional as F
from dropkit import rng


def test_stochastic_depth_rows_and_batch():
    x = torch.randn(1000, 3, 2) + 5
    y = F.stochastic_depth(x, 0.3, "row", seed=2)
    keep = rng.keep_mask((1000, 1, 1), 0.3, 2)
    assert torch.allclose(y, x * keep / 0.7)
    rows = (y.reshape(1000, -1) != 0).all(1).float().mean()
    assert abs(float(rows) - 0.7) < 5 * math.sqrt(0.21 / 1000)
    batch = F.stochastic_depth(x, 0.5, "batch", seed=3)
    assert torch.equal(batch, x * 2.0) or torch.equal(batch, torch.zeros_like(x))
    assert F.stochastic_depth(x, 0.5, "row", training=False) is x
    assert torch.equal(F.stochastic_depth(x, 1.0, "row"), torch.zeros_like(x))


def test_stochastic_depth_torchvision_errors():
    with pytest.raises(ValueError, match="drop probability has to be between 0 and 1"):
        F.stochastic_depth(torch.randn(2, 2), 1.5, "row")
    with pytest.raises(ValueError, match="mode has to be either 'batch' or 'row'"):
        F.stochastic_depth(torch.randn(2, 2), 0.5, "column")


def test_stochastic_depth_matches_torchvision_distribution():
    tv = pytest.importorskip("torchvision")
    x = torch.ones(20000, 1)
    theirs = float((tv.ops.stochastic_depth(x, 0.25, "row") != 0).float().mean())
    ours = float((F.stochastic_depth(x, 0.25, "row", seed=1) != 0).float().mean())
    assert abs(theirs - ours) < 5 * math.sqrt(2 * 0.1875 / 20000)


def test_drop_path_timm_semantics():
    x = torch.randn(64, 5)
    assert F.drop_path(x, 0.5) is x  # timm's default training=False
    y = F.drop_path(x, 0.5, True, scale_by_keep=False, seed=4)
    keep = rng.keep_mask((64, 1), 0.5, 4)
    assert torch.equal(y, x * keep)
    assert torch.equal(F.drop_path(x, 0.5, True, seed=4), F.stochastic_depth(x, 0.5, "row", seed=4))


def test_linear_decay_rule():
    assert F.linear_decay_rates(0.5, 4) == [0.125, 0.25, 0.375, 0.5]
    with pytest.raises(ValueError, match="num_layers"):
        F.linear_decay_rates(0.5, 0)
    with pytest.raises(ValueError, match="p_last"):
        F.linear_decay_rates(1.5, 3)


@pytest.mark.parametrize("block_size", [1, 2, 3, 4, 5])
def test_drop_block_keeps_shape_and_drops_whole_blocks(block_size):
    x = torch.ones(4, 3, 11, 9)
    y = F.drop_block2d(x, 0.2, block_size, seed=block_size)
    assert y.shape == x.shape
    dropped = (y == 0).float()
    # each zero belongs to a full block_size x block_size zero square inside the map
    pooled = torch.nn.functional.max_pool2d(
        torch.nn.functional.avg_pool2d(dropped, block_size, stride=1), block_size, stride=1,
        padding=0,
    )  # fmt: skip
    assert dropped.sum() == 0 or (pooled == 1).any()
    full_blocks = torch.nn.functional.avg_pool2d(dropped, block_size, stride=1) == 1
    covered = torch.nn.functional.max_pool2d(
        torch.nn.functional.pad(full_blocks.float(), [block_size - 1] * 4), block_size, stride=1
    )
    assert torch.equal(covered, dropped)


def test_drop_block_rate_and_per_sample_normalisation():
    x = torch.ones(64, 8, 16, 16)
    y = F.drop_block2d(x, 0.2, 3, seed=5)
    per_sample_mean = y.reshape(64, -1).mean(1)
    assert torch.allclose(per_sample_mean, torch.ones(64), atol=1e-4)
    dropped = float((y == 0).float().mean())
    assert 0.15 < dropped < 0.22  # overlapping blocks make the realised rate a little below p
    batch = F.drop_block2d(x, 0.2, 3, normalize="batch", seed=5)
    assert abs(float(batch.mean()) - 1.0) < 1e-4


def test_drop_block_shared_channels_and_3d():
    x = torch.ones(2, 4, 10, 10)
    y = F.drop_block2d(x, 0.3, 3, per_channel=False, seed=6)
    zero = y == 0
    assert torch.equal(zero, zero[:, :1].expand_as(zero))
    v = torch.ones(2, 2, 6, 6, 6)
    z = F.drop_block3d(v, 0.2, 2, seed=1)
    assert z.shape == v.shape and (z == 0).any()


def test_drop_block_gradient_and_errors():
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: F.drop_block2d(t, 0.3, 2, seed=3), (x,))
    assert F.drop_block2d(x, 0.3, 3, training=False) is x
    with pytest.raises(ValueError, match="block_size must be an integer >= 1"):
        F.drop_block2d(x, 0.1, 0)
    with pytest.raises(ValueError, match="expected a 4D input"):
        F.drop_block2d(torch.randn(3, 4, 4), 0.1, 2)
    assert F.drop_block_gamma(1.0, 3, (5, 5)) <= 1.0
    with pytest.raises(ValueError, match="normalize"):
        F.drop_block2d(x, 0.1, 2, normalize="none")


def test_drop_block_matches_torchvision_where_they_coincide():
    tv = pytest.importorskip("torchvision")
    x = torch.ones(256, 4, 12, 12)
    ours = float((F.drop_block2d(x, 0.15, 3, normalize="batch", seed=1) == 0).float().mean())
    theirs = float((tv.ops.drop_block2d(x, 0.15, 3) == 0).float().mean())
    assert abs(ours - theirs) < 0.01


def test_drop_block_schedule_survives_state_dict():
    block = dropkit.nn.DropBlock2d(0.2, 3)
    model = torch.nn.Sequential(block)
    model.add_module("schedule", dropkit.nn.LinearSchedule(block, 0.0, 0.2, 10))
    for _ in range(4):
        model.schedule.step()
    state = model.state_dict()
    assert int(state["schedule.step_count"]) == 4
    fresh_block = dropkit.nn.DropBlock2d(0.2, 3)
    fresh = torch.nn.Sequential(fresh_block)
    fresh.add_module("schedule", dropkit.nn.LinearSchedule(fresh_block, 0.0, 0.2, 10))
    assert fresh_block.p == 0.0
    fresh.load_state_dict(state)
    assert math.isclose(fresh_block.p, 0.08)
    for _ in range(20):
        fresh.schedule.step()
    assert math.isclose(fresh_block.p, 0.2)


def test_cutout_holes():
    x = torch.ones(8, 3, 10, 10)
    y = F.cutout(x, 4, seed=1)
    for image in y:
        assert torch.equal(image[0] == 0, image[2] == 0)  # same hole in every channel
        zero_rows = (image[0] == 0).any(1).sum()
        assert zero_rows <= 4
    u = rng.uniform((8, 1, 2), 1)
    cy, cx = int(u[0, 0, 0] * 10), int(u[0, 0, 1] * 10)
    assert y[0, 0, cy, cx] == 0
    assert F.cutout(x, 4, training=False) is x
    assert torch.equal(F.cutout(x[0], 4, seed=1), y[0])
    with pytest.raises(ValueError, match="size must be an integer >= 0"):
        F.cutout(x, -1)
    with pytest.raises(ValueError, match=r"\(C, H, W\) or \(N, C, H, W\)"):
        F.cutout(torch.ones(10, 10), 3)


def test_cutout_centres_are_uniform():
    y = F.cutout(torch.ones(4000, 1, 8, 8), 1, seed=3)
    hits = (y[:, 0] == 0).float().sum(0)
    expected = 4000 / 64
    assert torch.all((hits - expected).abs() < 5 * math.sqrt(expected))
