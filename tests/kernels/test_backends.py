"""dropkit.kernels: the ``dropkit`` operators, their kernels chosen once at import
(``DROPKIT_BACKEND``), the same bits whichever serves, bad arguments refused by the operators."""

import os
import subprocess
import sys
import types

import pytest
import torch

import dropkit
from dropkit import kernels, rng
from dropkit.kernels import reference

TOP = kernels.MAX_STREAM_INDEX
ops = torch.ops.dropkit
S = kernels.seed_tensor
OPS = ["keep", "keep_", "keep_affine", "keep_affine_", "bias_dropout_add", "blocks",
       "_stream_words", "_normal_uniforms"]  # fmt: skip


def has_kernel(op: str, key: str) -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"dropkit::{op}", key)


# -- the choice of kernels: once, at import -------------------------------------------------------
def test_backend_names():
    assert kernels.backend() in ("cpu", "reference")
    assert dropkit.backend is kernels.backend
    for gone in ("set_backend", "get_backend", "BACKENDS"):
        assert not hasattr(kernels, gone) and not hasattr(dropkit, gone)


def _import_dropkit(value: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DROPKIT_BACKEND"}
    if value is not None:
        env["DROPKIT_BACKEND"] = value
    code = "import dropkit; print(dropkit.backend())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


def test_environment_variable_selects_the_reference():
    run = _import_dropkit("reference")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "reference"


@pytest.mark.skipif(kernels.backend() != "cpu", reason="the compiled C++ kernels are not loaded")
def test_environment_variable_auto_takes_the_compiled_kernels():
    for value in ("auto", None):
        run = _import_dropkit(value)
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == "cpu"


@pytest.mark.parametrize("value", ["gpu", "cpu", ""])
def test_bad_environment_variable_names_itself(value):
    run = _import_dropkit(value)
    assert run.returncode != 0
    assert f"DROPKIT_BACKEND must be 'auto' or 'reference', got {value!r}" in run.stderr


# -- the operators and their kernels ---------------------------------------------------------------
def test_operators_are_declared_with_their_schemas():
    assert sorted(kernels.SCHEMAS) == sorted(OPS)
    for name, schema in kernels.SCHEMAS.items():
        assert str(getattr(ops, name).default._schema) == f"dropkit::{schema}"


def test_kernels_per_dispatch_key():
    for name in OPS:
        # The compiled kernels take the CPU key; where they are not loaded, the reference's
        # CompositeExplicitAutograd kernels serve the CPU too.
        assert has_kernel(name, "CPU") == (kernels.backend() == "cpu")
        assert has_kernel(name, "CompositeExplicitAutograd")  # the reference: every other device
    for name in ("keep", "keep_affine", "bias_dropout_add", "blocks"):
        assert has_kernel(name, "Autograd")  # C++ nodes, or the Python rules of the reference


def test_triton_kernels_only_where_triton_runs(monkeypatch):
    """Without dropkit.kernels.triton_gpu (or when it cannot run) there are no Triton kernels and
    CUDA tensors keep the reference (CompositeExplicitAutograd); where it runs, every operator but
    _normal_uniforms has one."""
    monkeypatch.delattr(kernels, "triton_gpu", raising=False)
    monkeypatch.setitem(sys.modules, "dropkit.kernels.triton_gpu", None)  # import fails
    assert kernels.triton_kernels() == {}
    fake = types.ModuleType("dropkit.kernels.triton_gpu")
    fake.available = lambda: False
    monkeypatch.setitem(sys.modules, "dropkit.kernels.triton_gpu", fake)
    monkeypatch.setattr(kernels, "triton_gpu", fake, raising=False)
    assert kernels.triton_kernels() == {}
    fake.available = lambda: True
    assert sorted(kernels.triton_kernels()) == sorted(set(OPS) - {"_normal_uniforms", "blocks"})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_no_cuda_kernels_without_cuda():
    for name in OPS:
        assert not has_kernel(name, "CUDA")


def test_meta_tensors_keep_shape_and_layout():
    x = torch.empty(2, 3, 4, 5, device="meta").to(memory_format=torch.channels_last)
    for out in (
        ops.keep(x, S(1), 0, 5, 2.0, [2, 3, 1, 1]),
        ops.keep_affine(x, S(1), 0, 5, 2.0, 0.1, 0.2, [2, 1, 1, 5]),
        ops.bias_dropout_add(x, torch.empty(5, device="meta"), x, S(1), 0, 5, 2.0),
    ):
        assert out.device.type == "meta" and out.shape == x.shape
        assert out.is_contiguous(memory_format=torch.channels_last)
    assert ops.keep_(x, S(1), 0, 5, 2.0, [2, 3, 4, 5]) is x


# -- the same bits whichever kernels serve ---------------------------------------------------------
@pytest.fixture(params=["cpu", "reference"])
def serving(request, cpu_kernels):
    """The operators' CPU key runs the compiled kernels ("cpu", where loaded) or the reference."""
    if request.param == "cpu" and kernels.backend() != "cpu":
        pytest.skip("the compiled C++ kernels are not loaded (the reference case covers them)")
    with cpu_kernels(request.param):
        yield request.param


def test_every_entry_point_gives_the_references_bits(serving):
    x = torch.randn(5, 7)
    t = rng.keep_threshold(0.4)
    assert torch.equal(
        kernels.apply_keep_mask(x, 3, 11, t, 1 / 0.6),
        reference.apply_keep_mask(x, 3, 11, t, 1 / 0.6),
    )
    assert torch.equal(kernels.stream_words(9, 3, 2), rng.stream_words(9, 3, 2))
    assert torch.equal(kernels.normal((4, 3), 3, 2), rng.normal((4, 3), 3, 2))
    assert torch.equal(kernels.normal((4, 3), 3, 2, dtype=torch.float64),
                       rng.normal((4, 3), 3, 2, dtype=torch.float64))  # fmt: skip
    for bias in (torch.randn(7), torch.randn(5, 7), torch.tensor(0.5)):
        residual = torch.randn(5, 7)
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
    # Seeds in [2**63, 2**64) are the int64 of the same 64 bits.
    assert torch.equal(kernels.stream_words(9, 2**64 - 3), kernels.stream_words(9, -3))
    assert torch.equal(kernels.stream_words(9, 2**64 - 3), rng.stream_words(9, 2**64 - 3))


def test_in_place_helpers_and_layouts(serving):
    x = torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)
    t = rng.keep_threshold(0.5)
    want = reference.apply_keep_mask(x, 4, 1, t, 2.0, None, (2, 3, 1, 1))
    got = kernels.apply_keep_mask(x, 4, 1, t, 2.0, mask_shape=(2, 3, 1, 1))
    assert got.is_contiguous(memory_format=torch.channels_last) and torch.equal(got, want)
    y = x.clone()
    assert kernels.apply_keep_mask(y, 4, 1, t, 2.0, y, (2, 3, 1, 1)) is y
    assert torch.equal(y, want)
    want = reference.apply_keep_affine(x, 4, 1, t, 1.5, 0.25, -0.5, None, (2, 1, 1, 5))
    y = x.clone()
    assert kernels.apply_keep_affine(y, 4, 1, t, 1.5, 0.25, -0.5, y, (2, 1, 1, 5)) is y
    assert torch.equal(y, want)
    got = kernels.bias_dropout_add(x, torch.randn(5), x, 4, 1, t, 2.0)
    assert got.is_contiguous(memory_format=torch.channels_last)


