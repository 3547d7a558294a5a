"""The compiled CPU kernels (``csrc/dropkit_ops.cpp``) equal the reference bit for bit: every
``dropkit`` operator, dtype, size, offset, layout and thread count."""

import math
import os
import pickle
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dropkit import kernels, rng
from dropkit.kernels import reference

pytestmark = pytest.mark.skipif(
    kernels.backend() != "cpu",
    reason="the compiled C++ kernels are not loaded (DROPKIT_BACKEND=reference or no compiler): "
    "the operators' CPU kernels are the reference itself, nothing to compare",
)

ops = torch.ops.dropkit
seed_tensor = kernels.seed_tensor

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
INT_VIEW = {
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float32: torch.int32,
    torch.float64: torch.int64,
}
TOP = kernels.MAX_STREAM_INDEX  # offset + numel may reach this
BLOCK = 128  # words per Philox block of the C++ kernels (kBlockWords)
GRAIN = 1 << 15  # elements per parallel task (kGrain)
AFFINE = (1.3, 0.4, -0.7)  # a, kept_shift, dropped_value


def assert_same_bits(got: torch.Tensor, want: torch.Tensor) -> None:
    """Equal bit patterns; NaNs need only be NaN at the same places (torch's own float->bfloat16
    conversions give different NaN payloads in their vector and scalar loops)."""
    assert got.dtype == want.dtype and got.shape == want.shape
    nan = torch.isnan(want)
    assert torch.equal(torch.isnan(got), nan)
    view = INT_VIEW[got.dtype]
    assert torch.equal(got[~nan].contiguous().view(view), want[~nan].contiguous().view(view))


def special_values(n: int, dtype: torch.dtype) -> torch.Tensor:
    x = torch.randn(n, dtype=torch.float64) * 3
    specials = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan"), 1e-30, 6e4])
    x[: min(n, len(specials))] = specials[: min(n, len(specials))].to(torch.float64)
    return x.to(dtype)


def keep(x, seed, offset, threshold, scale, mask_shape=None, *, affine=False, inplace=False):
    """``dropkit::keep`` (or ``keep_affine`` with ``a = scale``; ``keep_`` / ``keep_affine_`` when
    ``inplace``) with an int seed; the mask of ``x``'s shape by default."""
    shape = list(x.shape if mask_shape is None else mask_shape)
    if affine:
        op = ops.keep_affine_ if inplace else ops.keep_affine
        return op(x, seed_tensor(seed), offset, threshold, scale, *AFFINE[1:], shape)
    op = ops.keep_ if inplace else ops.keep
    return op(x, seed_tensor(seed), offset, threshold, scale, shape)


def want(x, seed, offset, threshold, scale, mask_shape=None, *, affine=False):
    """The reference's result for :func:`keep`'s arguments."""
    shape = None if mask_shape is None else tuple(mask_shape)
    if affine:
        args = (seed, offset, threshold, scale, *AFFINE[1:], None, shape)
        return reference.apply_keep_affine(x, *args)
    return reference.apply_keep_mask(x, seed, offset, threshold, scale, None, shape)


def check_all_ways(x, seed, offset, threshold, scale, mask_shape=None, *, affine=False):
    """Out of place and in place against the reference; x itself untouched by the first."""
    expected = want(x, seed, offset, threshold, scale, mask_shape, affine=affine)
    source = x.clone()
    got = keep(x, seed, offset, threshold, scale, mask_shape, affine=affine)
    assert_same_bits(got, expected)
    assert got.stride() == x.stride() or not _dense(x)  # the input's layout
    assert torch.equal(x.view(INT_VIEW[x.dtype]), source.view(INT_VIEW[x.dtype]))
    y = x.clone()
    assert keep(y, seed, offset, threshold, scale, mask_shape, affine=affine, inplace=True) is y
    assert_same_bits(y, expected)


def _dense(x: torch.Tensor) -> bool:
    sizes = [(st_, sz) for st_, sz in zip(x.stride(), x.shape) if sz > 1]
    expected = 1
    for stride, size in sorted(sizes):
        if stride != expected:
            return False
        expected *= size
    return True


