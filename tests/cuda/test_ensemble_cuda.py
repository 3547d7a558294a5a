"""The ensemble trainer on CUDA: each member bit for bit what train() gives it alone on CUDA.

cuBLAS may pick other kernels for a batched matmul than for a single one (another summation
order); this test is what says whether the stacked formulation is exact on the GPU at hand. Run
with ``python -m pytest -m cuda tests/cuda/test_ensemble_cuda.py`` on a GPU machine.
"""

from __future__ import annotations

import pytest
import torch

from dropkit_lab.data.dataset import Dataset
from dropkit_lab.engine import MLPConfig, Schedule, TrainConfig, train
from dropkit_lab.engine.ensemble import Member, train_ensemble

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _data() -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(500, 64, generator=g)
    y = (x[:, :10].argmax(1) + torch.randint(0, 2, (500,), generator=g)) % 10
    return Dataset("synthetic", x[:300], y[:300], x[300:], y[300:], (64,), 10)


@pytest.mark.parametrize("widths", [(40, 24), (800, 800)])
def test_ensemble_equals_training_alone_on_cuda(widths):
    data = _data()
    schedule = Schedule(lr=0.5, lr_decay=0.9, momentum_epochs=2)
    members = []
    for seed in (0, 1):
        for kw, max_norm in (
            ({"method": "none"}, None),
            ({"method": "dropout", "hidden_p": 0.5}, 0.6),
            ({"method": "dropout", "input_p": 0.2, "hidden_p": 0.5}, 0.6),
        ):
            model = MLPConfig(64, widths, 10, init_std=0.1, **kw)
            recipe = TrainConfig(3, schedule, batch_size=32, max_norm=max_norm, seed=seed)
            members.append(Member(model, recipe))
    results = train_ensemble(members, data, progress="none", device="cuda")
    for m, r in zip(members, results, strict=True):
        alone = train(m.model, m.train, data, progress="none", device="cuda")
        a, b = r.model.state_dict(), alone.model.state_dict()
        for key in a:
            assert torch.equal(a[key], b[key]), key
        strip = [{k: v for k, v in h.items() if k != "seconds"} for h in r.history]
        assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in alone.history]
        assert r.test_errors == alone.test_errors
