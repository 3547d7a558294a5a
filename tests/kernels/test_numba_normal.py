"""The numba stream normals agree with the reference definition, dropkit.rng.normal."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import dropkit
from dropkit import rng
from dropkit.kernels.numba_normal import normal


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(0, 9000),
    seed=st.integers(-(2**63), 2**64 - 1),
    offset=st.integers(0, 2**40),
)
def test_matches_reference(n, seed, offset):
    fast = normal((n,), seed, offset, dtype=torch.float64)
    ref = rng.normal((n,), seed, offset, dtype=torch.float64)
    # Same words; log/cos from another libm may differ in the last float64 bit.
    assert torch.allclose(fast, ref, rtol=1e-13, atol=1e-14)


def test_shape_dtype_and_reference_backend():
    fast = normal((3, 5, 7), 11, 2)
    assert fast.shape == (3, 5, 7) and fast.dtype == torch.float32
    assert torch.allclose(fast, rng.normal((3, 5, 7), 11, 2))
    previous = dropkit.get_backend()
    dropkit.set_backend("reference")
    try:
        assert torch.equal(normal((3, 5, 7), 11, 2), rng.normal((3, 5, 7), 11, 2))
    finally:
        dropkit.set_backend(previous)
    with pytest.raises(ValueError, match="offset must be >= 0"):
        normal((2,), 1, -1)
