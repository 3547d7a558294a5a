"""dropkit.kernels routes each call to one backend and checks the contract's arguments once."""

import os
import re
import subprocess
import sys
import types

import pytest
import torch

import dropkit
from dropkit import kernels, rng
from dropkit.kernels import cpu, reference

TOP = kernels.MAX_STREAM_INDEX


@pytest.fixture
def restore_backend():
    yield
    kernels.set_backend("auto")
    kernels._triton = None


def test_backend_names_and_errors(restore_backend):
    assert kernels.BACKENDS == ("auto", "cpu", "reference")
    for name in kernels.BACKENDS:
        dropkit.set_backend(name)
        assert dropkit.get_backend() == name
    with pytest.raises(ValueError, match="backend must be one of 'auto', 'cpu', 'reference', got"):
        dropkit.set_backend("numba")


def test_bad_environment_variable_names_itself():
    code = "import dropkit"
    env = {**os.environ, "DROPKIT_BACKEND": "gpu"}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode != 0
    assert "DROPKIT_BACKEND must be one of 'auto', 'cpu', 'reference', got 'gpu'" in run.stderr


def test_routing(restore_backend, monkeypatch):
    cpu_device, cuda, other = torch.device("cpu"), torch.device("cuda"), torch.device("meta")
    assert kernels._backend_for(cpu_device) is cpu
    assert kernels._backend_for(other) is reference
    # Without dropkit.kernels.triton_gpu (or when it cannot run) CUDA tensors use the reference.
    monkeypatch.setitem(sys.modules, "dropkit.kernels.triton_gpu", None)  # import fails
    assert kernels._backend_for(cuda) is reference
    fake = types.ModuleType("dropkit.kernels.triton_gpu")
    fake.available = lambda: False
    kernels._triton = None
    monkeypatch.setitem(sys.modules, "dropkit.kernels.triton_gpu", fake)
    assert kernels._backend_for(cuda) is reference
    fake.available = lambda: True
    kernels._triton = None
    assert kernels._backend_for(cuda) is fake
    kernels.set_backend("cpu")
    assert kernels._backend_for(cpu_device) is cpu and kernels._backend_for(cuda) is reference
    kernels.set_backend("reference")
    assert kernels._backend_for(cpu_device) is reference


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_every_entry_point_routes_to_the_same_bits(restore_backend, backend):
    kernels.set_backend(backend)
    x = torch.randn(5, 7)
    t = rng.keep_threshold(0.4)
    assert torch.equal(
        kernels.apply_keep_mask(x, 3, 11, t, 1 / 0.6),
        reference.apply_keep_mask(x, 3, 11, t, 1 / 0.6),
    )
    assert torch.equal(kernels.stream_words(9, 3, 2), rng.stream_words(9, 3, 2))
    assert torch.equal(kernels.normal((4, 3), 3, 2), rng.normal((4, 3), 3, 2))
    bias, residual = torch.randn(7), torch.randn(5, 7)
    assert torch.equal(
        kernels.bias_dropout_add(x, bias, residual, 3, 0, t, 2.0),
        reference.bias_dropout_add(x, bias, residual, 3, 0, t, 2.0),
    )
    for mask_shape in [None, (5, 1), (1, 7), (5, 7), [1, 1]]:
        assert torch.equal(
            kernels.apply_keep_mask(x, 3, 11, t, 2.0, mask_shape=mask_shape),
            reference.apply_keep_mask(x, 3, 11, t, 2.0, mask_shape=mask_shape),
        )
        assert torch.equal(
            kernels.apply_keep_affine(x, 3, 11, t, 1.5, 0.25, -0.5, mask_shape=mask_shape),
            reference.apply_keep_affine(x, 3, 11, t, 1.5, 0.25, -0.5, mask_shape=mask_shape),
        )


def test_stream_bounds_are_checked_for_every_backend(restore_backend):
    x = torch.ones(10)
    for backend in kernels.BACKENDS:
        kernels.set_backend(backend)
        kernels.apply_keep_mask(x, 1, TOP - 10, 0, 1.0)  # the last allowed offset
        with pytest.raises(ValueError, match=r"offset \+ numel <= 2\*\*63 - 1, got offset=.*=10"):
            kernels.apply_keep_mask(x, 1, TOP - 9, 0, 1.0)
        with pytest.raises(ValueError, match="offset must be >= 0"):
            kernels.bias_dropout_add(x, x, x, 1, -1, 0, 1.0)
        with pytest.raises(ValueError, match=r"offset=-2"):
            kernels.stream_words(3, 1, -2)
        with pytest.raises(ValueError, match=r"numel must be >= 0, got -1"):
            kernels.stream_words(-1, 1)
        with pytest.raises(ValueError, match=r"2 \* \(offset \+ numel\)"):
            kernels.normal((4,), 1, TOP // 2)
        with pytest.raises(
            ValueError, match=r"threshold must be in \[0, 2\*\*32\], got 4294967297"
        ):
            kernels.apply_keep_mask(x, 1, 0, 2**32 + 1, 1.0)
        with pytest.raises(ValueError, match=r"threshold must be in \[0, 2\*\*32\], got -1"):
            kernels.bias_dropout_add(x, x, x, 1, 0, -1, 1.0)


@pytest.mark.parametrize(
    "mask_shape",
    [(5,), (5, 7, 1), (5, 3), (2, 1), (True, 7), (5.0, 1), 5, "57", (5, None)],
)
def test_mask_shape_is_checked_for_every_backend(restore_backend, mask_shape):
    x = torch.ones(5, 7)
    want = (
        r"mask_shape must have one entry per dimension of x \(2\), each x's size or 1, got "
        rf"mask_shape={re.escape(repr(mask_shape))} for x of shape \(5, 7\)"
    )
    for backend in kernels.BACKENDS:
        kernels.set_backend(backend)
        with pytest.raises(ValueError, match=want):
            kernels.apply_keep_mask(x, 1, 0, 5, 1.0, mask_shape=mask_shape)
        with pytest.raises(ValueError, match=want):
            kernels.apply_keep_affine(x, 1, 0, 5, 1.0, 0.0, 0.0, mask_shape=mask_shape)


def test_the_stream_bound_counts_the_mask_elements(restore_backend):
    x = torch.ones(10, 4)
    for backend in kernels.BACKENDS:
        kernels.set_backend(backend)
        # The mask (10, 1) reads 10 words: its last allowed offset is TOP - 10, not TOP - 40.
        kernels.apply_keep_mask(x, 1, TOP - 10, 0, 1.0, mask_shape=(10, 1))
        kernels.apply_keep_affine(x, 1, TOP - 10, 0, 1.0, 0.0, 0.0, mask_shape=[10, 1])
        with pytest.raises(ValueError, match=r"got offset=.* for numel=10"):
            kernels.apply_keep_mask(x, 1, TOP - 9, 0, 1.0, mask_shape=(10, 1))
        with pytest.raises(ValueError, match=r"got offset=.* for numel=10"):
            kernels.apply_keep_affine(x, 1, TOP - 9, 0, 1.0, 0.0, 0.0, mask_shape=(10, 1))
        with pytest.raises(ValueError, match=r"threshold must be in \[0, 2\*\*32\], got -1"):
            kernels.apply_keep_affine(x, 1, 0, -1, 1.0, 0.0, 0.0)
