"""DropBlock modules and the drop-probability schedule (state in the state_dict)."""

import copy
import io
import math

import pytest
import torch

import dropkit
from dropkit import functional as F
from dropkit import mc
from dropkit.nn import DropBlock2d, DropBlock3d, DropBlockSchedule


def test_module_equals_functional_train_and_eval():
    x = torch.randn(2, 3, 8, 8)
    layer = DropBlock2d(0.3, 3, per_channel=False, normalize="batch", seed=4)
    expected = F.drop_block2d(x, 0.3, 3, per_channel=False, normalize="batch", seed=4)
    assert torch.equal(layer(x), expected)
    layer.eval()
    assert layer(x) is x
    with mc.stochastic():
        assert torch.equal(layer(x), expected)
    v = torch.randn(2, 2, 5, 5, 5)
    assert torch.equal(DropBlock3d(0.2, 2, seed=1)(v), F.drop_block3d(v, 0.2, 2, seed=1))


def test_repr_and_validation():
    assert repr(DropBlock2d(0.1, 3)) == "dropkit.DropBlock2d(p=0.1, block_size=3, inplace=False)"
    text = repr(DropBlock3d(0.1, 4, per_channel=False, normalize="batch", seed=2))
    assert "per_channel=False" in text and "normalize='batch'" in text and "seed=2" in text
    with pytest.raises(ValueError, match="drop probability has to be between 0 and 1"):
        DropBlock2d(1.5, 3)
    with pytest.raises(ValueError, match="block_size must be an integer >= 1"):
        DropBlock2d(0.1, 0)
    with pytest.raises(ValueError, match="normalize must be one of"):
        DropBlock2d(0.1, 3, normalize="channel")
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        DropBlock2d(0.1, 3, eps=-1.0)
    with pytest.raises(ValueError, match="either seed or generator"):
        DropBlock2d(0.1, 3, seed=1, generator=torch.Generator())


def test_generator_per_layer():
    x = torch.randn(2, 3, 8, 8)
    a = DropBlock2d(0.3, 3, generator=torch.Generator().manual_seed(5))
    b = DropBlock2d(0.3, 3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a(x), b(x)) and torch.equal(a(x), b(x))


def make_model(steps=10):
    block = DropBlock2d(0.2, 3)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), block)
    model.add_module("schedule", DropBlockSchedule(block, 0.0, 0.2, steps))
    return model, block


def test_schedule_ramps_linearly_and_saturates():
    model, block = make_model()
    assert block.p == 0.0
    values = []
    for _ in range(12):
        model.schedule.step()
        values.append(block.p)
    assert all(math.isclose(v, 0.02 * min(i + 1, 10)) for i, v in enumerate(values))


def test_schedule_resumes_exactly_from_a_checkpoint():
    model, block = make_model()
    for _ in range(4):
        model.schedule.step()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    fresh, fresh_block = make_model()
    assert fresh_block.p == 0.0
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer))
    assert int(fresh.schedule.step_count) == 4 and math.isclose(fresh_block.p, 0.08)
    for _ in range(3):
        model.schedule.step()
        fresh.schedule.step()
        assert block.p == fresh_block.p
    # the forward pre-hook re-applies the scheduled value even if someone overwrote it
    fresh_block.p = 0.9
    fresh(torch.randn(1, 1, 6, 6))
    assert fresh_block.p == block.p
    assert "schedule.step_count" in fresh.state_dict()
    assert not any(k.startswith("schedule.target") for k in fresh.state_dict())


def test_schedule_validation_and_deepcopy():
    block = DropBlock2d(0.2, 3)
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        DropBlockSchedule(block, 0.0, 0.2, 0)
    with pytest.raises(ValueError, match="stop has to be between 0 and 1"):
        DropBlockSchedule(block, 0.0, 2.0, 5)
    with pytest.raises(ValueError, match="no attribute 'q'"):
        DropBlockSchedule(block, 0.0, 0.2, 5, attribute="q")
    model, _ = make_model()
    model.schedule.step()
    clone = copy.deepcopy(model)
    assert int(clone.schedule.step_count) == 1
    assert dropkit.nn.LinearSchedule is DropBlockSchedule


def test_monte_carlo_batched_pass_equals_looped_passes():
    from dropkit import _state

    layer = DropBlock2d(0.3, 3).eval()
    x = torch.randn(3, 2, 7, 7, dtype=torch.float64)
    with mc.stochastic():
        looped = []
        for t in range(4):
            previous = _state.set_sample_stream(_state.SampleStream(5, replica=t))
            looped.append(layer(x))
            _state.set_sample_stream(previous)
        previous = _state.set_sample_stream(_state.SampleStream(5, 0, replicas=4))
        batched = layer(x.repeat(4, 1, 1, 1))
        _state.set_sample_stream(previous)
    assert torch.equal(torch.cat(looped), batched)
    assert not torch.equal(looped[0], looped[1])
