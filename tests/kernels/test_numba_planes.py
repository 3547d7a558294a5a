"""The one-pass plane kernel equals torch's two-pass broadcast arithmetic bit for bit."""

import contextlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import dropkit.functional as DF
from dropkit import kernels
from dropkit.kernels import numba_planes


def _reference(x, scale, shift):
    shape = list(scale.shape) + [1] * (x.dim() - scale.dim())
    return (x * scale.reshape(shape)).add_(shift.reshape(shape))


@contextlib.contextmanager
def forced_parallel(parallel: bool):
    original = numba_planes.use_parallel
    numba_planes.use_parallel = lambda n: parallel
    try:
        yield
    finally:
        numba_planes.use_parallel = original


@settings(max_examples=40, deadline=None)
@given(
    planes=st.integers(1, 40),
    plane=st.integers(1, 3000),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    parallel=st.booleans(),
)
def test_plane_affine_equals_two_pass_torch(planes, plane, dtype, parallel):
    generator = torch.Generator().manual_seed(planes * 7919 + plane)
    x = torch.randn(planes, plane, generator=generator, dtype=dtype) * 1e3
    scale = torch.randn(planes, generator=generator, dtype=dtype)
    scale[::3] = 0.0  # dropped planes
    shift = torch.randn(planes, generator=generator, dtype=dtype)
    with forced_parallel(parallel):
        got = numba_planes.plane_affine(x, scale, shift)
    assert torch.equal(got, _reference(x, scale, shift))


def test_nan_and_inf_propagate_as_in_torch():
    x = torch.tensor([[float("nan"), 1.0, float("inf")], [float("-inf"), 2.0, float("nan")]])
    scale = torch.tensor([0.0, 2.0])
    shift = torch.tensor([0.5, -1.0])
    got = numba_planes.plane_affine(x, scale, shift)
    want = _reference(x, scale, shift)
    assert torch.equal(got.isnan(), want.isnan())
    assert torch.equal(got.nan_to_num(), want.nan_to_num())
    assert got[0, 0].isnan() and got[0, 2].isnan()  # a dropped NaN or inf becomes NaN, as in torch


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(3, 4, 5, 6), (2, 3, 70000), (5, 1, 2, 2, 2)])
def test_feature_alpha_dropout_fast_path_equals_reference_backend(dtype, shape):
    x = torch.randn(shape, dtype=dtype)
    outputs = []
    for backend in ("numba", "reference"):
        kernels.set_backend(backend)
        try:
            outputs.append(DF.feature_alpha_dropout(x, 0.3, True, seed=21))
        finally:
            kernels.set_backend("auto")
    assert torch.equal(outputs[0], outputs[1])


def test_bad_arguments_are_named():
    x = torch.randn(4, 6)
    with pytest.raises(TypeError, match="float32 or float64"):
        numba_planes.plane_affine(x.half(), torch.ones(4).half(), torch.zeros(4).half())
    with pytest.raises(ValueError, match="equal planes"):
        numba_planes.plane_affine(x, torch.ones(5), torch.zeros(5))
    with pytest.raises(ValueError, match="contiguous"):
        numba_planes.plane_affine(x.t(), torch.ones(6), torch.zeros(6))