# -- keep: every element its own mask element ------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    "n",
    [1, 3, 4, 5, BLOCK - 1, BLOCK, BLOCK + 1, 1023, 1025, GRAIN - 1, GRAIN + 1, (1 << 17) + 3],
)
def test_keep_matches_reference(dtype, threads, n):
    torch.set_num_threads(threads)
    x = special_values(n, dtype)
    threshold = rng.keep_threshold(0.37)
    for offset in (0, 1, 2, 7, BLOCK - 3, 2**40 + 3):
        check_all_ways(x, 12345, offset, threshold, 1 / 0.63)
    # The contract helpers (a Python int seed) give the same bits, out= and out=x included.
    expected = want(x, 12345, 5, threshold, 1 / 0.63)
    assert_same_bits(kernels.apply_keep_mask(x, 12345, 5, threshold, 1 / 0.63), expected)
    out = torch.empty_like(x)
    assert kernels.apply_keep_mask(x, 12345, 5, threshold, 1 / 0.63, out=out) is out
    assert_same_bits(out, expected)
    y = x.clone()
    assert kernels.apply_keep_mask(y, 12345, 5, threshold, 1 / 0.63, out=y) is y
    assert_same_bits(y, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_offsets_at_the_top_of_the_stream(dtype):
    # The last element may have stream index 2**63 - 1 - 1 (offset + numel <= 2**63 - 1).
    x = special_values(37, dtype)
    threshold = rng.keep_threshold(0.5)
    for n in (1, 5, 37):
        for offset in (TOP - n, TOP - n - 1, TOP - n - 3):
            for affine in (False, True):
                check_all_ways(x[:n].clone(), -3, offset, threshold, 2.0, affine=affine)
            words = kernels.stream_words(n, -3, offset)
            assert torch.equal(words, rng.stream_words(n, -3, offset))


@settings(max_examples=60, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    n=st.integers(0, 3000),
    offset=st.one_of(st.integers(0, 2**40), st.integers(0, 64).map(lambda d: TOP - 3000 - d)),
    seed=st.integers(-(2**63), 2**64 - 1),
    p=st.floats(0.0, 1.0),
    in_place=st.booleans(),
    threads=st.sampled_from([1, 2]),
)
def test_keep_property(dtype, n, offset, seed, p, in_place, threads):
    torch.set_num_threads(threads)
    x = special_values(n, dtype)
    threshold = rng.keep_threshold(p)
    scale = 0.0 if p == 1 else 1 / (1 - p)
    expected = want(x, seed, offset, threshold, scale)
    got = keep(x.clone() if in_place else x, seed, offset, threshold, scale, inplace=in_place)
    assert_same_bits(got, expected)


def test_extreme_thresholds_keep_all_or_nothing_and_nan_stays_nan():
    x = torch.tensor([1.0, -2.0, float("nan"), float("inf"), -0.0] * 9)
    assert_same_bits(keep(x, 3, 0, 2**32, 0.0), x * 0.0)  # NaN * 0 and Inf * 0: NaN
    assert_same_bits(keep(x, 3, 0, 2**32, 2.0), x * 0.0)
    assert_same_bits(keep(x, 3, 1, 0, 1.0), x)
    assert_same_bits(keep(x, 3, 2, 0, 2.0), x * 2.0)
    for threshold in (0, 2**32):
        check_all_ways(x, 3, 5, threshold, 2.0)
        check_all_ways(x, 3, 5, threshold, 2.0, affine=True)


def test_in_place_bumps_the_autograd_version():
    y = torch.randn(50)
    for affine in (False, True):
        before = y._version
        keep(y, 1, 0, rng.keep_threshold(0.5), 2.0, affine=affine, inplace=True)
        assert y._version > before


def test_the_output_keeps_the_input_layout():
    x = special_values(2 * 3 * 4 * 5, torch.float32).reshape(2, 3, 4, 5)
    cl = x.to(memory_format=torch.channels_last)
    threshold = rng.keep_threshold(0.5)
    for mask_shape in [(2, 3, 4, 5), (2, 3, 1, 1), (2, 1, 1, 5), (1, 3, 1, 5)]:
        for affine in (False, True):
            got = keep(cl, 8, 1, threshold, 2.0, mask_shape, affine=affine)
            assert got.is_contiguous(memory_format=torch.channels_last)
            assert_same_bits(got, want(x, 8, 1, threshold, 2.0, mask_shape, affine=affine))
    got = ops.bias_dropout_add(cl, torch.randn(5), cl, seed_tensor(8), 1, threshold, 2.0)
    assert got.is_contiguous(memory_format=torch.channels_last)


# -- the raw stream --------------------------------------------------------------------------------
@pytest.mark.parametrize("threads", [1, 2])
def test_stream_words_match_reference(threads):
    torch.set_num_threads(threads)
    for n, offset in [
        (0, 0),
        (1, 3),
        (5, 2),
        (1001, 5),
        (GRAIN + 1, 6),
        ((1 << 17) + 1, 2**35 + 1),
    ]:
        got = kernels.stream_words(n, 2**64 - 5, offset)
        assert got.dtype == torch.int64
        assert torch.equal(got, rng.stream_words(n, 2**64 - 5, offset))
        out = torch.empty(n, dtype=torch.int64)
        assert ops._stream_words(out, seed_tensor(2**64 - 5), offset) is out
        assert torch.equal(out, got)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2])
