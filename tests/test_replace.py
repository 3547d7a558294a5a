"""replace_dropout swaps torch's dropout modules for dropkit's and back, keeping p and mode."""

import pytest
import torch

import dropkit
from dropkit import nn as dnn

NAMES = ["Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout"]


def torch_model():
    return torch.nn.Sequential(
        torch.nn.Linear(4, 4), torch.nn.Dropout(0.3, inplace=True),
        torch.nn.Sequential(torch.nn.Dropout2d(0.1), torch.nn.AlphaDropout(0.2)),
    ).eval()  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("p,inplace", [(0.0, False), (0.25, True), (1.0, False)])
def test_every_class_both_ways_preserves_p_inplace_and_flag(name, p, inplace):
    if not hasattr(dnn, name):
        pytest.skip(f"dropkit.nn.{name} does not exist")
    model = torch.nn.Sequential(getattr(torch.nn, name)(p, inplace)).train()
    dropkit.replace_dropout(model)
    layer = model[0]
    assert type(layer) is getattr(dnn, name)
    assert layer.p == p and layer.inplace == inplace and layer.training
    assert getattr(layer, "mode", "inverted") == "inverted"
    dropkit.replace_dropout(model.eval(), to="torch")
    assert type(model[0]) is getattr(torch.nn, name)
    assert model[0].p == p and model[0].inplace == inplace and not model[0].training


@pytest.mark.filterwarnings("ignore:dropout2d")
def test_nested_replacement_mode_and_copy():
    model = torch_model()
    copy = dropkit.replace_dropout(model, mode="classic", inplace=False)
    assert type(model[1]) is torch.nn.Dropout  # untouched
    assert type(copy[1]) is dnn.Dropout and copy[1].p == 0.3 and copy[1].inplace
    assert copy[1].mode == "classic" and copy[2][0].mode == "classic"
    assert type(copy[2][0]) is dnn.Dropout2d and type(copy[2][1]) is dnn.AlphaDropout
    assert not copy[1].training
    x = torch.randn(5, 4)
    assert torch.allclose(copy(x), model[0](x) * 0.7 * 0.9)  # classic eval: (1-p) factors


def test_eval_function_and_train_statistics_unchanged():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5)).eval()
    x = torch.randn(3, 4)
    expected = model(x)
    dropkit.replace_dropout(model)
    assert torch.equal(model(x), expected)
    ones = torch.ones(200_000)
    out = model[1].train()(ones)
    kept = (out != 0).float().mean().item()
    assert abs(kept - 0.5) < 5 * (0.25 / ones.numel()) ** 0.5
    assert torch.equal(out[out != 0], torch.full_like(out[out != 0], 2.0))


def test_subclasses_are_left_alone():
    class MyDropout(torch.nn.Dropout):
        pass

    model = torch.nn.Sequential(MyDropout(0.5))
    dropkit.replace_dropout(model)
    assert type(model[0]) is MyDropout


def test_refusals_leave_the_model_whole():
    classic = torch.nn.Sequential(dnn.Dropout(0.2), dnn.Dropout(0.5, mode="classic"))
    with pytest.raises(ValueError, match="torch has no classic dropout"):
        dropkit.replace_dropout(classic, to="torch")
    assert type(classic[0]) is dnn.Dropout  # nothing was swapped before the refusal
    converted = dropkit.replace_dropout(
        dropkit.convert(torch.nn.Sequential(classic, torch.nn.Linear(3, 3))), to="torch"
    )
    assert type(converted[0][1]) is torch.nn.Dropout and converted[0][1].p == 0.5
    if hasattr(dnn, "Dropout2d"):
        with pytest.raises(ValueError, match="channels-last"):
            dropkit.replace_dropout(
                torch.nn.Sequential(dnn.Dropout2d(0.5, channels_last=True)), to="torch"
            )
    with pytest.raises(ValueError, match="to must be"):
        dropkit.replace_dropout(torch_model(), to="keras")
    with pytest.raises(ValueError, match="mode must be"):
        dropkit.replace_dropout(torch_model(), mode="scaled")
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        dropkit.replace_dropout([torch.nn.Dropout()])


@pytest.mark.parametrize("name", NAMES)
def test_a_bare_dropout_module_is_returned_replaced(name):
    original = getattr(torch.nn, name)(0.25).eval()
    replaced = dropkit.replace_dropout(original)
    assert type(replaced) is getattr(dnn, name)
    assert replaced.p == 0.25 and not replaced.training
    assert type(original) is getattr(torch.nn, name)  # the argument is left as it was
    back = dropkit.replace_dropout(replaced, to="torch")
    assert type(back) is getattr(torch.nn, name) and back.p == 0.25
