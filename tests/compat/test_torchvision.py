"""dropkit.compat.torchvision against the installed torchvision 0.28 (signatures, errors, values
where the mask is given, statistics, identity cases, inplace, modules, fx)."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dropkit import mc, rng
from dropkit.compat import torchvision as ctv

NAMES = ["drop_block2d", "drop_block3d", "DropBlock2d", "DropBlock3d", "stochastic_depth",
         "StochasticDepth"]  # fmt: skip


def _params(obj):
    target = obj.__init__ if inspect.isclass(obj) else obj
    return list(inspect.signature(target).parameters.values())


@pytest.mark.parametrize("name", NAMES)
def test_signature_is_torchvisions_plus_keyword_extras(tv_ops, name):
    ours, theirs = _params(getattr(ctv, name)), _params(getattr(tv_ops, name))
    assert [(p.name, p.kind, p.default) for p in ours[: len(theirs)]] == [
        (p.name, p.kind, p.default) for p in theirs
    ]
    extras = ours[len(theirs) :]
    assert [(p.name, p.kind, p.default) for p in extras] == [
        ("generator", inspect.Parameter.KEYWORD_ONLY, None),
        ("seed", inspect.Parameter.KEYWORD_ONLY, None),
    ]


@pytest.mark.parametrize(
    "name, args",
    [
        ("DropBlock2d", (0.1, 3)),
        ("DropBlock2d", (0.25, 5, True, 1e-3)),
        ("DropBlock3d", (0.1, 3)),
        ("StochasticDepth", (0.2, "row")),
        ("StochasticDepth", (1, "batch")),
    ],
)
def test_repr_is_torchvisions(tv_ops, name, args):
    assert repr(getattr(ctv, name)(*args)) == repr(getattr(tv_ops, name)(*args))


def _outcome(fn):
    try:
        fn()
    except Exception as error:  # noqa: BLE001 - the type is what is compared
        return type(error), str(error)
    return None, None


X4 = torch.ones(2, 3, 8, 8)
X5 = torch.ones(2, 3, 4, 4, 4)
BAD_CALLS = [
    ("drop_block2d", (X4, -0.1, 3)),
    ("drop_block2d", (X4, 1.1, 3)),
    ("drop_block2d", (X4, 1.1, 3, False, 1e-6, False)),  # p checked before training
    ("drop_block2d", (torch.ones(3, 8, 8), 0.1, 3)),
    ("drop_block2d", (torch.ones(3, 8, 8), 0.1, 3, False, 1e-6, False)),
    ("drop_block2d", (X4, 0.1, 4)),
    ("drop_block2d", (X4, 0.1, 9)),  # clipped to 8: even
    ("drop_block2d", (torch.ones(2, 3, 8, 9), 0.1, 9)),
    ("drop_block2d", (X4, "0.1", 3)),
    ("drop_block3d", (X5, -0.5, 3)),
    ("drop_block3d", (X5, 0.1, 2)),
    ("drop_block3d", (X4, 0.1, 3)),
    ("stochastic_depth", (X4, -0.1, "row")),
    ("stochastic_depth", (X4, 1.5, "batch")),
    ("stochastic_depth", (X4, 0.1, "rows")),
    ("stochastic_depth", (X4, 0.1, "rows", False)),
]


@pytest.mark.parametrize("name, args", BAD_CALLS)
def test_bad_arguments_raise_what_torchvision_raises(tv_ops, name, args):
    ours = _outcome(lambda: getattr(ctv, name)(*args))
    theirs = _outcome(lambda: getattr(tv_ops, name)(*args))
    assert theirs[0] is not None
    assert ours[0] is theirs[0]
    if theirs[0] is ValueError:
        assert ours[1] == theirs[1]


@pytest.mark.parametrize(
    "name, args",
    [
        ("DropBlock2d", (1.5, 3)),
        ("DropBlock2d", (-0.1, 3)),
        ("StochasticDepth", (0.1, "x")),
        ("StochasticDepth", (2, "row")),
    ],  # fmt: skip
)
def test_modules_refuse_at_construction_what_torchvision_refuses_at_forward(tv_ops, name, args):
    theirs = _outcome(lambda: getattr(tv_ops, name)(*args).train()(X4))
    ours = _outcome(lambda: getattr(ctv, name)(*args))
    assert theirs[0] is ValueError and ours == theirs


@pytest.mark.parametrize(
    "name, args",
    [
        ("drop_block2d", (X4, 0.3, 3, False, 1e-6, False)),
        ("drop_block2d", (X4, 0.0, 3)),
        ("drop_block2d", (X4, 0.3, 4, False, 1e-6, False)),  # even: fine when not sampling
        ("drop_block2d", (X4, 0.0, 4)),
        ("drop_block3d", (X5, 0.3, 3, True, 1e-6, False)),
        ("stochastic_depth", (X4, 0.5, "row", False)),
        ("stochastic_depth", (X4, 0.0, "batch")),
    ],
)
def test_identity_cases_return_the_input_itself(tv_ops, name, args):
    assert getattr(tv_ops, name)(*args) is args[0]
    assert getattr(ctv, name)(*args) is args[0]


def _valid_seeds(shape, p, block_size, seed, gamma):
    """dropkit's seed mask (drop_block2d/3d docstring): element k of the (N, C, *S) seed map
    reads stream word k, is a seed iff the word is below round(gamma * 2**32) and it lies where a
    whole block fits; returned as torchvision's noise tensor (N, C, *(S - bs + 1))."""
    words = rng.stream_words(math.prod(shape), seed).reshape(shape)
    seeds = (words < round(gamma * 2.0**32)).to(torch.float32)
    a = block_size // 2
    index = (slice(None), slice(None)) + tuple(slice(a, a + s - block_size + 1) for s in shape[2:])
    return seeds[index]