def test_normal_matches_reference(dtype, threads):
    torch.set_num_threads(threads)
    for shape, offset in [((0,), 0), ((1,), 0), ((3, 77), 5), ((100_003,), 2**40 + 1)]:
        got = kernels.normal(shape, 9, offset, "cpu", dtype)
        assert_same_bits(got, rng.normal(shape, 9, offset, "cpu", dtype))
    top = (TOP - 1) // 2 - 7  # 2 * (offset + numel) <= 2**63 - 1
    got = kernels.normal((7,), 1, top, None, dtype)
    assert_same_bits(got, rng.normal((7,), 1, top, None, dtype))


def test_normal_uniforms_are_the_references():
    for n, offset in [(0, 0), (1, 1), (GRAIN + 3, 7)]:
        u1, u2 = ops._normal_uniforms(n, seed_tensor(-11), offset)
        words = rng.stream_words(2 * n, -11, 2 * offset).reshape(-1, 2)
        assert u1.dtype == u2.dtype == torch.float64
        assert torch.equal(u1, ((words[:, 0] >> 8) + 1).to(torch.float64) * 2.0**-24)
        assert torch.equal(u2, (words[:, 1] >> 8).to(torch.float64) * 2.0**-24)


def test_compiled_and_reference_kernels_agree_through_the_operators(cpu_kernels):
    """The same operator calls under the compiled CPU kernels and under the reference's."""
    x = special_values(6 * 70, torch.float32).reshape(6, 70)
    bias, residual = torch.randn(70), torch.randn(6, 70)
    seed = seed_tensor(2**64 - 1)
    t = rng.keep_threshold(0.3)

    def calls():
        return [
            ops.keep(x, seed, 3, t, 1 / 0.7, [6, 70]),
            ops.keep(x, seed, 3, t, 1 / 0.7, [6, 1]),
            ops.keep_(x.clone(), seed, 3, t, 1 / 0.7, [1, 70]),
            ops.keep_affine(x, seed, 3, t, *AFFINE, [6, 70]),
            ops.keep_affine_(x.clone(), seed, 3, t, *AFFINE, [1, 1]),
            ops.bias_dropout_add(x, bias, residual, seed, 3, t, 2.0),
            ops._stream_words(torch.empty(77, dtype=torch.int64), seed, 5),
            *ops._normal_uniforms(33, seed, 5),
        ]

    with cpu_kernels("cpu"):
        compiled = calls()
    with cpu_kernels("reference"):
        expected = calls()
    for got, w in zip(compiled, expected):
        if got.dtype == torch.int64:
            assert torch.equal(got, w)
        else:
            assert_same_bits(got, w)


