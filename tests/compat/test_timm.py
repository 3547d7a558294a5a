"""dropkit.compat.timm against the installed timm 1.0.31 (signatures, repr, errors, values where the
mask is given, statistics, identity cases, inplace, calculate_drop_path_rates, fx)."""

from __future__ import annotations

import inspect
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dropkit import mc, rng
from dropkit.compat import timm as ct

NAMES = ["drop_block_2d", "DropBlock2d", "drop_path", "DropPath", "calculate_drop_path_rates"]


def _params(obj):
    target = obj.__init__ if inspect.isclass(obj) else obj
    return [p for p in inspect.signature(target).parameters.values() if p.kind != p.VAR_KEYWORD]


@pytest.mark.parametrize("name", NAMES)
def test_signature_is_timms_plus_keyword_extras(timm_layers, name):
    ours, theirs = _params(getattr(ct, name)), _params(getattr(timm_layers, name))
    assert [(p.name, p.kind, p.default) for p in ours[: len(theirs)]] == [
        (p.name, p.kind, p.default) for p in theirs
    ]
    extras = [(p.name, p.kind, p.default) for p in ours[len(theirs) :]]
    if name == "calculate_drop_path_rates":
        assert extras == []
    else:
        assert extras == [("generator", inspect.Parameter.KEYWORD_ONLY, None),
                          ("seed", inspect.Parameter.KEYWORD_ONLY, None)]  # fmt: skip


@pytest.mark.parametrize(
    "name, args, kwargs",
    [
        ("DropBlock2d", (), {}),
        ("DropBlock2d", (0.2, 5, 1.0, True), {}),
        ("DropPath", (), {}),
        ("DropPath", (0.12345,), {}),
        ("DropPath", (0.1, False), {}),
    ],  # fmt: skip
)
def test_repr_is_timms(timm_layers, name, args, kwargs):
    assert repr(getattr(ct, name)(*args, **kwargs)) == repr(
        getattr(timm_layers, name)(*args, **kwargs)
    )


def test_removed_arguments_pass_silently_unknown_ones_warn_like_timm(timm_layers):
    for impl in (ct, timm_layers):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            impl.DropBlock2d(0.1, 3, batchwise=True, fast=False)
        with pytest.warns(
            UserWarning, match="DropBlock2d\\(\\) got unexpected keyword argument 'foo'"
        ):
            impl.DropBlock2d(0.1, 3, foo=1)


@settings(max_examples=60, deadline=None)
@given(
    rate=st.floats(0.0, 1.0, allow_nan=False),
    depths=st.one_of(st.integers(0, 40), st.lists(st.integers(0, 12), min_size=1, max_size=6)),
    stagewise=st.booleans(),
)
def test_calculate_drop_path_rates_equals_timms(timm_layers, rate, depths, stagewise):
    if isinstance(depths, int) and stagewise:
        with pytest.raises(ValueError, match="stagewise=True requires depths"):
            ct.calculate_drop_path_rates(rate, depths, stagewise)
        with pytest.raises(ValueError, match="stagewise=True requires depths"):
            timm_layers.calculate_drop_path_rates(rate, depths, stagewise)
        return
    assert ct.calculate_drop_path_rates(rate, depths, stagewise) == (
        timm_layers.calculate_drop_path_rates(rate, depths, stagewise)
    )


def test_calculate_drop_path_rates_values_and_errors(timm_layers):
    assert ct.calculate_drop_path_rates(0.2, 5) == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    assert ct.calculate_drop_path_rates(0.1, (2, 3), stagewise=True) == (
        timm_layers.calculate_drop_path_rates(0.1, (2, 3), stagewise=True)
    )
    for bad in (-1, 2.5, None):
        with pytest.raises(Exception) as ours:
            ct.calculate_drop_path_rates(0.1, bad)
        with pytest.raises(Exception) as theirs:
            timm_layers.calculate_drop_path_rates(0.1, bad)
        assert ours.type is theirs.type


def _outcome(fn):
    try:
        fn()
    except Exception as error:  # noqa: BLE001 - the type is what is compared
        return type(error)
    return None


X = torch.ones(2, 3, 8, 8)


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.drop_path(X, -0.1, True),
        lambda m: m.drop_path(X, 1.5, True),
        lambda m: m.drop_block_2d(X, -0.1, 3),
        lambda m: m.drop_block_2d(X, 0.2, 3, -1.0),
        lambda m: m.drop_block_2d(torch.ones(3, 8, 8), 0.1, 3),
        lambda m: m.drop_block_2d(torch.ones(1, 3, 8, 8, 2), 0.1, 3),
        lambda m: m.drop_block_2d(X, 0.1, 2.5),
        lambda m: m.DropPath(-0.5).train()(X),
        lambda m: m.DropBlock2d(-0.1, 3).train()(X),
    ],
)
def test_bad_arguments_raise_what_timm_raises(timm_layers, call):
    theirs = _outcome(lambda: call(timm_layers))
    assert theirs is not None
    assert _outcome(lambda: call(ct)) is theirs


