"""The numba backend matches the reference bit for bit: every dtype, size, offset, thread count."""

import contextlib

import numba
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dropkit import rng
from dropkit.kernels import numba_cpu, reference

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


@contextlib.contextmanager
def torch_threads(count: int):
    """The kernel follows torch's thread count; restore it afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("numel,offset", [(1, 0), (13, 3), (4096, 1), (70_001, 6), (300_007, 2)])
def test_bit_identical_to_reference(dtype, numel, offset):
    x = (torch.randn(numel) * 100).to(dtype)
    threshold = rng.keep_threshold(0.37)
    want = reference.apply_keep_mask(x, 12345, offset, threshold, 1 / 0.63)
    got = numba_cpu.apply_keep_mask(x, 12345, offset, threshold, 1 / 0.63)
    assert torch.equal(bits(got), bits(want))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_same_result_for_any_thread_count(threads, dtype):
    x = torch.randn((1 << 18) + 3, dtype=dtype)
    threshold = rng.keep_threshold(0.5)
    want = reference.apply_keep_mask(x, -7, 0, threshold, 2.0)
    with torch_threads(threads):
        got = numba_cpu.apply_keep_mask(x, -7, 0, threshold, 2.0)
    assert torch.equal(bits(got), bits(want))


@pytest.mark.parametrize("threads", [1, 2])
def test_numba_team_follows_torch_thread_count(threads):
    # A larger numba team than torch's oversubscribes the cores a user has restricted torch to.
    x = torch.randn(1 << 17)
    with torch_threads(threads):
        parallel = numba_cpu.use_parallel(x.numel())
        numba_cpu.apply_keep_mask(x, 1, 0, rng.keep_threshold(0.5), 2.0)
        team = numba.get_num_threads()
    expected = min(threads, numba.config.NUMBA_NUM_THREADS)
    assert team == expected
    assert parallel == (expected >= 2)
    assert not numba_cpu.use_parallel(100)


@pytest.mark.parametrize("numel", range(10))
@pytest.mark.parametrize("offset", range(5))
def test_tiny_tensors_and_partial_counters(numel, offset):
    # Sizes below one counter exercise the edge path alone, with either end partial.
    x = torch.randn(numel) * 10
    threshold = rng.keep_threshold(0.5)
    want = reference.apply_keep_mask(x, 77, offset, threshold, 2.0)
    assert torch.equal(bits(numba_cpu.apply_keep_mask(x, 77, offset, threshold, 2.0)), bits(want))
    y = x.clone()
    numba_cpu.apply_keep_mask(y, 77, offset, threshold, 2.0, out=y)
    assert torch.equal(bits(y), bits(want))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("numel,offset", [(4099, 1), (70_001, 5), (1 << 17, 4)])
@pytest.mark.parametrize("threads", [1, 2])
def test_in_place_matches_reference(dtype, numel, offset, threads):
    x = (torch.randn(numel) * 100).to(dtype)
    threshold = rng.keep_threshold(0.3)
    want = reference.apply_keep_mask(x, 2**64 - 5, offset, threshold, 1 / 0.7)
    y = x.clone()
    with torch_threads(threads):
        returned = numba_cpu.apply_keep_mask(y, 2**64 - 5, offset, threshold, 1 / 0.7, out=y)
    assert returned is y
    assert torch.equal(bits(y), bits(want))


def test_in_place_output_and_extreme_thresholds():
    x = torch.randn(100_000)
    want = reference.apply_keep_mask(x, 3, 0, rng.keep_threshold(0.2), 1.25)
    y = x.clone()
    numba_cpu.apply_keep_mask(y, 3, 0, rng.keep_threshold(0.2), 1.25, out=y)
    assert torch.equal(y, want)
    assert torch.equal(numba_cpu.apply_keep_mask(x, 3, 0, 2**32, 0.0), torch.zeros_like(x))
    assert torch.equal(numba_cpu.apply_keep_mask(x, 3, 0, 0, 1.0), x)


def test_special_values_and_half_rounding():
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 65504.0, 6e-8])
    for dtype in DTYPES:
        x = special.to(dtype).repeat(1000)
        want = reference.apply_keep_mask(x, 9, 0, rng.keep_threshold(0.5), 3.0)
        got = numba_cpu.apply_keep_mask(x, 9, 0, rng.keep_threshold(0.5), 3.0)
        assert torch.equal(bits(got), bits(want)), dtype


@given(
    numel=st.integers(0, 5000),
    offset=st.integers(0, 2**36),
    seed=st.integers(-(2**63), 2**63 - 1),
    p=st.floats(0, 1),
)
@settings(max_examples=40, deadline=None)
def test_property_matches_reference(numel, offset, seed, p):
    x = torch.randn(numel)
    threshold = rng.keep_threshold(p)
    want = reference.apply_keep_mask(x, seed, offset, threshold, 1.5)
    got = numba_cpu.apply_keep_mask(x, seed, offset, threshold, 1.5)
    assert torch.equal(bits(got), bits(want))


@pytest.mark.parametrize("dtype", DTYPES)
def test_broadcast_op_matches_reference(dtype):
    from dropkit.kernels import ops

    x = torch.randn(6, 5, 4, 3).to(dtype)
    for mask_shape in ([6, 5, 1, 1], [1, 5, 4, 1], [6, 5, 4, 3]):
        want = reference.apply_keep_mask(
            x, 8, 2, rng.keep_threshold(0.3), 1 / 0.7, mask_shape=tuple(mask_shape)
        )
        got = torch.ops.dropkit.broadcast_keep_mask_apply(
            x, ops.seed_tensor(8), 2, rng.keep_threshold(0.3), 1 / 0.7, mask_shape
        )
        assert torch.equal(bits(got), bits(want))


def test_rejects_what_raw_addresses_cannot_index():
    x = torch.randn(8, 6)
    with pytest.raises(ValueError, match="contiguous CPU"):
        numba_cpu.apply_keep_mask(x.t(), 1, 0, 5, 1.0)
    with pytest.raises(ValueError, match="contiguous CPU"):
        numba_cpu.apply_keep_mask(x, 1, 0, 5, 1.0, out=torch.empty(6, 8).t())
    with pytest.raises(ValueError, match="out must match"):
        numba_cpu.apply_keep_mask(x, 1, 0, 5, 1.0, out=torch.empty(47))
    with pytest.raises(ValueError, match="out must match"):
        numba_cpu.apply_keep_mask(x, 1, 0, 5, 1.0, out=torch.empty(8, 6, dtype=torch.float64))


def test_views_with_a_storage_offset():
    # The kernels index from data_ptr(), which must include the view's storage offset.
    base = torch.randn(1000)
    x = base[37:937]
    out = torch.empty(1000)
    threshold = rng.keep_threshold(0.5)
    want = reference.apply_keep_mask(x, 4, 9, threshold, 2.0)
    numba_cpu.apply_keep_mask(x, 4, 9, threshold, 2.0, out=out[50:950])
    assert torch.equal(out[50:950], want)
