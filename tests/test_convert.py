"""Classic <-> inverted conversion keeps the eval-mode function; replace_dropout keeps p."""

import pytest
import torch

import dropkit
from dropkit import nn as dnn


def classic_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        dnn.Dropout(0.2, mode="classic"), torch.nn.Linear(8, 16), torch.nn.ReLU(),
        dnn.Dropout(0.5, mode="classic"), torch.nn.Linear(16, 3),
    ).double()  # fmt: skip


def test_round_trip_keeps_eval_outputs():
    net = classic_net().eval()
    x = torch.randn(10, 8, dtype=torch.float64)
    inverted = dropkit.convert(net, to="inverted")
    assert all(m.mode == "inverted" for m in inverted.modules() if isinstance(m, dnn.Dropout))
    assert torch.allclose(inverted(x), net(x), rtol=1e-12, atol=1e-12)
    back = dropkit.convert(inverted, to="classic")
    assert torch.allclose(back(x), net(x), rtol=1e-12, atol=1e-12)
    assert net[0].mode == "classic"  # the original was copied, not changed


def test_conversion_refuses_what_it_cannot_keep():
    bad = torch.nn.Sequential(
        dnn.Dropout(0.5, mode="classic"), torch.nn.Tanh(), torch.nn.Linear(2, 2)
    )
    with pytest.raises(ValueError, match="cannot move the keep factor"):
        dropkit.convert(bad)
    dangling = torch.nn.Sequential(torch.nn.Linear(2, 2), dnn.Dropout(0.5, mode="classic"))
    with pytest.raises(ValueError, match="not followed by a Linear/Conv"):
        dropkit.convert(dangling)
    with pytest.raises(ValueError, match="to must be"):
        dropkit.convert(classic_net(), to="other")


def test_replace_dropout_both_ways():
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 4), torch.nn.Dropout(0.3, inplace=True),
        torch.nn.Sequential(torch.nn.Dropout2d(0.1), torch.nn.AlphaDropout(0.2)),
    ).eval()  # fmt: skip
    dropkit.replace_dropout(model)
    assert type(model[1]) is dnn.Dropout and model[1].p == 0.3 and model[1].inplace
    assert type(model[2][0]) is dnn.Dropout2d and type(model[2][1]) is dnn.AlphaDropout
    assert not model[1].training
    dropkit.replace_dropout(model, to="torch")
    assert type(model[1]) is torch.nn.Dropout and model[1].p == 0.3
    classic = torch.nn.Sequential(dnn.Dropout(0.5, mode="classic"))
    with pytest.raises(ValueError, match="torch has no classic dropout"):
        dropkit.replace_dropout(classic, to="torch")