@pytest.mark.parametrize(
    "call",
    [
        lambda m, x: m.drop_path(x, 0.5, False),
        lambda m, x: m.drop_path(x, 1.5, False),  # not checked when not sampling, as timm
        lambda m, x: m.drop_path(x, 0.0, True),
        lambda m, x: m.DropPath(0.3).eval()(x),
        lambda m, x: m.DropBlock2d(0.3, 3).eval()(x),
        lambda m, x: m.DropBlock2d(0.0, 3).train()(x),
    ],
)
def test_identity_cases_return_the_input_itself(timm_layers, call):
    x = torch.randn(4, 3, 6, 6)
    assert call(timm_layers, x) is x
    assert call(ct, x) is x


@pytest.mark.parametrize("p, scale_by_keep", [(0.3, True), (0.3, False), (1.0, True), (0.8, True)])
def test_drop_path_same_values_for_the_same_mask(timm_layers, forced_bernoulli, p, scale_by_keep):
    x = torch.randn(32, 3, 5, dtype=torch.float64)
    keep = (rng.stream_words(32, 7) >= rng.keep_threshold(p)).to(x.dtype).reshape(32, 1, 1)
    with forced_bernoulli(keep):
        theirs = timm_layers.drop_path(x, p, True, scale_by_keep)
    ours = ct.drop_path(x, p, True, scale_by_keep, seed=7)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_drop_path_statistics_agree(timm_layers):
    torch.manual_seed(0)
    x = torch.ones(256, 4)
    for impl in (ct, timm_layers):
        ys = torch.stack([impl.drop_path(x, 0.25, True)[:, 0] for _ in range(40)])
        dropped = float((ys == 0).double().mean())
        assert abs(dropped - 0.25) < 5 * math.sqrt(0.25 * 0.75 / ys.numel())
        assert abs(float(ys.double().mean()) - 1.0) < 0.03


def _clip_seeds(shape, gamma, seed):
    """The seed map of dropkit's DropBlock (``border="clip"``): element k of the (B, C', H, W)
    seed map reads stream word k and is a block centre iff it is below round(gamma * 2**32)."""
    words = rng.stream_words(math.prod(shape), seed).reshape(shape)
    return words < round(gamma * 2.0**32)


def _timm_gamma(p, gamma_scale, block_size, h, w):
    kh, kw = min(block_size, h), min(block_size, w)
    return gamma_scale * p * h * w / (kh * kw) / ((h - kh + 1) * (w - kw + 1))


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 3),
    channels=st.integers(1, 3),
    height=st.integers(1, 13),
    width=st.integers(1, 13),
    p=st.floats(0.05, 1.0),
    block_size=st.integers(1, 15),
    couple=st.booleans(),
    scale_by_keep=st.booleans(),
    gamma_scale=st.sampled_from([1.0, 0.5, 1.0, 2.0]),
    seed=st.integers(0, 2**64 - 1),
)
def test_drop_block_same_values_as_timm_for_the_same_seed_mask(
    timm_layers, forced_bernoulli, batch, channels, height, width, p, block_size, couple,
    scale_by_keep, gamma_scale, seed,
):  # fmt: skip
    """Odd and even blocks (timm's centring), blocks larger than the map in one or both
    dimensions, coupled or per-channel maps, rescaled or not, gamma_scale."""
    assume(p * gamma_scale <= 1.0)
    shape = (batch, channels, height, width)
    x = torch.randn(shape, dtype=torch.float64)
    seed_shape = (batch, 1 if couple else channels, height, width)
    gamma = _timm_gamma(p, gamma_scale, block_size, height, width)
    ours = ct.drop_block_2d(x, p, block_size, gamma_scale, False, False, couple, scale_by_keep,
                            seed=seed)  # fmt: skip
    with forced_bernoulli(_clip_seeds(seed_shape, gamma, seed).to(x.dtype)):
        theirs = timm_layers.drop_block_2d(x, p, block_size, gamma_scale, False, False, couple,
                                        scale_by_keep)  # fmt: skip
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-9)