# -- bias_dropout_add ------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    rows=st.integers(0, 40),
    hidden=st.integers(1, 70),
    bias_rank=st.sampled_from([0, 1, 2]),
    offset=st.one_of(st.integers(0, 2**40), st.just(TOP - 40 * 3 * 70)),
    p=st.floats(0.0, 1.0),
    layout=st.sampled_from(["contiguous", "x", "residual", "bias", "all"]),
    threads=st.sampled_from([1, 2]),
)
def test_bias_dropout_add_property(dtype, rows, hidden, bias_rank, offset, p, layout, threads):
    torch.set_num_threads(threads)
    x = special_values(rows * 3 * hidden, dtype).reshape(rows, 3, hidden)
    residual = torch.randn(rows, 3, hidden).to(dtype)
    bias = torch.randn((3, hidden)[2 - bias_rank :] if bias_rank else ()).to(dtype)
    threshold = rng.keep_threshold(p)
    scale = 0.0 if p == 1 else 1 / (1 - p)
    expected = reference.bias_dropout_add(x, bias, residual, 7, offset, threshold, scale)
    # Non-contiguous operands of the same values: transposed copies, a strided bias.
    if layout in ("x", "all"):
        x = x.transpose(0, 2).contiguous().transpose(0, 2)
    if layout in ("residual", "all"):
        residual = residual.transpose(0, 1).contiguous().transpose(0, 1)
    if layout in ("bias", "all") and bias_rank:
        bias = torch.stack([bias, bias], -1)[..., 0]
    got = ops.bias_dropout_add(x, bias, residual, seed_tensor(7), offset, threshold, scale)
    assert_same_bits(got, expected)
    if x.numel() and _dense(x):
        assert got.stride() == x.stride()
    assert_same_bits(kernels.bias_dropout_add(x, bias, residual, 7, offset, threshold, scale),
                     expected)  # fmt: skip


@pytest.mark.parametrize("threads", [1, 2])
def test_bias_dropout_add_large_and_parallel(threads):
    torch.set_num_threads(threads)
    x, residual = torch.randn(300, 1027), torch.randn(300, 1027)
    bias = torch.randn(1027)
    threshold = rng.keep_threshold(0.1)
    for offset in (0, 11, TOP - x.numel()):
        expected = reference.bias_dropout_add(x, bias, residual, 5, offset, threshold, 1 / 0.9)
        got = kernels.bias_dropout_add(x, bias, residual, 5, offset, threshold, 1 / 0.9)
        assert_same_bits(got, expected)
    half = x.half()
    expected = reference.bias_dropout_add(half, bias.half(), residual.half(), 5, 0, threshold, 2.0)
    got = kernels.bias_dropout_add(half, bias.half(), residual.half(), 5, 0, threshold, 2.0)
    assert_same_bits(got, expected)


# -- broadcast masks and the affine map (channel dropout, drop-path, locked and alpha dropout) ----
# (x's shape, mask_shape): the one-pass kernel's patterns, then the generic path's.
ONE_PASS = [
    ((4, 6, 5, 7), (4, 6, 1, 1)),  # channels first: a = N C, b = H W
    ((4, 5, 7, 6), (4, 1, 1, 6)),  # channels last (logical NHWC): c = C
    ((9, 4, 6), (1, 4, 6)),  # locked dropout (T, N, C)
    ((4, 9, 6), (4, 1, 6)),  # locked dropout, batch first
    ((4, 3, 5, 6), (4, 1, 1, 1)),  # drop-path
    ((4, 3, 5, 6), (1, 1, 1, 1)),  # stochastic depth "batch": one word
    ((4, 3, 5, 6), (4, 3, 5, 6)),  # x's own shape
    ((1, 3, 1, 6), (1, 1, 1, 6)),  # size-1 dimensions belong to either kind
    ((4, 1, 5, 6), (4, 1, 1, 6)),
    ((5, 1), (1, 1)),
    ((7,), (7,)),
    ((), ()),
]
GENERIC = [
    ((4, 5, 6, 7), (4, 1, 6, 1)),  # broadcast along two separate groups
    ((3, 4, 5), (1, 4, 1)),
    ((2, 3, 4, 5), (1, 3, 1, 5)),  # inner broadcast [1, C, 1, W]
]
MASKS = ONE_PASS + GENERIC


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("shape", "mask_shape"), MASKS)
def test_broadcast_mask_matches_reference(shape, mask_shape, dtype, affine):
    x = special_values(math.prod(shape), dtype).reshape(shape)
    threshold = rng.keep_threshold(0.4)
    for offset in (0, 3, 2**40 + 1, TOP - math.prod(mask_shape)):
        check_all_ways(x, 77, offset, threshold, 1 / 0.6, mask_shape, affine=affine)
    expected = want(x, 77, 3, threshold, 1 / 0.6, mask_shape, affine=affine)
    out = torch.empty_like(x)
    if affine:
        got = kernels.apply_keep_affine(x, 77, 3, threshold, 1 / 0.6, *AFFINE[1:], out, mask_shape)
    else:
        got = kernels.apply_keep_mask(x, 77, 3, threshold, 1 / 0.6, out, mask_shape)
    assert got is out
    assert_same_bits(out, expected)