@settings(max_examples=40, deadline=None)
@given(
    dims=st.sampled_from([2, 3]),
    batch=st.integers(1, 3),
    channels=st.integers(1, 3),
    spatial=st.lists(st.integers(1, 11), min_size=3, max_size=3),
    p=st.floats(0.05, 1.0),
    block_size=st.sampled_from([1, 3, 5, 7, 9, 13]),
    seed=st.integers(0, 2**64 - 1),
)
def test_same_values_as_torchvision_for_the_same_seed_mask(
    tv_ops, forced_bernoulli, dims, batch, channels, spatial, p, block_size, seed
):
    spatial = tuple(spatial[:dims])
    bs = min(block_size, *spatial)
    assume(bs % 2 == 1)
    shape = (batch, channels, *spatial)
    x = torch.randn(shape, dtype=torch.float64)
    name = f"drop_block{dims}d"
    ours = getattr(ctv, name)(x, p, block_size, seed=seed)
    gamma = p * math.prod(spatial) / (bs**dims * math.prod(s - bs + 1 for s in spatial))
    with forced_bernoulli(_valid_seeds(shape, p, bs, seed, gamma).to(x.dtype)):
        theirs = getattr(tv_ops, name)(x, p, block_size)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_block_covering_the_map_at_p_1_drops_everything_like_torchvision(tv_ops):
    x = torch.randn(3, 2, 5, 5)
    for block_size in (5, 7, 99):
        torch.testing.assert_close(
            ctv.drop_block2d(x, 1.0, block_size), tv_ops.drop_block2d(x, 1.0, block_size)
        )
        assert not ctv.drop_block2d(x, 1.0, block_size).any()
    assert not ctv.drop_block3d(torch.randn(2, 2, 3, 3, 3), 1.0, 1).any()


@pytest.mark.parametrize("mode", ["row", "batch"])
@pytest.mark.parametrize("p", [0.2, 0.7, 1.0])
def test_stochastic_depth_same_values_for_the_same_mask(tv_ops, forced_bernoulli, mode, p):
    x = torch.randn(16, 3, 4, dtype=torch.float64)
    rows = 16 if mode == "row" else 1
    keep = (rng.stream_words(rows, 99) >= rng.keep_threshold(p)).to(x.dtype)
    shape = [rows] + [1] * (x.dim() - 1)
    with forced_bernoulli(keep.reshape(shape)):
        theirs = tv_ops.stochastic_depth(x, p, mode)
    ours = ctv.stochastic_depth(x, p, mode, seed=99)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def _fractions(fn, x, calls):
    dropped, means = [], []
    for _ in range(calls):
        y = fn(x)
        dropped.append(float((y == 0).double().mean()))
        means.append(float(y.double().mean()))
    return np.array(dropped), np.array(means)


def _agree(a, b, sigmas=5.0):
    spread = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return abs(a.mean() - b.mean()) <= sigmas * spread + 1e-12


