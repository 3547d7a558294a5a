"""dropkit.nn.Dropout as a drop-in replacement for torch.nn.Dropout."""

import copy
import io
import pickle

import pytest
import torch

from dropkit import rng
from dropkit.nn import Dropout


def test_defaults_and_repr_match_torch():
    assert Dropout().p == torch.nn.Dropout().p == 0.5
    # torch's text, prefixed so a printed model shows which layers are dropkit's
    assert repr(Dropout(0.3)) == "dropkit." + repr(torch.nn.Dropout(0.3))
    assert repr(Dropout(0.3, True)) == "dropkit." + repr(torch.nn.Dropout(0.3, True))
    assert (
        repr(Dropout(0.2, mode="classic"))
        == "dropkit.Dropout(p=0.2, inplace=False, mode='classic')"
    )
    assert "seed=7" in repr(Dropout(0.2, seed=7))


@pytest.mark.parametrize("p", [-0.5, 1.5])
def test_bad_p_raises_the_same_error_as_torch(p):
    with pytest.raises(ValueError) as ours:
        Dropout(p)
    with pytest.raises(ValueError) as theirs:
        torch.nn.Dropout(p)
    assert str(ours.value) == str(theirs.value)


def test_bad_mode_and_seed_generator_conflict():
    with pytest.raises(ValueError, match="mode must be one of"):
        Dropout(0.5, mode="bernoulli")
    with pytest.raises(ValueError, match="either seed or generator"):
        Dropout(0.5, seed=1, generator=torch.Generator())


def test_train_and_eval():
    x = torch.randn(200, 10)
    layer = Dropout(0.5, seed=4)
    y = layer(x)
    keep = rng.keep_mask(x.shape, 0.5, 4)
    assert torch.equal(y, x * keep * 2.0)
    layer.eval()
    assert layer(x) is x
    classic = Dropout(0.5, mode="classic").eval()
    assert torch.equal(classic(x), x * 0.5)


def test_sequential_state_dict_deepcopy_pickle():
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), Dropout(0.3, mode="classic"))
    state = net.state_dict()
    assert set(state) == {"0.weight", "0.bias"}  # no buffers: the layer holds no state
    clone = copy.deepcopy(net)
    assert clone[1].p == 0.3 and clone[1].mode == "classic"
    restored = pickle.loads(pickle.dumps(net))
    assert restored[1].mode == "classic"
    buffer = io.BytesIO()
    torch.save(net, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    x = torch.randn(3, 4)
    net.eval()
    loaded.eval()
    assert torch.equal(net(x), loaded(x))


def test_generator_layer_can_be_copied():
    layer = Dropout(0.5, generator=torch.Generator().manual_seed(1))
    clone = copy.deepcopy(layer)
    # the copy keeps a generator of its own in the same state: it draws the same masks
    assert clone.generator is not layer.generator and clone.p == 0.5
    assert torch.equal(clone(torch.ones(100)), copy.deepcopy(layer)(torch.ones(100)))
    # the original keeps its generator and draws reproducibly from it
    a = layer(torch.ones(100))
    layer.generator.manual_seed(1)
    assert torch.equal(a, layer(torch.ones(100)))


def test_inplace_module():
    x = torch.randn(100)
    expected = Dropout(0.5, seed=3)(x)
    y = x.clone()
    Dropout(0.5, inplace=True, seed=3)(y)
    assert torch.equal(y, expected)


def test_drop_in_replacement_trains():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(10, 32), torch.nn.ReLU(), Dropout(0.2), torch.nn.Linear(32, 1)
    )
    x = torch.randn(256, 10)
    target = x.sum(1, keepdim=True)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    first = None
    for _ in range(150):
        loss = torch.nn.functional.mse_loss(net(x), target)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first
