"""``dropkit::blocks``: the compiled CPU kernel equals the reference
(:func:`dropkit.kernels.reference.blocks`) bit for bit over options, dtypes, layouts and shapes;
its gradient is the op on the gradient; double backward, torch.compile, fake and meta tensors,
and the DROPKIT_BACKEND=reference route."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import pytest
import torch

from dropkit import functional as F
from dropkit import kernels
from dropkit.kernels import seed_tensor

BLOCKS = torch.ops.dropkit.blocks.default
needs_cpu = pytest.mark.skipif(kernels.backend() != "cpu", reason="the C++ kernels are not loaded")

# (per_channel, border, normalize, noise)
OPTIONS = [
    (pc, border, norm, False)
    for pc, border, norm in itertools.product(
        [True, False], ["valid", "clip"], ["sample", "batch", "none"]
    )
]
OPTIONS += [(pc, border, "none", True) for pc in (True, False) for border in ("valid", "clip")]
SHAPES = [(2, 3, 9, 8), (3, 2, 4, 3), (1, 2, 1, 5), (2, 3, 4, 5, 6)]  # fmt: skip


def _layouts(x):
    yield "contiguous", x
    if x.dim() in (4, 5):
        fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
        yield "channels_last", x.contiguous(memory_format=fmt)
    yield "strided", x.transpose(-1, -2).contiguous().transpose(-1, -2)[:, :, ::1]
    yield "sliced", torch.cat([x, x], 1)[:, ::2]


def _call(x, p, bs, opts, seed=7, offset=3):
    pc, border, norm, noise = opts
    fn = F.drop_block2d if x.dim() == 4 else F.drop_block3d
    return fn(x, p, bs, per_channel=pc, border=border, normalize=norm, noise=noise, seed=seed,
              offset=offset)  # fmt: skip


@needs_cpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES)
def test_kernel_equals_the_reference_bit_for_bit(dtype, shape, cpu_kernels):
    x = torch.randn(shape).to(dtype)
    x.view(-1)[::7] = -0.0
    # p = 1 with a block larger than the map: many seeds (the separable dilation)
    for opts, (p, bs) in itertools.product(OPTIONS, [(0.4, 3), (0.2, 2), (1.0, 7), (0.7, 1)]):
        for layout, xl in _layouts(x):
            with cpu_kernels("reference"):
                want = _call(xl, p, bs, opts)
            got = _call(xl, p, bs, opts)
            assert got.dtype == dtype and got.stride() == torch.empty_like(xl).stride()
            assert torch.equal(_bits(got), _bits(want)), (layout, opts, p, bs)


def _bits(t):
    t = t.contiguous().view(-1)
    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


@needs_cpu
@pytest.mark.parametrize("threshold", [0, 1, 2**31, 2**32 - 1, 2**32])
@pytest.mark.parametrize("clip", [True, False])
def test_extreme_thresholds_and_nan(threshold, clip, cpu_kernels):
    x = torch.randn(2, 3, 6, 7)
    x[0, 0, 0, 0], x[1, 2, 3, 3] = float("nan"), float("inf")
    for norm, noise, affine in [("sample", False, True), ("batch", False, True),
                                ("none", True, True), ("none", True, False)]:  # fmt: skip
        args = (x, seed_tensor(2**63 + 5), 11, affine, threshold, [3, 2], False, clip, norm,
                1e-6, noise)  # fmt: skip
        with cpu_kernels("reference"):
            want = BLOCKS(*args)
        assert torch.equal(_bits(BLOCKS(*args)), _bits(want))


@needs_cpu
def test_large_maps_and_threads(cpu_kernels):
    x = torch.randn(3, 40, 33, 35)
    for opts in [(True, "valid", "sample", False), (False, "clip", "batch", False)]:
        with cpu_kernels("reference"):
            want = _call(x, 0.3, 5, opts)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            assert torch.equal(_bits(_call(x, 0.3, 5, opts)), _bits(want))


def test_in_place_writes_the_result_into_input():
    x = torch.randn(2, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    want = F.drop_block2d(x, 0.3, 3, seed=4)
    y = x.clone(memory_format=torch.channels_last)
    assert F.drop_block2d(y, 0.3, 3, True, seed=4) is y and torch.equal(y, want)


@pytest.mark.parametrize("opts", [(True, "valid", "sample", False), (False, "clip", "batch", False),
                                  (True, "clip", "none", True)])  # fmt: skip
def test_gradient_is_the_op_on_the_gradient(opts):
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda t: _call(t, 0.4, 3, opts), (x,))
    w = torch.randn_like(x)
    (g,) = torch.autograd.grad(_call(x, 0.4, 3, opts), x, w)
    pc, border, norm, noise = opts
    threshold = round(F.drop_block_gamma(0.4, 3, (7, 6)) * 2**32)
    op = BLOCKS(w, seed_tensor(7), 3, False, threshold, [3, 3], pc, border == "clip", norm, 1e-6,
                noise)  # fmt: skip
    assert torch.equal(g, op)


@pytest.mark.parametrize("kind", ["cpu", "reference"])
def test_double_backward_and_nothing_saved(kind, cpu_kernels):
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    with cpu_kernels(kind):
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
            y = F.drop_block2d(x * x, 0.4, 3, seed=2)
        (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
        (gg,) = torch.autograd.grad(g.sum(), x)
    assert torch.equal(gg, 2 * F.drop_block2d(torch.ones_like(x), 0.4, 3, seed=2))
    assert sum(t.numel() for t in saved if t.dtype == x.dtype) == 2 * x.numel()  # x * x only


def test_compiles_once_across_twenty_calls():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(lambda t: F.drop_block2d(t, 0.3, 3, border="clip") * 2,
                             fullgraph=True, backend="aot_eager")  # fmt: skip
    x = torch.randn(2, 3, 8, 8)
    outs = [compiled(x) for _ in range(20)]
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["recompiles"])
    assert all(not torch.equal(a, b) for a, b in zip(outs, outs[1:]))
    torch.manual_seed(5)
    eager = F.drop_block2d(x, 0.3, 3, border="clip") * 2
    torch.manual_seed(5)
    assert torch.equal(compiled(x), eager)


def test_fake_and_meta_tensors_keep_shape_and_layout():
    from torch._subclasses.fake_tensor import FakeTensorMode

    x = torch.empty(2, 3, 5, 6, device="meta").to(memory_format=torch.channels_last)
    out = BLOCKS(x, seed_tensor(1), 0, True, 5, [3, 3], True, False, "sample", 1e-6, False)
    assert out.device.type == "meta" and out.shape == x.shape and out.stride() == x.stride()
    with FakeTensorMode():
        y = F.drop_block3d(torch.empty(2, 3, 4, 5, 6), 0.3, 3, seed=1)
    assert y.shape == (2, 3, 4, 5, 6)


@pytest.mark.parametrize("bad, message", [
    (dict(sizes=[4, 3]), r"sizes must hold one block side in \[1, S_d\]"),
    (dict(sizes=[3]), r"sizes must hold one block side"),
    (dict(normalize="all"), r"normalize must be 'sample', 'batch' or 'none', got 'all'"),
    (dict(threshold=2**32 + 1), r"threshold must be in \[0, 2\*\*32\]"),
    (dict(offset=2**63 - 10), r"offset must be >= 0 with offset \+ numel"),
])  # fmt: skip
@pytest.mark.parametrize("kind", ["cpu", "reference"])
def test_the_operator_checks_its_arguments(bad, message, kind, cpu_kernels):
    args = dict(x=torch.randn(2, 3, 3, 5), seed=seed_tensor(1), offset=0, affine=True,
                threshold=5, sizes=[3, 3], per_channel=True, clip=False, normalize="sample",
                eps=1e-6, noise=False)  # fmt: skip
    with cpu_kernels(kind), pytest.raises(RuntimeError, match="dropkit::blocks: " + message):
        BLOCKS(**{**args, **bad})
    with cpu_kernels(kind), pytest.raises(RuntimeError, match="1 to 3 spatial dimensions"):
        BLOCKS(**{**args, "x": torch.randn(2, 3)})
    with cpu_kernels(kind), pytest.raises(RuntimeError, match="x must be float16"):
        BLOCKS(**{**args, "x": torch.ones(2, 3, 3, 5, dtype=torch.int32)})


def test_reference_backend_gives_the_same_bits():
    code = (
        "import torch, dropkit; from dropkit import functional as F\n"
        "assert dropkit.backend() == 'reference'\n"
        "assert not torch._C._dispatch_has_kernel_for_dispatch_key('dropkit::blocks', 'CPU')\n"
        "x = torch.linspace(-3, 3, 2 * 3 * 9 * 8, dtype=torch.float64).reshape(2, 3, 9, 8)\n"
        "x.requires_grad_()\n"
        "y = F.drop_block2d(x, 0.4, 3, seed=9, border='clip', per_channel=False)\n"
        "y.backward(torch.ones_like(y))\n"
        "print(repr(y.detach().view(-1).tolist()), repr(x.grad.view(-1).tolist()))\n"
    )
    env = {**os.environ, "DROPKIT_BACKEND": "reference"}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    x = torch.linspace(-3, 3, 2 * 3 * 9 * 8, dtype=torch.float64).reshape(2, 3, 9, 8)
    x.requires_grad_()
    y = F.drop_block2d(x, 0.4, 3, seed=9, border="clip", per_channel=False)
    y.backward(torch.ones_like(y))
    assert run.stdout.strip() == f"{y.detach().view(-1).tolist()!r} {x.grad.view(-1).tolist()!r}"