@pytest.mark.parametrize(
    "name, shape, p, block_size",
    [
        ("drop_block2d", (8, 8, 20, 20), 0.15, 5),
        ("drop_block2d", (8, 8, 11, 13), 0.4, 3),
        ("drop_block3d", (4, 4, 8, 8, 8), 0.2, 3),
    ],  # fmt: skip
)
def test_dropped_fraction_and_mean_agree_with_torchvision(tv_ops, name, shape, p, block_size):
    torch.manual_seed(0)
    x = torch.ones(shape)
    ours = _fractions(lambda t: getattr(ctv, name)(t, p, block_size), x, 30)
    theirs = _fractions(lambda t: getattr(tv_ops, name)(t, p, block_size), x, 30)
    assert _agree(ours[0], theirs[0]), (ours[0].mean(), theirs[0].mean())
    # batch normalisation: the mean of a constant input is kept exactly (up to eps)
    np.testing.assert_allclose(ours[1], 1.0, rtol=1e-5)
    np.testing.assert_allclose(theirs[1], 1.0, rtol=1e-5)


@pytest.mark.parametrize("mode", ["row", "batch"])
def test_stochastic_depth_statistics_agree(tv_ops, mode):
    torch.manual_seed(1)
    x = torch.ones(64, 5)
    ours = _fractions(lambda t: ctv.stochastic_depth(t, 0.3, mode), x, 200)
    theirs = _fractions(lambda t: tv_ops.stochastic_depth(t, 0.3, mode), x, 200)
    assert _agree(ours[0], theirs[0]) and _agree(ours[1], theirs[1])
    assert abs(ours[1].mean() - 1.0) < 0.05


@pytest.mark.parametrize("name, x, args", [("drop_block2d", X4, (0.5, 3)),
                                           ("drop_block3d", X5, (0.5, 3))])  # fmt: skip
def test_inplace_changes_and_returns_the_input(tv_ops, name, x, args):
    for impl in (tv_ops, ctv):
        x = x.clone()
        out = (
            getattr(impl, name)(x, *args, inplace=True)
            if impl is ctv
            else getattr(impl, name)(x, *args, True)
        )
        assert out is x


def test_p_as_numpy_number_tensor_and_bool_is_taken_as_torchvision_takes_it(tv_ops):
    x = torch.ones(4, 2, 6, 6)
    for p in (np.float32(0.5), torch.tensor(0.5), np.float64(0.25)):
        assert ctv.drop_block2d(x, p, 3).shape == x.shape
        assert ctv.stochastic_depth(x, p, "row").shape == x.shape
    assert not ctv.stochastic_depth(x, True, "batch").any()
    assert not tv_ops.stochastic_depth(x, True, "batch").any()
    assert ctv.stochastic_depth(x, False, "batch") is x


def test_modules_sample_in_training_identity_in_eval_and_sample_under_mc():
    x = torch.ones(4, 3, 9, 9)
    for layer in (ctv.DropBlock2d(0.3, 3), ctv.StochasticDepth(0.5, "row")):
        torch.manual_seed(0)
        assert not torch.equal(layer.train()(x), x)
        assert layer.eval()(x) is x
        with mc.stochastic():
            assert not torch.equal(layer(x), x)
    block3 = ctv.DropBlock3d(0.3, 3).train()
    assert (block3(torch.ones(2, 2, 5, 5, 5)) == 0).any()


def test_seed_and_generator_extras_reproduce():
    x = torch.randn(4, 3, 10, 10)
    a = ctv.DropBlock2d(0.3, 3, seed=5)(x)
    b = ctv.drop_block2d(x, 0.3, 3, seed=5)
    assert torch.equal(a, b)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(ctv.stochastic_depth(x, 0.5, "row", generator=g1),
                       ctv.StochasticDepth(0.5, "row", generator=g2)(x))  # fmt: skip


def test_fx_symbolic_trace_goes_through_the_modules():
    model = torch.nn.Sequential(ctv.DropBlock2d(0.2, 3, seed=1), ctv.StochasticDepth(0.2, "row"))
    graph = torch.fx.symbolic_trace(model)
    x = torch.randn(4, 2, 7, 7)
    torch.manual_seed(0)
    expected = model(x)
    torch.manual_seed(0)
    assert torch.equal(graph(x), expected)


def test_batch_normalised_modules_make_mc_predict_loop():
    model = torch.nn.Sequential(torch.nn.Flatten(0, -1), torch.nn.Unflatten(0, (1, -1)))
    assert mc.batch_wide_modules(torch.nn.Sequential(ctv.DropBlock3d(0.1, 3))) == ["0"]
    assert mc.batch_wide_modules(torch.nn.Sequential(ctv.StochasticDepth(0.1, "row"))) == []
    assert mc.batch_wide_modules(model) == []
