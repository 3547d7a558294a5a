"""FractalNet joins: the shared policy (local/global mix), JoinDrop, single-column evaluation."""

import math

import pytest
import torch

from dropkit import functional as F
from dropkit.nn import FractalDropPath, JoinDrop


def test_global_join_keeps_the_policy_column():
    policy = FractalDropPath(3, p=0.15, eval_column=2)
    join = JoinDrop(policy, [1, 2])
    b = [torch.zeros(4, 1), torch.ones(4, 1)]
    policy.mode, policy.column = "global", 2
    assert torch.equal(join(b), b[1])
    policy.column = 0  # a column that does not pass through this join
    assert torch.equal(join(b), torch.full((4, 1), 0.5))
    join.eval()
    assert torch.equal(join(b), b[1])  # evaluating column 2 alone
    policy.eval_column = None
    assert torch.equal(join(b), torch.full((4, 1), 0.5))


def test_local_join_uses_policy_p_and_seed():
    policy = FractalDropPath(2, p=0.5, seed=7)
    join = JoinDrop(policy, [0, 1])
    b = [torch.randn(6, 2), torch.randn(6, 2)]
    assert policy.mode == "local"
    assert torch.equal(join(b), F.drop_branches(b, 0.5, seed=7))


def test_policy_mixes_local_and_global_batches():
    policy = FractalDropPath(4)
    torch.manual_seed(0)
    modes, columns = [], []
    for _ in range(2000):
        policy.sample()
        modes.append(policy.mode == "global")
        if policy.column is not None:
            columns.append(policy.column)
    assert abs(sum(modes) / 2000 - 0.5) < 5 * math.sqrt(0.25 / 2000)
    counts = [columns.count(c) for c in range(4)]
    expected = len(columns) / 4
    assert all(abs(c - expected) < 5 * math.sqrt(expected * 0.75) for c in counts)


class TinyFractal(torch.nn.Module):
    """Two columns: column 0 is one layer, column 1 two layers; one join at the end."""

    def __init__(self, policy):
        super().__init__()
        self.policy = policy
        self.shallow = torch.nn.Linear(3, 3)
        self.deep = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 3))
        self.join = JoinDrop(policy, [0, 1])

    def forward(self, x):
        return self.join([self.shallow(x), self.deep(x)])


def test_attach_draws_per_forward_in_training_only():
    policy = FractalDropPath(2, global_fraction=1.0)
    net = TinyFractal(policy)
    policy.attach(net)
    x = torch.randn(5, 3)
    torch.manual_seed(1)
    seen = set()
    for _ in range(40):
        out = net(x)
        assert policy.mode == "global"
        column = net.shallow(x) if policy.column == 0 else net.deep(x)
        assert torch.equal(out, column)
        seen.add(policy.column)
    assert seen == {0, 1}
    net.eval()
    policy.eval_column = 1
    assert torch.equal(net(x), net.deep(x))  # the deepest column alone
    assert "policy" in dict(net.named_children())
    assert not any(name.startswith("join.policy") for name, _ in net.named_modules())


def test_validation():
    with pytest.raises(ValueError, match="num_columns must be an integer >= 1"):
        FractalDropPath(0)
    with pytest.raises(ValueError, match="eval_column must be in"):
        FractalDropPath(2, eval_column=2)
    with pytest.raises(ValueError, match="between 0 and 1"):
        FractalDropPath(2, p=1.5)
    policy = FractalDropPath(2)
    with pytest.raises(TypeError, match="policy must be a FractalDropPath"):
        JoinDrop(object(), [0])
    with pytest.raises(ValueError, match="columns must be distinct integers"):
        JoinDrop(policy, [0, 0])
    with pytest.raises(ValueError, match=r"columns must lie in \[0, 1\]"):
        JoinDrop(policy, [0, 2])
    with pytest.raises(ValueError, match="expected 2 branches"):
        JoinDrop(policy, [0, 1])([torch.zeros(1)])
    assert "columns=[0, 1]" in repr(JoinDrop(policy, [0, 1]))