def _layouts(x: torch.Tensor):
    """x's values in other layouts: channels-last, every dimension reversed, and not dense."""
    yield "contiguous", x
    if x.dim() == 4:
        yield "channels_last", x.to(memory_format=torch.channels_last)
    if x.dim() >= 2:
        dims = tuple(reversed(range(x.dim())))
        yield "reversed", x.permute(dims).contiguous().permute(dims)
        yield "transposed", x.transpose(0, 1).contiguous().transpose(0, 1)
    if x.dim() >= 1:
        wide = torch.zeros(*x.shape[:-1], 2 * x.shape[-1], dtype=x.dtype)
        wide[..., ::2] = x
        yield "strided", wide[..., ::2]


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize(("shape", "mask_shape"), MASKS)
def test_broadcast_mask_of_permuted_and_non_dense_inputs(shape, mask_shape, dtype, affine):
    x = special_values(math.prod(shape), dtype).reshape(shape)
    threshold = rng.keep_threshold(0.4)
    for offset in (0, 6):
        expected = want(x, 5, offset, threshold, 1 / 0.6, mask_shape, affine=affine)
        for name, xl in _layouts(x):
            got = keep(xl, 5, offset, threshold, 1 / 0.6, mask_shape, affine=affine)
            assert_same_bits(got, expected)
            if _dense(xl):
                assert got.stride() == xl.stride(), name
            y = xl.clone() if _dense(xl) else xl
            kept = keep(y, 5, offset, threshold, 1 / 0.6, mask_shape, affine=affine, inplace=True)
            assert kept is y
            assert_same_bits(y, expected)


def _profiled_ops(call) -> set[str]:
    from torch.profiler import profile

    with profile() as prof:
        call()
    return {event.name for event in prof.events()}


