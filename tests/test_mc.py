"""Monte-Carlo dropout: switching, BatchNorm untouched, estimators, batched == looped."""

import pytest
import torch

import dropkit
from dropkit import functional as F
from dropkit import mc


def make_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 32), torch.nn.BatchNorm1d(32), torch.nn.ReLU(),
        dropkit.nn.Dropout(0.5), torch.nn.Linear(32, 32), torch.nn.ReLU(),
        dropkit.nn.Dropout(0.3), torch.nn.Linear(32, 4),
    ).double()  # fmt: skip


def test_stochastic_turns_on_modules_and_functional_calls_only():
    net = make_net().eval()
    x = torch.randn(5, 6, dtype=torch.float64)
    bn = net[1]
    stats = (bn.running_mean.clone(), bn.running_var.clone())
    assert torch.equal(net(x), net(x))
    with mc.stochastic():
        assert not torch.equal(net(x), net(x))
        assert not torch.equal(F.dropout(x, 0.5, training=False), x)
        assert not bn.training
    assert torch.equal(bn.running_mean, stats[0]) and torch.equal(bn.running_var, stats[1])
    assert torch.equal(net(x), net(x))


def test_stochastic_switches_torch_dropout_modules_when_given_the_model():
    model = torch.nn.Sequential(torch.nn.Dropout(0.5)).eval()
    x = torch.ones(100)
    with mc.stochastic(model):
        assert (model(x) == 0).any()
    assert not model[0].training and torch.equal(model(x), x)


def test_estimators_match_naive_computation():
    net = make_net()
    x = torch.randn(5, 6, dtype=torch.float64)
    result = mc.mc_predict(net, x, 25, seed=3, batch_replicas=False)
    probs = []
    net.eval()
    with mc.stochastic():
        for t in range(25):
            dropkit._state.set_sample_stream(dropkit._state.SampleStream(3, replica=t))
            try:
                probs.append(torch.softmax(net(x), -1))
            finally:
                dropkit._state.set_sample_stream(None)
    stack = torch.stack(probs)  # (T, B, C): the naive reference
    mean = stack.mean(0)
    entropy = -(mean * mean.log()).sum(-1)
    expected_entropy = -(stack * stack.log()).sum(-1).mean(0)
    assert torch.allclose(result.mean, mean)
    assert torch.allclose(result.entropy, entropy)
    assert torch.allclose(result.mutual_information, entropy - expected_entropy)
    assert torch.allclose(result.variance, stack.var(0, unbiased=False), atol=1e-12)
    assert (result.mutual_information >= -1e-12).all()


@pytest.mark.parametrize("max_rows", [5, 15, 8192])
def test_batched_equals_looped(max_rows):
    net = make_net()
    x = torch.randn(5, 6, dtype=torch.float64)
    looped = mc.mc_predict(net, x, 12, seed=9, batch_replicas=False)
    batched = mc.mc_predict(net, x, 12, seed=9, batch_replicas=True, max_rows=max_rows)
    assert torch.allclose(looped.mean, batched.mean, rtol=0, atol=1e-12)
    assert torch.allclose(looped.mutual_information, batched.mutual_information, atol=1e-12)


def test_model_mode_restored_and_reproducible():
    net = make_net().train()
    x = torch.randn(3, 6, dtype=torch.float64)
    torch.manual_seed(1)
    a = mc.mc_predict(net, x, 4)
    torch.manual_seed(1)
    b = mc.mc_predict(net, x, 4)
    assert net.training and torch.equal(a.mean, b.mean)
    with pytest.raises(ValueError, match="samples must be an integer >= 1"):
        mc.mc_predict(net, x, 0)


def test_batch_wide_ops_fall_back_to_looping():
    net = torch.nn.Sequential(dropkit.nn.DropConnectLinear(4, 3, p=0.5)).double()
    x = torch.randn(2, 4, dtype=torch.float64)
    auto = mc.mc_predict(net, x, 6, seed=2)
    looped = mc.mc_predict(net, x, 6, seed=2, batch_replicas=False)
    assert torch.allclose(auto.mean, looped.mean)
