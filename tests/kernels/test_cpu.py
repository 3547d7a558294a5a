"""The C++ CPU backend equals the reference bit for bit: every op, dtype, size, offset, threads."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dropkit import rng
from dropkit.kernels import cpu, reference

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
INT_VIEW = {
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float32: torch.int32,
    torch.float64: torch.int64,
}
TOP = 2**63 - 1  # offset + numel may reach this (dropkit.kernels.MAX_STREAM_INDEX)


@pytest.fixture(scope="module", autouse=True)
def _built():
    # Every test here is about the C++ kernels: fail loudly rather than compare the reference with
    # itself when they could not be built.
    assert cpu.available(), cpu._state.failed


def assert_same_bits(got: torch.Tensor, want: torch.Tensor) -> None:
    """Equal bit patterns; NaNs need only be NaN at the same places (torch's own float->bfloat16
    conversions give different NaN payloads in their vector and scalar loops)."""
    assert got.dtype == want.dtype and got.shape == want.shape
    nan = torch.isnan(want)
    assert torch.equal(torch.isnan(got), nan)
    view = INT_VIEW[got.dtype]
    assert torch.equal(got[~nan].view(view), want[~nan].view(view))


def special_values(n: int, dtype: torch.dtype) -> torch.Tensor:
    x = torch.randn(n, dtype=torch.float64) * 3
    specials = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan"), 1e-30, 6e4])
    x[: min(n, len(specials))] = specials[: min(n, len(specials))].to(torch.float64)
    return x.to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n", [1, 3, 4, 5, 1023, 1025, (1 << 17) + 3])
def test_keep_mask_matches_reference(dtype, threads, n):
    torch.set_num_threads(threads)
    x = special_values(n, dtype)
    threshold = rng.keep_threshold(0.37)
    for offset in (0, 1, 7, 2**40 + 3):
        want = reference.apply_keep_mask(x, 12345, offset, threshold, 1 / 0.63)
        assert_same_bits(cpu.apply_keep_mask(x, 12345, offset, threshold, 1 / 0.63), want)
        out = torch.empty_like(x)
        assert cpu.apply_keep_mask(x, 12345, offset, threshold, 1 / 0.63, out=out) is out
        assert_same_bits(out, want)
        y = x.clone()
        assert cpu.apply_keep_mask(y, 12345, offset, threshold, 1 / 0.63, out=y) is y
        assert_same_bits(y, want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_offsets_at_the_top_of_the_stream(dtype):
    # The last element may have stream index 2**63 - 1 - 1 (offset + numel <= 2**63 - 1).
    x = special_values(37, dtype)
    threshold = rng.keep_threshold(0.5)
    for n in (1, 5, 37):
        for offset in (TOP - n, TOP - n - 1, TOP - n - 3):
            want = reference.apply_keep_mask(x[:n], -3, offset, threshold, 2.0)
            assert_same_bits(cpu.apply_keep_mask(x[:n], -3, offset, threshold, 2.0), want)
            y = x[:n].clone()
            cpu.apply_keep_mask(y, -3, offset, threshold, 2.0, out=y)
            assert_same_bits(y, want)
            words = cpu.stream_words(n, -3, offset)
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
def test_keep_mask_property(dtype, n, offset, seed, p, in_place, threads):
    torch.set_num_threads(threads)
    x = special_values(n, dtype)
    threshold = rng.keep_threshold(p)
    scale = 0.0 if p == 1 else 1 / (1 - p)
    want = reference.apply_keep_mask(x, seed, offset, threshold, scale)
    if in_place:
        got = x.clone()
        cpu.apply_keep_mask(got, seed, offset, threshold, scale, out=got)
    else:
        got = cpu.apply_keep_mask(x, seed, offset, threshold, scale)
    assert_same_bits(got, want)


def test_extreme_thresholds_keep_all_or_nothing_and_nan_stays_nan():
    x = torch.tensor([1.0, -2.0, float("nan"), float("inf"), -0.0] * 9)
    none = cpu.apply_keep_mask(x, 3, 0, 2**32, 0.0)
    assert_same_bits(none, x * 0.0)
    assert torch.equal(cpu.apply_keep_mask(x[:2], 3, 0, 0, 1.0), x[:2])


@pytest.mark.parametrize("threads", [1, 2])
def test_stream_words_match_reference(threads):
    torch.set_num_threads(threads)
    for n, offset in [(0, 0), (1, 3), (1001, 5), ((1 << 17) + 1, 2**35 + 1)]:
        got = cpu.stream_words(n, 2**64 - 5, offset)
        assert got.dtype == torch.int64
        assert torch.equal(got, rng.stream_words(n, 2**64 - 5, offset))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2])
def test_normal_matches_reference(dtype, threads):
    torch.set_num_threads(threads)
    for shape, offset in [((0,), 0), ((1,), 0), ((3, 77), 5), ((100_003,), 2**40 + 1)]:
        got = cpu.normal(shape, 9, offset, "cpu", dtype)
        assert_same_bits(got, rng.normal(shape, 9, offset, "cpu", dtype))
    top = (TOP - 1) // 2 - 7  # 2 * (offset + numel) <= 2**63 - 1
    assert_same_bits(cpu.normal((7,), 1, top, None, dtype), rng.normal((7,), 1, top, None, dtype))


@settings(max_examples=40, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    rows=st.integers(0, 40),
    hidden=st.integers(1, 70),
    bias_rank=st.sampled_from([0, 1, 2]),
    offset=st.one_of(st.integers(0, 2**40), st.just(TOP - 40 * 70)),
    p=st.floats(0.0, 1.0),
    target=st.sampled_from(["new", "out", "x", "residual"]),
    threads=st.sampled_from([1, 2]),
)
def test_bias_dropout_add_property(dtype, rows, hidden, bias_rank, offset, p, target, threads):
    torch.set_num_threads(threads)
    x = special_values(rows * 3 * hidden, dtype).reshape(rows, 3, hidden)
    residual = torch.randn(rows, 3, hidden).to(dtype)
    bias = torch.randn((3, hidden)[2 - bias_rank :] if bias_rank else ()).to(dtype)
    threshold = rng.keep_threshold(p)
    scale = 0.0 if p == 1 else 1 / (1 - p)
    want = reference.bias_dropout_add(x, bias, residual, 7, offset, threshold, scale)
    out = {"new": None, "out": torch.empty_like(x), "x": x, "residual": residual}[target]
    got = cpu.bias_dropout_add(x, bias, residual, 7, offset, threshold, scale, out=out)
    assert out is None or got is out
    assert_same_bits(got, want)


def test_bias_dropout_add_large_parallel_and_mixed_dtypes():
    torch.set_num_threads(2)
    x, residual = torch.randn(300, 1027), torch.randn(300, 1027)
    bias = torch.randn(1027)
    threshold = rng.keep_threshold(0.1)
    want = reference.bias_dropout_add(x, bias, residual, 5, 11, threshold, 1 / 0.9)
    assert_same_bits(cpu.bias_dropout_add(x, bias, residual, 5, 11, threshold, 1 / 0.9), want)
    # A bias of another dtype goes to the reference, which widens each operand itself.
    half = x.half()
    want = reference.bias_dropout_add(half, bias, residual.half(), 5, 0, threshold, 2.0)
    got = cpu.bias_dropout_add(half, bias, residual.half(), 5, 0, threshold, 2.0)
    assert_same_bits(got, want)


def test_overlapping_out_goes_through_a_fresh_buffer():
    base = torch.randn(1000)
    x = base[:900]
    want = reference.apply_keep_mask(x.clone(), 4, 9, rng.keep_threshold(0.5), 2.0)
    cpu.apply_keep_mask(x, 4, 9, rng.keep_threshold(0.5), 2.0, out=base[100:])
    assert_same_bits(base[100:], want)


def test_out_written_in_place_bumps_the_autograd_version():
    y = torch.randn(50)
    before = y._version
    cpu.apply_keep_mask(y, 1, 0, rng.keep_threshold(0.5), 2.0, out=y)
    assert y._version > before


def test_bad_tensors_are_refused():
    x = torch.randn(6, 8)
    with pytest.raises(ValueError, match="x must be a contiguous CPU tensor"):
        cpu.apply_keep_mask(x.t(), 1, 0, 5, 1.0)
    with pytest.raises(ValueError, match="out must be a contiguous CPU tensor"):
        cpu.apply_keep_mask(x, 1, 0, 5, 1.0, out=torch.empty(8, 6).t())
    with pytest.raises(ValueError, match=r"out must have x's shape \(6, 8\)"):
        cpu.apply_keep_mask(x, 1, 0, 5, 1.0, out=torch.empty(48))
    with pytest.raises(ValueError, match="dtype torch.float32"):
        cpu.apply_keep_mask(x, 1, 0, 5, 1.0, out=torch.empty(6, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="residual must have x's shape"):
        cpu.bias_dropout_add(x, torch.zeros(8), torch.zeros(8), 1, 0, 5, 1.0)
    with pytest.raises(ValueError, match="bias must have the trailing shape"):
        cpu.bias_dropout_add(x, torch.zeros(6), torch.zeros(6, 8), 1, 0, 5, 1.0)


# -- broadcast masks and the affine map (channel dropout, drop-path, locked and alpha dropout) ----
# (x's shape, mask_shape, the pattern cpu.broadcast_pattern finds: None where there is none)
MASKS = [
    ((4, 6, 5, 7), (4, 6, 1, 1), (24, 35, 1)),  # channels first: a = N C, b = H W
    ((4, 5, 7, 6), (4, 1, 1, 6), (4, 35, 6)),  # channels last: c = C
    ((9, 4, 6), (1, 4, 6), (1, 9, 24)),  # locked dropout (T, N, C)
    ((4, 9, 6), (4, 1, 6), (4, 9, 6)),  # locked dropout, batch first
    ((4, 3, 5, 6), (4, 1, 1, 1), (4, 90, 1)),  # drop-path
    ((4, 3, 5, 6), (1, 1, 1, 1), (1, 360, 1)),  # stochastic depth "batch": one word
    ((4, 3, 5, 6), (4, 3, 5, 6), (360, 1, 1)),  # x's own shape
    ((1, 3, 1, 6), (1, 1, 1, 6), (1, 3, 6)),  # size-1 dimensions belong to either kind
    ((4, 1, 5, 6), (4, 1, 1, 6), (4, 5, 6)),
    ((5, 1), (1, 1), (1, 5, 1)),
    ((7,), (7,), (7, 1, 1)),
    ((), (), (1, 1, 1)),
    ((4, 5, 6, 7), (4, 1, 6, 1), None),  # broadcast along two separate groups: generic path
    ((3, 4, 5), (1, 4, 1), None),
]
AFFINE = (1.3, 0.4, -0.7)  # a, kept_shift, dropped_value


def both(x, seed, offset, threshold, scale, out, mask_shape, affine):
    """(cpu result, reference result) of apply_keep_mask, or of apply_keep_affine (a = scale)."""
    if affine:
        args = (x, seed, offset, threshold, scale, *AFFINE[1:], out, mask_shape)
        want = reference.apply_keep_affine(*args[:-2], None, mask_shape)
        return cpu.apply_keep_affine(*args), want
    want = reference.apply_keep_mask(x, seed, offset, threshold, scale, None, mask_shape)
    return cpu.apply_keep_mask(x, seed, offset, threshold, scale, out, mask_shape), want


@pytest.mark.parametrize(("shape", "mask_shape", "pattern"), MASKS)
def test_broadcast_pattern(shape, mask_shape, pattern):
    assert cpu.broadcast_pattern(shape, mask_shape) == pattern


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("shape", "mask_shape", "pattern"), MASKS)
def test_broadcast_mask_matches_reference(shape, mask_shape, pattern, dtype, affine):
    x = special_values(math.prod(shape), dtype).reshape(shape)
    threshold = rng.keep_threshold(0.4)
    for offset in (0, 3, 2**40 + 1, TOP - math.prod(mask_shape)):
        got, want = both(x, 77, offset, threshold, 1 / 0.6, None, mask_shape, affine)
        assert_same_bits(got, want)
        out = torch.empty_like(x)
        got, _ = both(x, 77, offset, threshold, 1 / 0.6, out, mask_shape, affine)
        assert got is out
        assert_same_bits(out, want)
        y = x.clone()
        got, _ = both(y, 77, offset, threshold, 1 / 0.6, y, mask_shape, affine)
        assert got is y
        assert_same_bits(y, want)


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
        got, want = both(x, 2**64 - 9, offset, threshold, 1 / 0.7, None, mask_shape, affine)
        assert_same_bits(got, want)
        y = x.clone()
        both(y, 2**64 - 9, offset, threshold, 1 / 0.7, y, mask_shape, affine)
        assert_same_bits(y, want)


@st.composite
def broadcast_cases(draw):
    shape = tuple(draw(st.lists(st.integers(1, 7), min_size=0, max_size=5)))
    broadcast = draw(st.lists(st.booleans(), min_size=len(shape), max_size=len(shape)))
    return shape, tuple(1 if b else size for size, b in zip(shape, broadcast))


@settings(max_examples=150, deadline=None)
@given(
    case=broadcast_cases(),
    dtype=st.sampled_from(DTYPES),
    offset=st.one_of(st.integers(0, 2**40), st.integers(0, 5).map(lambda d: TOP - 20000 - d)),
    seed=st.integers(-(2**63), 2**64 - 1),
    threshold=st.one_of(st.sampled_from([0, 2**32]), st.integers(0, 2**32)),
    scale=st.sampled_from([0.0, 1.0, 1 / 0.7, 3.5, 1e-3]),
    target=st.sampled_from(["new", "out", "x"]),
    affine=st.booleans(),
    threads=st.sampled_from([1, 2]),
)
def test_broadcast_mask_property(
    case, dtype, offset, seed, threshold, scale, target, affine, threads
):
    torch.set_num_threads(threads)
    shape, mask_shape = case
    x = special_values(math.prod(shape), dtype).reshape(shape)
    source = x.clone()
    out = {"new": None, "out": torch.empty_like(x), "x": x}[target]
    got, want = both(x, seed, offset, threshold, scale, out, mask_shape, affine)
    assert out is None or got is out
    assert_same_bits(got, want)
    if target != "x":
        assert torch.equal(x.view(INT_VIEW[dtype]), source.view(INT_VIEW[dtype]))


def test_patterns_take_the_one_pass_kernel_and_others_the_generic_path(monkeypatch):
    calls = []
    kernel = cpu._keep_broadcast
    monkeypatch.setattr(cpu, "_keep_broadcast", lambda *a: calls.append(a[5]) or kernel(*a))
    x = torch.randn(4, 5, 6, 7)
    for mask_shape in [(4, 5, 1, 1), (4, 1, 1, 7), (4, 1, 6, 1)]:
        cpu.apply_keep_mask(x, 1, 0, rng.keep_threshold(0.5), 2.0, None, mask_shape)
        cpu.apply_keep_affine(x, 1, 0, rng.keep_threshold(0.5), *AFFINE, None, mask_shape)
    assert calls == [(20, 42, 1), (20, 42, 1), (4, 30, 7), (4, 30, 7)]
    cpu.apply_keep_affine(x, 1, 0, rng.keep_threshold(0.5), *AFFINE)  # x's shape: one pass too
    assert calls[-1] == (840, 1, 1)


def test_extreme_thresholds_of_the_affine_map_and_nan():
    x = torch.tensor([[1.0, -2.0, float("nan"), float("inf"), -0.0]] * 6)
    dropped = cpu.apply_keep_affine(x, 3, 0, 2**32, *AFFINE, None, (6, 1))
    assert_same_bits(dropped, x * 0.0 + AFFINE[2])  # NaN * 0 and Inf * 0 stay NaN
    kept = cpu.apply_keep_affine(x, 3, 0, 0, *AFFINE, None, (1, 5))
    assert_same_bits(kept, x * AFFINE[0] + AFFINE[1])


def test_broadcast_overlapping_out_and_autograd_version():
    base = torch.randn(1000)
    x, out = base[:900].view(30, 30), base[100:].view(30, 30)
    threshold = rng.keep_threshold(0.5)
    want = reference.apply_keep_mask(x.clone(), 4, 9, threshold, 2.0, None, (30, 1))
    cpu.apply_keep_mask(x, 4, 9, threshold, 2.0, out, (30, 1))
    assert_same_bits(out, want)
    base = torch.randn(1000)
    x, out = base[:900].view(30, 30), base[100:].view(30, 30)
    want = reference.apply_keep_affine(x.clone(), 4, 9, threshold, *AFFINE, None, (1, 30))
    cpu.apply_keep_affine(x, 4, 9, threshold, *AFFINE, out, (1, 30))
    assert_same_bits(out, want)
    y = torch.randn(6, 5)
    for call in (
        lambda: cpu.apply_keep_mask(y, 1, 0, threshold, 2.0, y, (6, 1)),
        lambda: cpu.apply_keep_affine(y, 1, 0, threshold, *AFFINE, y, (6, 1)),
        lambda: cpu.apply_keep_affine(y, 1, 0, threshold, *AFFINE, y),
    ):
        before = y._version
        call()
        assert y._version > before


def test_serial_mode_of_forked_children_gives_the_same_bits(monkeypatch):
    torch.set_num_threads(2)
    x = special_values(8 * 16 * 32 * 40, torch.float32).reshape(8, 16, 32, 40)
    threshold = rng.keep_threshold(0.3)
    cases = [(8, 16, 1, 1), (8, 1, 1, 40), (1, 1, 1, 1), None]
    want = [both(x, 5, 1, threshold, 2.0, None, m, affine)[0] for m in cases for affine in (0, 1)]
    monkeypatch.setattr(cpu._state, "serial", 1)
    got = [both(x, 5, 1, threshold, 2.0, None, m, affine)[0] for m in cases for affine in (0, 1)]
    for g, w in zip(got, want):
        assert_same_bits(g, w)


def test_bad_tensors_are_refused_by_the_affine_map():
    x = torch.randn(6, 8)
    with pytest.raises(ValueError, match="apply_keep_affine: x must be a contiguous CPU tensor"):
        cpu.apply_keep_affine(x.t(), 1, 0, 5, *AFFINE)
    with pytest.raises(ValueError, match=r"apply_keep_affine: out must have x's shape \(6, 8\)"):
        cpu.apply_keep_affine(x, 1, 0, 5, *AFFINE, torch.empty(48), (6, 1))


# -- dropkit_cpu::keep: dropout with a gradient as one C++ op with its autograd node -------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    ("seed", "offset", "p"), [(3, 0, 0.5), (2**64 - 5, 11, 0.3), (-(2**63), 2**40, 0.9)]
)
def test_dropout_with_a_gradient_takes_the_cpp_node_and_the_reference_values(
    dtype, seed, offset, p
):
    from dropkit import functional as DF

    x = torch.randn(37, 91).to(dtype).requires_grad_()
    grad = torch.randn(37, 91).to(dtype).requires_grad_()
    y = DF.dropout(x, p, seed=seed, offset=offset)
    assert type(y.grad_fn).__name__ == "CppFunction"  # no Python autograd.Function
    (gx,) = torch.autograd.grad(y, x, grad, create_graph=True)
    threshold, scale = rng.keep_threshold(p), 1.0 / (1.0 - p)
    assert torch.equal(
        y.detach(), reference.apply_keep_mask(x.detach(), seed, offset, threshold, scale)
    )
    assert torch.equal(
        gx.detach(), reference.apply_keep_mask(grad.detach(), seed, offset, threshold, scale)
    )
    # The backward is the op again, differentiable in the incoming gradient (double backward).
    (ggrad,) = torch.autograd.grad(gx.sum(), grad)
    ones = torch.ones_like(x).detach()
    assert torch.equal(ggrad, reference.apply_keep_mask(ones, seed, offset, threshold, scale))


def test_the_cpp_node_is_only_taken_where_it_applies():
    from dropkit import functional as DF

    wide = torch.randn(8, 6).t().requires_grad_()  # not contiguous: the Python rule, same values
    y = DF.dropout(wide, 0.5, seed=1)
    assert type(y.grad_fn).__name__ != "CppFunction"
    assert torch.equal(y.detach(), DF.dropout(wide.detach().contiguous(), 0.5, seed=1))
    big = torch.empty(8 << 20)  # 32 MiB: empty_output's huge pages, through the ctypes kernel
    assert cpu.apply_keep_mask_autograd(big, 1, 0, 2**31, 2.0) is NotImplemented
    maps = torch.randn(2, 3, 4, 4, requires_grad=True)  # a broadcast mask: the Python rule
    assert type(DF.dropout2d(maps, 0.5, seed=1).grad_fn).__name__ != "CppFunction"


def test_registering_the_op_again_fails_softly():
    cpu.available()
    op = cpu._state.keep_op
    assert op is not None
    # A library loaded later in the process finds the op and does not register it again ...
    assert cpu._register_keep_op(cpu._state.lib) is op
    # ... and a second registration is refused with an error code, not by aborting the process.
    assert cpu._state.lib.dropkit_register_ops() != 0
    x = torch.randn(5, requires_grad=True)
    assert torch.equal(
        op(x, 1, 2, 0, 2**31, 2.0), cpu.apply_keep_mask_autograd(x, 1 + (2 << 32), 0, 2**31, 2.0)
    )
