"""The C++ CPU backend equals the reference bit for bit: every op, dtype, size, offset, threads."""

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