def test_gradients_are_the_mask_whichever_kernels_serve(serving):
    t = rng.keep_threshold(0.3)
    x = torch.randn(4, 6, requires_grad=True)
    grad = torch.randn(4, 6)
    for mask_shape in [(4, 6), (4, 1)]:
        y = ops.keep(x, S(7), 2, t, 2.0, list(mask_shape))
        (gx,) = torch.autograd.grad(y, x, grad)
        assert torch.equal(gx, reference.apply_keep_mask(grad, 7, 2, t, 2.0, None, mask_shape))
        y = ops.keep_affine(x, S(7), 2, t, 1.5, 0.25, -0.5, list(mask_shape))
        (gx,) = torch.autograd.grad(y, x, grad)
        assert torch.equal(gx, reference.apply_keep_mask(grad, 7, 2, t, 1.5, None, mask_shape))


# -- bad arguments: the contract helpers (Python ValueErrors) -------------------------------------
def test_stream_bounds_of_the_helpers():
    with pytest.raises(ValueError, match=r"offset \+ numel <= 2\*\*63 - 1, got numel=3, offset=-2"):
        kernels.stream_words(3, 1, -2)
    with pytest.raises(ValueError, match=r"got numel=-1, offset=0"):
        kernels.stream_words(-1, 1)
    with pytest.raises(ValueError, match=r"got numel=10, offset=9223372036854775798"):
        kernels.stream_words(10, 1, TOP - 9)
    assert torch.equal(kernels.stream_words(10, 1, TOP - 10), rng.stream_words(10, 1, TOP - 10))
    with pytest.raises(ValueError, match=r"2 \* \(offset \+ numel\) <= 2\*\*63 - 1"):
        kernels.normal((4,), 1, TOP // 2)
    with pytest.raises(ValueError, match=r"offset must be >= 0"):
        kernels.normal((4,), 1, -1)


# -- bad arguments: refused by the operators themselves --------------------------------------------
# Both kernels (compiled and reference: the reference serves with DROPKIT_BACKEND=reference, without
# a compiler, and on every other device) refuse bad arguments with the same messages.
@pytest.fixture(params=["cpu", "reference"])
def checked(request, cpu_kernels):
    with cpu_kernels(request.param):
        yield request.param


def _keep_calls(x, seed, offset, threshold, mask_shape):
    """(name, call) of the four mask operators."""
    yield "keep", lambda: ops.keep(x, seed, offset, threshold, 2.0, mask_shape)
    yield "keep_", lambda: ops.keep_(x.clone(), seed, offset, threshold, 2.0, mask_shape)
    args = (seed, offset, threshold, 1.5, 0.25, -0.5, mask_shape)
    yield "keep_affine", lambda: ops.keep_affine(x, *args)
    yield "keep_affine_", lambda: ops.keep_affine_(x.clone(), *args)


@pytest.mark.parametrize("mask_shape", [[5], [5, 7, 1], [5, 3], [2, 1], [7, 5], [0, 7]])
def test_mask_shape_is_checked(checked, mask_shape):
    x = torch.ones(5, 7)
    for name, call in _keep_calls(x, S(1), 0, 5, mask_shape):
        want = (
            rf"dropkit::{name}: mask_shape must have one entry per dimension of x, each x's size "
            rf"or 1, got \[{', '.join(map(str, mask_shape))}\] for x of shape \[5, 7\]"
        )
        with pytest.raises(RuntimeError, match=want):
            call()


@pytest.mark.parametrize("mask_shape", [(5.0, 1), 5, "57", (5, None)])
def test_mask_shape_must_be_a_list_of_ints(mask_shape):
    x = torch.ones(5, 7)
    for _, call in _keep_calls(x, S(1), 0, 5, mask_shape):
        with pytest.raises(RuntimeError, match="Expected a value of type 'List\\[int\\]'"):
            call()


def test_stream_bounds_are_checked(checked):
    x = torch.ones(10, 4)
    for mask_shape, words in [([10, 4], 40), ([10, 1], 10), ([1, 1], 1)]:
        # The bound counts the mask's elements: the last allowed offset is TOP - words.
        for _, call in _keep_calls(x, S(1), TOP - words, 0, mask_shape):
            call()
        for offset in (TOP - words + 1, -1):
            for name, call in _keep_calls(x, S(1), offset, 0, mask_shape):
                want = (
                    rf"dropkit::{name}: offset must be >= 0 with offset \+ numel <= 2\*\*63 - 1, "
                    rf"got offset={offset} for numel={words}"
                )
                with pytest.raises(RuntimeError, match=want):
                    call()
    ops.bias_dropout_add(x, x[0], x, S(1), TOP - 40, 0, 1.0)
    with pytest.raises(RuntimeError, match=r"bias_dropout_add: offset must be >= 0 .* numel=40"):
        ops.bias_dropout_add(x, x[0], x, S(1), TOP - 39, 0, 1.0)
    with pytest.raises(RuntimeError, match=r"_stream_words: offset must be >= 0 .* numel=5"):
        ops._stream_words(torch.empty(5, dtype=torch.int64), S(1), TOP - 4)
    with pytest.raises(RuntimeError, match=r"_normal_uniforms: offset must be >= 0 with 2 \*"):
        ops._normal_uniforms(5, S(1), 2**62)


def test_threshold_range_is_checked(checked):
    x = torch.ones(5, 7)
    for threshold in (0, 2**32):
        for _, call in _keep_calls(x, S(1), 0, threshold, [5, 7]):
            call()
    for threshold in (-1, 2**32 + 1):
        for name, call in _keep_calls(x, S(1), 0, threshold, [5, 1]):
            with pytest.raises(
                RuntimeError, match=rf"dropkit::{name}: threshold must be in \[0, 2\*\*32\], got"
            ):
                call()
        want = rf"threshold must be in \[0, 2\*\*32\], got {threshold}"
        with pytest.raises(RuntimeError, match=want):
            ops.bias_dropout_add(x, x[0], x, S(1), 0, threshold, 1.0)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool])
