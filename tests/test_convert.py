"""Classic <-> inverted conversion keeps the eval-mode function (the 2012 "mean network")."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import dropkit
from dropkit import nn as dnn


def classic_net(p1=0.2, p2=0.5):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        dnn.Dropout(p1, mode="classic"), torch.nn.Linear(8, 16), torch.nn.ReLU(),
        dnn.Dropout(p2, mode="classic"), torch.nn.Linear(16, 3),
    ).double()  # fmt: skip


def test_round_trip_keeps_eval_outputs_and_scales_weights_not_biases():
    net = classic_net().eval()
    x = torch.randn(10, 8, dtype=torch.float64)
    inverted = dropkit.convert(net, to="inverted")
    assert all(m.mode == "inverted" for m in inverted.modules() if isinstance(m, dnn.Dropout))
    assert torch.allclose(inverted(x), net(x), rtol=1e-13, atol=1e-13)
    assert torch.equal(inverted[1].weight, net[1].weight * 0.8)
    assert torch.equal(inverted[4].weight, net[4].weight * 0.5)  # power of two: exact
    assert torch.equal(inverted[1].bias, net[1].bias)
    back = dropkit.convert(inverted, to="classic")
    assert all(m.mode == "classic" for m in back.modules() if isinstance(m, dnn.Dropout))
    assert torch.allclose(back(x), net(x), rtol=1e-13, atol=1e-13)
    assert torch.equal(back[4].weight, net[4].weight)
    assert net[0].mode == "classic"  # the original was copied, not changed


@settings(max_examples=20, deadline=None)
@given(st.floats(0.0, 0.95), st.floats(0.0, 0.95))
def test_eval_equality_for_any_p(p1, p2):
    net = classic_net(p1, p2).eval()
    x = torch.randn(4, 8, dtype=torch.float64)
    assert torch.allclose(dropkit.convert(net)(x), net(x), rtol=1e-12, atol=1e-12)


def test_classic_training_expectation_matches_converted_eval():
    """The point of the mean network: E[classic train output of the layer] = converted eval."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(dnn.Dropout(0.3, mode="classic"), torch.nn.Linear(50, 1)).double()
    x = torch.randn(1, 50, dtype=torch.float64).expand(20000, 50)
    train_mean = net.train()(x).mean()
    converted = dropkit.convert(net).eval()
    se = net(x).std() / 20000**0.5
    assert abs(train_mean - converted(x[:1]).squeeze()) < 5 * se


def test_nested_sequentials_conv_and_homogeneous_layers_inplace():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Sequential(
            torch.nn.Conv2d(2, 4, 3), torch.nn.ReLU(), dnn.Dropout2d(0.25, mode="classic")
        ),
        torch.nn.MaxPool2d(2), torch.nn.Sequential(torch.nn.ZeroPad2d(1), torch.nn.Dropout(0.1)),
        torch.nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), torch.nn.Flatten(),
        dnn.Dropout(0.4, mode="classic"), torch.nn.LeakyReLU(0.1), torch.nn.Linear(144, 3),
    ).double().eval()  # fmt: skip
    x = torch.randn(3, 2, 10, 10, dtype=torch.float64)
    expected = net(x)
    same = dropkit.convert(net, inplace=True)
    assert same is net and net[0][2].mode == "inverted" and net[5].mode == "inverted"
    assert torch.allclose(net(x), expected, rtol=1e-12, atol=1e-12)


def test_conversion_refuses_what_it_cannot_keep_without_changing_anything():
    bad = torch.nn.Sequential(
        dnn.Dropout(0.5, mode="classic"), torch.nn.Linear(2, 2),
        dnn.Dropout(0.5, mode="classic"), torch.nn.Tanh(), torch.nn.Linear(2, 2),
    )  # fmt: skip
    weight = bad[1].weight.detach().clone()
    with pytest.raises(ValueError, match="cannot move the keep factor .* past Tanh"):
        dropkit.convert(bad, inplace=True)
    assert torch.equal(bad[1].weight, weight) and bad[0].mode == "classic"
    bn = torch.nn.Sequential(
        dnn.Dropout(0.5, mode="classic"), torch.nn.BatchNorm1d(2), torch.nn.Linear(2, 2)
    )
    with pytest.raises(ValueError, match="past BatchNorm1d"):
        dropkit.convert(bn)
    dangling = torch.nn.Sequential(torch.nn.Linear(2, 2), dnn.Dropout(0.5, mode="classic"))
    with pytest.raises(ValueError, match="not followed by a Linear/Conv"):
        dropkit.convert(dangling)
    with pytest.raises(ValueError, match="keep factor 1 - p is 0"):
        dropkit.convert(
            torch.nn.Sequential(dnn.Dropout(1.0, mode="classic"), torch.nn.Linear(2, 2))
        )

    class Loose(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.drop, self.fc = dnn.Dropout(0.5, mode="classic"), torch.nn.Linear(2, 2)

    with pytest.raises(ValueError, match="not inside an nn.Sequential"):
        dropkit.convert(Loose())
    with pytest.raises(ValueError, match="to must be"):
        dropkit.convert(classic_net(), to="other")
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        dropkit.convert("net")


def test_p_zero_and_already_converted_layers():
    net = torch.nn.Sequential(dnn.Dropout(0.0, mode="classic"), torch.nn.Linear(2, 2))
    weight = net[1].weight.detach().clone()
    out = dropkit.convert(net)
    assert out[0].mode == "inverted" and torch.equal(out[1].weight, weight)
    again = dropkit.convert(out)  # nothing classic left: unchanged
    assert torch.equal(again[1].weight, weight)


def _shared_net(p1, p2):
    torch.manual_seed(0)
    shared = torch.nn.Linear(6, 6)
    return torch.nn.Sequential(
        dnn.Dropout(p1, mode="classic"), shared, torch.nn.ReLU(),
        dnn.Dropout(p2, mode="classic"), shared,
    ).double().eval()  # fmt: skip


def test_a_shared_layer_fed_by_equal_dropouts_is_scaled_once():
    net = _shared_net(0.5, 0.5)
    x = torch.randn(5, 6, dtype=torch.float64)
    converted = dropkit.convert(net)
    assert torch.allclose(converted(x), net(x), rtol=1e-13, atol=1e-13)
    assert torch.allclose(converted[1].weight, net[1].weight * 0.5)
    back = dropkit.convert(converted, to="classic")
    assert torch.allclose(back(x), net(x), rtol=1e-13, atol=1e-13)


def test_a_shared_layer_fed_by_different_rates_or_used_elsewhere_is_refused_untouched():
    net = _shared_net(0.5, 0.3)
    weight = net[1].weight.clone()
    with pytest.raises(ValueError, match=r"Linear at 1, 4 is used in 2 place\(s\)"):
        dropkit.convert(net, inplace=True)
    assert torch.equal(net[1].weight, weight) and net[0].mode == "classic"

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(dnn.Dropout(0.5, mode="classic"), torch.nn.Linear(3, 3))
            self.head = self.body[1]

    with pytest.raises(ValueError, match="1 of them fed by dropouts to convert"):
        dropkit.convert(Head())


def test_a_sequential_used_twice_is_converted_once():
    torch.manual_seed(0)
    block = torch.nn.Sequential(dnn.Dropout(0.4, mode="classic"), torch.nn.Linear(4, 4)).double()

    class Twice(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.first, self.second = block, block

        def forward(self, x):
            return self.second(self.first(x))

    model = Twice().eval()
    x = torch.randn(3, 4, dtype=torch.float64)
    assert torch.allclose(dropkit.convert(model)(x), model(x), rtol=1e-13, atol=1e-13)