def test_patterns_take_the_one_pass_kernel_and_others_the_generic_path():
    # The generic path builds the multiplier of the mask's shape with at::ones and multiplies with
    # torch's own operators; the one-pass kernels call neither.
    threshold = rng.keep_threshold(0.5)
    seed = seed_tensor(1)
    cl = torch.channels_last
    cases = [(shape, mask, torch.contiguous_format, True) for shape, mask in ONE_PASS[:9]]
    cases += [(shape, mask, torch.contiguous_format, False) for shape, mask in GENERIC]
    cases += [
        ((4, 6, 5, 7), (4, 6, 1, 1), cl, True),  # channel dropout of NHWC memory: a = N, c = C
        ((4, 3, 5, 6), (4, 1, 1, 1), cl, True),  # drop-path
        # masked dimensions out of their logical order in memory: the generic path
        ((4, 3, 5, 6), (4, 3, 5, 6), cl, False),
        ((2, 3, 4, 5), (1, 3, 1, 5), cl, False),
    ]
    for shape, mask_shape, memory_format, one_pass in cases:
        x = torch.randn(shape).to(memory_format=memory_format)
        for affine in (False, True):
            if affine:
                args = (x, seed, 0, threshold, *AFFINE, list(mask_shape))
                names = _profiled_ops(lambda: ops.keep_affine(*args))  # noqa: B023
            else:
                args = (x, seed, 0, threshold, 2.0, list(mask_shape))
                names = _profiled_ops(lambda: ops.keep(*args))  # noqa: B023
            assert ("aten::ones" not in names) == one_pass, (shape, mask_shape, memory_format)
    # A non-dense x takes the generic path.
    strided = torch.randn(4, 6, 5, 14)[..., ::2]
    assert "aten::ones" in _profiled_ops(lambda: ops.keep(strided, seed, 0, threshold, 2.0,
                                                          [4, 6, 1, 1]))  # fmt: skip


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    ("shape", "mask_shape"),
    [
        ((8, 16, 32, 40), (8, 16, 1, 1)),  # more than one parallel task (2**15 elements each)
        ((8, 32, 40, 16), (8, 1, 1, 16)),
        ((3, 5000, 7), (3, 1, 7)),  # short rows: tasks start and end inside rows
        ((90, 8, 100), (1, 8, 100)),
        ((8, 16, 32, 40), (1, 1, 1, 1)),  # one multiplier, split over the tasks
        ((40000, 2), (40000, 1)),  # a mask of more than 2**15 elements, drawn in parallel
        ((2, 40000), (1, 40000)),
        ((8, 16, 32, 40), (8, 1, 32, 1)),  # generic path
    ],
)
def test_broadcast_mask_large_and_parallel(shape, mask_shape, threads, affine):
    torch.set_num_threads(threads)
    x = special_values(math.prod(shape), torch.float32).reshape(shape)
    threshold = rng.keep_threshold(0.3)
    for offset in (0, 5):
        check_all_ways(x, 2**64 - 9, offset, threshold, 1 / 0.7, mask_shape, affine=affine)
    if x.dim() == 4:  # channels-last activations of the same values
        cl = x.to(memory_format=torch.channels_last)
        got = keep(cl, 2**64 - 9, 5, threshold, 1 / 0.7, mask_shape, affine=affine)
        assert got.is_contiguous(memory_format=torch.channels_last)
        assert_same_bits(got, want(x, 2**64 - 9, 5, threshold, 1 / 0.7, mask_shape, affine=affine))


@st.composite
def broadcast_cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 7), min_size=0, max_size=5)))
    broadcast = draw(st.lists(st.booleans(), min_size=len(shape), max_size=len(shape)))
    order = draw(st.permutations(range(len(shape))))
    return shape, tuple(1 if b else size for size, b in zip(shape, broadcast)), tuple(order)


@settings(max_examples=150, deadline=None)
@given(
    case=broadcast_cases(),
    dtype=st.sampled_from(DTYPES),
    offset=st.one_of(st.integers(0, 2**40), st.integers(0, 5).map(lambda d: TOP - 20000 - d)),
    seed=st.integers(-(2**63), 2**64 - 1),
    threshold=st.one_of(st.sampled_from([0, 2**32]), st.integers(0, 2**32)),
    scale=st.sampled_from([0.0, 1.0, 1 / 0.7, 3.5, 1e-3]),
    layout=st.sampled_from(["contiguous", "permuted", "strided"]),
    in_place=st.booleans(),
    affine=st.booleans(),
    threads=st.sampled_from([1, 2]),
)
def test_broadcast_mask_property(
    case, dtype, offset, seed, threshold, scale, layout, in_place, affine, threads
):
    torch.set_num_threads(threads)
    shape, mask_shape, order = case
    x = special_values(math.prod(shape), dtype).reshape(shape)
    expected = want(x, seed, offset, threshold, scale, mask_shape, affine=affine)
    if layout == "permuted":  # dense in the memory order `order`
        inverse = [order.index(d) for d in range(len(order))]
        x = x.permute(order).contiguous().permute(inverse)
    elif layout == "strided" and x.dim():
        wide = torch.zeros(*shape[:-1], 2 * shape[-1], dtype=dtype)
        wide[..., 1::2] = x
        x = wide[..., 1::2]
    source = x.clone()
    if in_place:
        got = keep(x, seed, offset, threshold, scale, mask_shape, affine=affine, inplace=True)
        assert got is x
    else:
        got = keep(x, seed, offset, threshold, scale, mask_shape, affine=affine)
        assert torch.equal(x.view(INT_VIEW[dtype]), source.view(INT_VIEW[dtype]))
        if _dense(x):
            assert got.stride() == x.stride()
    assert_same_bits(got, expected)