def test_integer_tensors_are_refused(checked, dtype):
    x = torch.ones(5, 7, dtype=dtype)
    for _, call in _keep_calls(x, S(1), 0, 5, [5, 7]):
        with pytest.raises(
            RuntimeError, match=r"dropkit::keep\w*: x must be float16, bfloat16, float32 or float64"
        ):
            call()
    with pytest.raises(RuntimeError, match="x must be float16, bfloat16, float32 or float64"):
        ops.bias_dropout_add(x, x[0], x, S(1), 0, 5, 1.0)


@pytest.mark.parametrize(
    "seed",
    [
        torch.tensor([1, 2]),
        torch.tensor(1, dtype=torch.int32),
        torch.tensor(1.0),
        torch.tensor([], dtype=torch.int64),
    ],
)
def test_seed_must_be_a_one_element_int64_cpu_tensor(checked, seed):
    x = torch.ones(5, 7)
    want = "seed must be a one-element int64 CPU tensor, got"
    for name, call in _keep_calls(x, seed, 0, 5, [5, 7]):
        with pytest.raises(RuntimeError, match=f"dropkit::{name}: {want}"):
            call()
    with pytest.raises(RuntimeError, match=want):
        ops.bias_dropout_add(x, x[0], x, seed, 0, 5, 1.0)
    with pytest.raises(RuntimeError, match=want):
        ops._stream_words(torch.empty(3, dtype=torch.int64), seed, 0)
    with pytest.raises(RuntimeError, match=want):
        ops._normal_uniforms(3, seed, 0)