def test_drop_block_gamma_one_drops_everything_like_timm(timm_layers):
    x = torch.randn(3, 2, 5, 5)
    for block_size in (1, 5, 9):  # gamma = p = 1: a centre everywhere
        theirs = timm_layers.drop_block_2d(x, 1.0, block_size)
        ours = ct.drop_block_2d(x, 1.0, block_size)
        assert not theirs.any() and not ours.any()


def test_drop_block_zero_probability_keeps_the_values(timm_layers):
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(ct.drop_block_2d(x, 0.0, 3), timm_layers.drop_block_2d(x, 0.0, 3))


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
    "shape, p, block_size, couple",
    [((4, 4, 56, 56), 0.1, 7, True), ((8, 4, 14, 14), 0.2, 4, False), ((8, 4, 5, 9), 0.3, 7, True)],
)
def test_drop_block_dropped_fraction_and_mean_agree_with_timm(timm_layers, shape, p, block_size,
                                                              couple):  # fmt: skip
    torch.manual_seed(0)
    x = torch.ones(shape)
    runs = [
        _fractions(
            lambda t, impl=impl: impl.drop_block_2d(t, p, block_size, couple_channels=couple), x, 25
        )  # fmt: skip
        for impl in (ct, timm_layers)
    ]
    ours, theirs = runs
    assert _agree(ours[0], theirs[0]), (ours[0].mean(), theirs[0].mean())
    np.testing.assert_allclose(ours[1], 1.0, rtol=1e-5)
    np.testing.assert_allclose(theirs[1], 1.0, rtol=1e-5)


def test_drop_block_with_noise_statistics_agree(timm_layers):
    torch.manual_seed(0)
    x = torch.full((8, 4, 28, 28), 5.0)
    for impl in (ct, timm_layers):
        y = impl.drop_block_2d(x, 0.3, 5, with_noise=True)
        dropped = y != 5.0
        noise = y[dropped].double()
        assert 0.2 < float(dropped.double().mean()) < 0.45
        assert abs(float(noise.mean())) < 0.05 and abs(float(noise.std()) - 1.0) < 0.05
        assert torch.equal(y[~dropped], x[~dropped])  # no rescaling with noise


def test_inplace_changes_and_returns_the_input(timm_layers):
    for impl in (ct, timm_layers):
        x = torch.ones(2, 3, 8, 8)
        out = impl.drop_block_2d(x, 0.5, 3, inplace=True)
        assert out is x and (x == 0).any()


def test_gamma_scale_beyond_one_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match=r"drop_prob \* gamma_scale has to be at most 1"):
        ct.drop_block_2d(torch.ones(1, 1, 56, 56), 0.6, 7, 2.0)


def test_modules_sample_in_training_identity_in_eval_and_sample_under_mc():
    x = torch.ones(4, 3, 12, 12)
    for layer in (ct.DropBlock2d(0.3, 3), ct.DropPath(0.5)):
        torch.manual_seed(0)
        assert not torch.equal(layer.train()(x), x)
        assert layer.eval()(x) is x
        with mc.stochastic():
            assert not torch.equal(layer(x), x)
    assert mc.batch_wide_modules(torch.nn.Sequential(ct.DropBlock2d(), ct.DropPath(0.1))) == ["0"]
    assert mc.batch_wide_modules(torch.nn.Sequential(ct.DropBlock2d(scale_by_keep=False))) == []


def test_seed_and_generator_extras_reproduce():
    x = torch.randn(4, 3, 10, 10)
    assert torch.equal(ct.DropPath(0.5, seed=5).train()(x), ct.drop_path(x, 0.5, True, seed=5))
    assert torch.equal(ct.DropBlock2d(0.3, 3, seed=5)(x), ct.drop_block_2d(x, 0.3, 3, seed=5))


def test_fx_symbolic_trace_goes_through_the_modules():
    model = torch.nn.Sequential(ct.DropBlock2d(0.2, 3, seed=1), ct.DropPath(0.2, seed=2)).train()
    graph = torch.fx.symbolic_trace(model)
    x = torch.randn(4, 2, 7, 7)
    assert torch.equal(graph(x), model(x))


def test_mc_predict_batched_equals_looped_with_drop_path():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(5, 8), ct.DropPath(0.3), torch.nn.ReLU(), torch.nn.Linear(8, 3)
    ).double()
    x = torch.randn(4, 5, dtype=torch.float64)
    batched = mc.mc_predict(model, x, 6, seed=3, batch_replicas=True)
    looped = mc.mc_predict(model, x, 6, seed=3, batch_replicas=False)
    torch.testing.assert_close(batched.mean, looped.mean, rtol=1e-12, atol=1e-12)
    assert (batched.variance > 0).any()