def test_extreme_thresholds_of_the_affine_map_and_nan():
    x = torch.tensor([[1.0, -2.0, float("nan"), float("inf"), -0.0]] * 6)
    dropped = keep(x, 3, 0, 2**32, AFFINE[0], (6, 1), affine=True)
    assert_same_bits(dropped, x * 0.0 + AFFINE[2])  # NaN * 0 and Inf * 0 stay NaN
    kept = keep(x, 3, 0, 0, AFFINE[0], (1, 5), affine=True)
    assert_same_bits(kept, x * AFFINE[0] + AFFINE[1])
    generic = torch.stack([x] * 3, 1)  # (6, 3, 5) with the mask (1, 3, 1): generic path
    assert_same_bits(keep(generic, 3, 0, 2**32, AFFINE[0], (1, 3, 1), affine=True),
                     generic * 0.0 + AFFINE[2])  # fmt: skip
    assert_same_bits(keep(generic, 3, 0, 0, AFFINE[0], (1, 3, 1), affine=True),
                     generic * AFFINE[0] + AFFINE[1])  # fmt: skip


@pytest.mark.parametrize("mask_shape", [(6, 1), (6, 5), (1, 1), (1, 5)])
@pytest.mark.parametrize("affine", [False, True])
def test_broadcast_in_place_bumps_the_autograd_version(mask_shape, affine):
    y = torch.randn(6, 5)
    before = y._version
    keep(y, 1, 0, rng.keep_threshold(0.5), 2.0, mask_shape, affine=affine, inplace=True)
    assert y._version > before


def test_in_place_write_is_seen_by_autograd():
    w = torch.randn(5, requires_grad=True)
    y = torch.randn(5)
    z = w * y  # saves y
    keep(y, 1, 0, 2**32, 0.0, inplace=True)  # zeroes y
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.sum().backward()


def test_helpers_write_an_overlapping_out():
    threshold = rng.keep_threshold(0.5)
    base = torch.randn(1000)
    x, out = base[:900].view(30, 30), base[100:].view(30, 30)
    expected = reference.apply_keep_mask(x.clone(), 4, 9, threshold, 2.0, None, (30, 1))
    kernels.apply_keep_mask(x, 4, 9, threshold, 2.0, out, (30, 1))
    assert_same_bits(out, expected)
    base = torch.randn(1000)
    x, out = base[:900].view(30, 30), base[100:].view(30, 30)
    expected = reference.apply_keep_affine(x.clone(), 4, 9, threshold, *AFFINE, None, (1, 30))
    kernels.apply_keep_affine(x, 4, 9, threshold, *AFFINE, out, (1, 30))
    assert_same_bits(out, expected)


# -- forked children: the kernels run on the calling thread, with the same bits -------------------
def _fork_results(x, threshold):
    # The library's own kernels only: torch's own parallel operators (the generic path's at::mul,
    # normal's Box-Muller) cannot start a GNU OpenMP team in a forked child either.
    cases = [(8, 16, 1, 1), (8, 1, 1, 40), (1, 1, 1, 1), None]
    results = [keep(x, 5, 1, threshold, 2.0, m, affine=a) for m in cases for a in (False, True)]
    results.append(kernels.stream_words(GRAIN * 3, 5, 1))
    results.extend(ops._normal_uniforms(GRAIN * 3, seed_tensor(5), 1))
    results.append(kernels.bias_dropout_add(x, x[0, 0, 0], x, 5, 1, threshold, 2.0))
    return results


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_forked_children_give_the_same_bits(tmp_path):
    torch.set_num_threads(2)
    x = special_values(8 * 16 * 32 * 40, torch.float32).reshape(8, 16, 32, 40)
    threshold = rng.keep_threshold(0.3)
    expected = _fork_results(x, threshold)  # the parent's thread team has run
    path = tmp_path / "child.pt"
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            with open(path, "wb") as f:
                pickle.dump(_fork_results(x, threshold), f)
            code = 0
        finally:
            os._exit(code)
    deadline = time.monotonic() + 120
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung (a thread team started in a forked child?)")
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(status) == 0
    with open(path, "rb") as f:
        got = pickle.load(f)
    for g, w in zip(got, expected, strict=True):
        if w.dtype == torch.int64:
            assert torch.equal(g, w)
        else:
            assert_same_bits(g, w)