def test_bias_dropout_add_shapes_and_dtypes_are_checked(checked):
    x = torch.ones(6, 8)
    with pytest.raises(RuntimeError, match=r"residual must have x's shape \[6, 8\], got \[8\]"):
        ops.bias_dropout_add(x, torch.zeros(8), torch.zeros(8), S(1), 0, 5, 1.0)
    with pytest.raises(RuntimeError, match=r"bias must have x's trailing shape, got \[6\]"):
        ops.bias_dropout_add(x, torch.zeros(6), torch.zeros(6, 8), S(1), 0, 5, 1.0)
    with pytest.raises(RuntimeError, match="x, bias and residual must share one dtype"):
        ops.bias_dropout_add(x.half(), torch.zeros(8), x.half(), S(1), 0, 5, 1.0)
    with pytest.raises(RuntimeError, match="x, bias and residual must share one dtype"):
        ops.bias_dropout_add(x, torch.zeros(8), x.double(), S(1), 0, 5, 1.0)


def test_stream_words_out_must_be_contiguous_int64(checked):
    with pytest.raises(RuntimeError, match="_stream_words: out must be a contiguous int64 tensor"):
        ops._stream_words(torch.empty(5, dtype=torch.int32), S(1), 0)
    with pytest.raises(RuntimeError, match="_stream_words: out must be a contiguous int64 tensor"):
        ops._stream_words(torch.empty(10, dtype=torch.int64)[::2], S(1), 0)


def test_a_seed_on_another_device_is_refused():
    x = torch.ones(5, 7)
    seed = torch.tensor(1, dtype=torch.int64, device="meta")
    with pytest.raises(RuntimeError, match="seed must be a one-element int64 CPU tensor"):
        ops.keep(x, seed, 0, 5, 2.0, [5, 7])
