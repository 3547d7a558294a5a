import math

import pytest
import torch

from dropkit_lab.engine import HintonSGD, Schedule, apply_max_norm


def test_schedule_hinton_2012():
    s = Schedule(
        lr=10.0, lr_decay=0.998, momentum_start=0.5, momentum_end=0.99, momentum_epochs=500
    )
    assert s.lr_at(0) == 10.0
    assert math.isclose(s.lr_at(3), 10.0 * 0.998**3)
    assert s.momentum_at(0) == 0.5
    assert math.isclose(s.momentum_at(250), 0.745)
    assert s.momentum_at(500) == 0.99 and s.momentum_at(2999) == 0.99


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lr": 0.0}, "lr must be > 0"),
        ({"lr": 1.0, "lr_decay": 1.5}, "lr_decay"),
        ({"lr": 1.0, "momentum_end": 1.0}, "momentum_end"),
        ({"lr": 1.0, "momentum_epochs": -1}, "momentum_epochs"),
    ],
)
def test_schedule_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Schedule(**kwargs)


@pytest.mark.parametrize("scale_step", [True, False])
def test_hinton_sgd_update_rule(scale_step):
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = HintonSGD([w], lr=0.1, momentum=0.5, scale_step=scale_step)
    grads = [torch.tensor([1.0, 2.0]), torch.tensor([-3.0, 0.5]), torch.tensor([0.25, 1.0])]
    v = torch.zeros(2, dtype=torch.float64)
    expected = w.detach().clone()
    for step, (g, m) in enumerate(zip(grads, [0.5, 0.7, 0.9])):
        opt.param_groups[0]["momentum"] = m
        w.grad = g.double()
        opt.step()
        v = m * v - ((1 - m) if scale_step else 1.0) * 0.1 * g.double()
        expected += v
        assert torch.allclose(w.detach(), expected, rtol=0, atol=1e-15), step


def test_hinton_sgd_rejects_bad_arguments():
    w = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(ValueError, match="lr"):
        HintonSGD([w], lr=-1.0)
    with pytest.raises(ValueError, match="momentum"):
        HintonSGD([w], lr=1.0, momentum=1.0)


def test_max_norm_caps_rows_only_when_too_long():
    w = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 10.0]])
    apply_max_norm([w], 2.0)
    norms = w.norm(dim=1)
    assert torch.allclose(norms, torch.tensor([2.0, 0.5, 2.0]), atol=1e-5)
    assert torch.allclose(w[1], torch.tensor([0.3, 0.4]))
    assert torch.allclose(w[0] / w[0].norm(), torch.tensor([0.6, 0.8]), atol=1e-6)