# -- the C++ autograd nodes: the seed and the scalars kept, backward the operator again -----------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("seed", "offset", "p"), [(3, 0, 0.5), (2**64 - 5, 11, 0.3), (-(2**63), 2**40, 0.9)]
)
def test_keep_with_a_gradient_takes_the_cpp_node_and_the_reference_values(dtype, seed, offset, p):
    threshold, scale = rng.keep_threshold(p), 1.0 / (1.0 - p)
    for mask_shape in [(37, 91), (37, 1), (1, 91)]:
        x = torch.randn(37, 91).to(dtype).requires_grad_()
        grad = torch.randn(37, 91).to(dtype).requires_grad_()
        y = keep(x, seed, offset, threshold, scale, mask_shape)
        assert type(y.grad_fn).__name__ == "CppFunction"  # no Python autograd.Function
        (gx,) = torch.autograd.grad(y, x, grad, create_graph=True)
        assert_same_bits(y.detach(), want(x.detach(), seed, offset, threshold, scale, mask_shape))
        expected = want(grad.detach(), seed, offset, threshold, scale, mask_shape)
        assert_same_bits(gx.detach(), expected)
        # The backward is the op again, differentiable in the incoming gradient (double backward).
        (ggrad,) = torch.autograd.grad(gx.sum(), grad)
        ones = torch.ones_like(x).detach()
        assert_same_bits(ggrad, want(ones, seed, offset, threshold, scale, mask_shape))


def test_affine_and_bias_dropout_add_take_the_cpp_nodes():
    threshold = rng.keep_threshold(0.4)
    x = torch.randn(6, 3, 10, requires_grad=True)
    grad = torch.randn(6, 3, 10)
    y = keep(x, 9, 4, threshold, AFFINE[0], (6, 1, 1), affine=True)
    assert type(y.grad_fn).__name__ == "CppFunction"
    (gx,) = torch.autograd.grad(y, x, grad)
    assert_same_bits(gx, want(grad, 9, 4, threshold, AFFINE[0], (6, 1, 1)))
    bias = torch.randn(10, requires_grad=True)
    residual = torch.randn(6, 3, 10, requires_grad=True)
    z = ops.bias_dropout_add(x, bias, residual, seed_tensor(9), 4, threshold, 2.0)
    assert type(z.grad_fn).__name__ == "CppFunction"
    gx, gb, gr = torch.autograd.grad(z, (x, bias, residual), grad)
    expected = want(grad, 9, 4, threshold, 2.0)
    assert_same_bits(gx, expected)
    assert torch.allclose(gb, expected.sum((0, 1)))
    assert torch.equal(gr, grad)
    # Non-contiguous inputs take the node too, with the reference's values.
    wide = torch.randn(10, 6).t().requires_grad_()
    w = keep(wide, 2, 0, threshold, 2.0)
    assert type(w.grad_fn).__name__ == "CppFunction"
    assert_same_bits(w.detach(), want(wide.detach().contiguous(), 2, 0, threshold, 2.0))


def test_loading_the_library_again_keeps_the_operators():
    from dropkit.kernels import cpu

    assert cpu.load()  # a second load registers nothing new and does not abort
    x = torch.randn(40)
    assert_same_bits(keep(x, 1, 2, 2**31, 2.0), want(x, 1, 2, 2**31, 2.0))
