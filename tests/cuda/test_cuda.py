"""dropkit on CUDA: every public op and module gives the CPU's bits, and torch.compile works.

Run on a GPU machine with ``python -m pytest -m cuda tests/cuda``. Every test is marked ``cuda``
and skipped where ``torch.cuda.is_available()`` is False.

Each comparison runs one test body on two devices, ``DEVICES = (cpu, cuda)``: the same inputs
(drawn on the CPU, then copied), the same explicit ``seed=``, the same upstream gradient; the
outputs and the gradients of every floating input (and parameter) must be equal bit for bit
(``torch.equal``). ``torch.testing.assert_close`` is used only where the op's own arithmetic on
CUDA is not the CPU's: the matmul and the convolution inside DropConnect (cuBLAS/cuDNN reduce in
another order, and may use TF32 or reduced-precision accumulation), and every comparison says so.

The tests' own logic can be checked without a GPU: with ``DROPKIT_CUDA_SELF_CHECK=1`` the second
device is the CPU too and nothing is skipped (``DROPKIT_CUDA_SELF_CHECK=1 python -m pytest -m cuda
tests/cuda``). That run proves the test bodies are consistent (and, for the compile test, that the
counters and fresh-mask checks work on the CPU with the ``aot_eager`` backend), not that CUDA
matches. ``DROPKIT_CUDA_SELF_CHECK=triton`` goes one step further: the second device's kernel
calls go to the Triton backend (the kernels CUDA tensors reach) under ``TRITON_INTERPRET=1``, so
the comparisons check those kernels through the whole op layer against the C++ CPU backend
(slow: the interpreter; a development aid, see :func:`on`).
"""

from __future__ import annotations

import contextlib
import copy
import os
import warnings
from collections.abc import Callable, Sequence

import pytest
import torch

import dropkit.functional as F
from dropkit import nn as dnn

# "1": CPU vs CPU; "triton": CPU vs CPU tensors through the Triton backend (interpreter).
SELF_CHECK = os.environ.get("DROPKIT_CUDA_SELF_CHECK", "")
CUDA = torch.cuda.is_available()
DEVICES = ("cpu", {"": "cuda", "1": "cpu", "triton": "cpu+triton"}.get(SELF_CHECK, "cpu"))


@contextlib.contextmanager
def on(device: str):
    """The torch device of a ``DEVICES`` entry. ``"cpu+triton"`` (self-check only) is the CPU with
    the operators' CPU key given the Triton kernels (the ones CUDA tensors reach,
    ``dropkit.kernels.triton_kernels()``) under ``TRITON_INTERPRET=1``, through the whole op
    layer; removed on exit. A development aid."""
    if device != "cpu+triton":
        yield device
        return
    from dropkit import kernels

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRITON_INTERPRET", "1")
        table = kernels.triton_kernels()
        if not table:
            pytest.skip("Triton is not installed or cannot run: no triton self-check")
        library = torch.library.Library("dropkit", "IMPL")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "overriding a previously registered kernel"
                for name, kernel in table.items():
                    library.impl(name, kernel, "CPU")
            yield "cpu"
        finally:
            library._destroy()


pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not (CUDA or SELF_CHECK),
        reason="needs a CUDA device (torch.cuda.is_available() is False); "
        "DROPKIT_CUDA_SELF_CHECK=1 runs the tests' logic CPU vs CPU",
    ),
    # dropout2d on a 3-D input and friends warn as torch does; not what these tests check.
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
SEED = 20260412


@pytest.fixture(autouse=True)
def _no_tf32():
    """float32 matmuls and convolutions in float32, not TF32 (cuDNN's default allows TF32 for
    convolutions): DropConnect's tolerances below are those of a reordered float32 reduction."""
    matmul, conv = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, conv


def _ids(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _inputs(shapes: Sequence[tuple[int, ...]], seed: int = 0) -> list[torch.Tensor]:
    """float32 CPU tensors of ``shapes`` from a fixed generator (the same on every run)."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen) for shape in shapes]


def _to(t: torch.Tensor, device: str, dtype: torch.dtype, grad: bool) -> torch.Tensor:
    if not t.is_floating_point():
        return t.to(device)
    leaf = t.to(device=device, dtype=dtype).detach()
    return leaf.requires_grad_(grad)


def _run(
    fn: Callable[..., torch.Tensor],
    inputs: Sequence[torch.Tensor],
    device: str,
    dtype: torch.dtype,
    grad: bool,
    memory_format: torch.memory_format | None,
) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """``fn`` on copies of ``inputs`` on ``device``; the output and the inputs' gradients, on the
    CPU. The upstream gradient is drawn on the CPU (fixed generator) and copied."""
    with on(device) as target:
        return _run_on(fn, inputs, target, dtype, grad, memory_format)


def _run_on(fn, inputs, device, dtype, grad, memory_format):
    leaves = [_to(t, device, dtype, grad) for t in inputs]
    args = leaves
    if memory_format is not None:
        args = [t.contiguous(memory_format=memory_format) if t.dim() >= 4 else t for t in leaves]
    out = fn(*args)
    grads = []
    if grad:
        upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        out.backward(upstream.to(device=device, dtype=out.dtype))
        # None where no gradient flows (e.g. the branches a global join drops)
        grads = [None if t.grad is None else t.grad.cpu() for t in leaves if t.is_floating_point()]
    return out.detach().cpu(), grads


def _equal(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape, (what, a.dtype, b.dtype, a.shape, b.shape)
    # NaN never appears here (finite inputs); torch.equal is bit for bit up to the sign of 0.
    assert torch.equal(a, b), f"{what}: {int((a != b).sum())} of {a.numel()} elements differ"
    assert torch.equal(torch.signbit(a), torch.signbit(b)), f"{what}: signs of zeros differ"


def _close(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    tol = {torch.float32: 1e-4, torch.bfloat16: 3e-2, torch.float16: 3e-3}[a.dtype]
    torch.testing.assert_close(a, b, rtol=tol, atol=tol, msg=lambda m: f"{what}: {m}")


def compare(
    fn: Callable[..., torch.Tensor],
    inputs: Sequence[torch.Tensor],
    dtype: torch.dtype,
    *,
    grad: bool = True,
    exact: bool = True,
    memory_format: torch.memory_format | None = None,
    devices: tuple[str, str] = DEVICES,
    reduced_grads: tuple[int, ...] = (),
) -> torch.Tensor:
    """``fn(*inputs)`` on both ``devices``: outputs and gradients equal bit for bit (``exact``),
    or within a few roundings of ``dtype`` (``exact=False``: only for ops whose own arithmetic is
    not exact on CUDA, said at the call). ``reduced_grads``: inputs whose gradient is a sum
    reduction (a broadcast bias), which CUDA rounds in another order: compared closely.
    Returns the first device's output."""
    out_a, grads_a = _run(fn, inputs, devices[0], dtype, grad, memory_format)
    out_b, grads_b = _run(fn, inputs, devices[1], dtype, grad, memory_format)
    check = _equal if exact else _close
    check(out_a, out_b, "output")
    assert len(grads_a) == len(grads_b)
    for k, (ga, gb) in enumerate(zip(grads_a, grads_b)):
        assert (ga is None) == (gb is None), f"gradient of input {k}: None on one device only"
        if ga is not None:
            (_close if k in reduced_grads else check)(ga, gb, f"gradient of input {k}")
    return out_a


def _drops_something(out: torch.Tensor, x: torch.Tensor) -> None:
    """The comparison saw a real mask: some output differs from the input (the op ran in
    training mode)."""
    assert not torch.equal(out.float(), x.float())


# ------------------------------------------------------------------------------------------------
# Functional ops
# ------------------------------------------------------------------------------------------------

# name -> (op on tensors, input shapes); every op in training mode with seed=SEED.
FUNCTIONAL: dict[str, tuple[Callable[..., torch.Tensor], list[tuple[int, ...]]]] = {
    "dropout": (lambda x: F.dropout(x, 0.3, True, seed=SEED), [(6, 7, 33)]),
    "dropout_classic": (
        lambda x: F.dropout(x, 0.3, True, mode="classic", seed=SEED),
        [(6, 7, 33)],
    ),
    "dropout_offset": (lambda x: F.dropout(x, 0.3, True, seed=SEED, offset=7), [(1027,)]),
    "dropout1d": (lambda x: F.dropout1d(x, 0.4, True, seed=SEED), [(4, 6, 20)]),
    "dropout1d_channels_last": (
        lambda x: F.dropout1d(x, 0.4, True, channels_last=True, seed=SEED),
        [(4, 20, 6)],
    ),
    "dropout2d": (lambda x: F.dropout2d(x, 0.4, True, seed=SEED), [(4, 6, 5, 7)]),
    "dropout2d_channels_last": (
        lambda x: F.dropout2d(x, 0.4, True, channels_last=True, seed=SEED),
        [(4, 5, 7, 6)],
    ),
    "dropout2d_classic": (
        lambda x: F.dropout2d(x, 0.4, True, mode="classic", seed=SEED),
        [(4, 6, 5, 7)],
    ),
    "dropout3d": (lambda x: F.dropout3d(x, 0.4, True, seed=SEED), [(3, 6, 4, 5, 3)]),
    "dropout3d_channels_last": (
        lambda x: F.dropout3d(x, 0.4, True, channels_last=True, seed=SEED),
        [(3, 4, 5, 3, 6)],
    ),
    "alpha_dropout": (lambda x: F.alpha_dropout(x, 0.2, True, seed=SEED), [(6, 7, 33)]),
    "feature_alpha_dropout": (
        lambda x: F.feature_alpha_dropout(x, 0.3, True, seed=SEED),
        [(4, 6, 5, 7)],
    ),
    "gaussian_dropout": (lambda x: F.gaussian_dropout(x, 0.3, True, seed=SEED), [(6, 7, 33)]),
    "broadcast_dropout": (
        lambda x: F.broadcast_dropout(x, 0.4, True, noise_shape=(None, 1, None), seed=SEED),
        [(5, 9, 8)],
    ),
    "broadcast_dropout_two_groups": (
        lambda x: F.broadcast_dropout(x, 0.4, True, noise_shape=(None, 1, None, 1), seed=SEED),
        [(4, 5, 6, 3)],
    ),
    "locked_dropout": (lambda x: F.locked_dropout(x, 0.4, True, seed=SEED), [(9, 4, 10)]),
    "locked_dropout_batch_first": (
        lambda x: F.locked_dropout(x, 0.4, True, batch_first=True, seed=SEED),
        [(4, 9, 10)],
    ),
    "drop_block2d": (lambda x: F.drop_block2d(x, 0.3, 3, seed=SEED), [(2, 3, 12, 12)]),
    "drop_block2d_batch": (
        lambda x: F.drop_block2d(x, 0.3, 3, per_channel=False, normalize="batch", seed=SEED),
        [(2, 3, 12, 12)],
    ),
    "drop_block3d": (lambda x: F.drop_block3d(x, 0.3, 3, seed=SEED), [(2, 2, 7, 7, 7)]),
    "drop_path": (lambda x: F.drop_path(x, 0.4, True, seed=SEED), [(8, 5, 6)]),
    "stochastic_depth_row": (
        lambda x: F.stochastic_depth(x, 0.4, "row", seed=SEED),
        [(8, 5, 6)],
    ),
    "stochastic_depth_batch": (
        lambda x: F.stochastic_depth(x, 0.5, "batch", seed=SEED + 1),
        [(8, 5, 6)],
    ),
    "cutout": (lambda x: F.cutout(x, 5, n_holes=2, seed=SEED), [(3, 2, 16, 16)]),
    "drop_branches_local": (
        lambda a, b, c: F.drop_branches([a, b, c], 0.4, True, seed=SEED),
        [(8, 5), (8, 5), (8, 5)],
    ),
    "drop_branches_global": (
        lambda a, b, c: F.drop_branches([a, b, c], 0.4, True, mode="global", column=1),
        [(8, 5), (8, 5), (8, 5)],
    ),
    "bias_dropout_add": (
        lambda x, bias, res: F.bias_dropout_add(x, bias, res, 0.3, True, seed=SEED),
        [(6, 5, 32), (32,), (6, 5, 32)],
    ),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("name", sorted(FUNCTIONAL))
def test_functional_matches_cpu(name, dtype):
    fn, shapes = FUNCTIONAL[name]
    inputs = _inputs(shapes)
    # bias_dropout_add's bias gradient sums the rows (torch's own reduction; measured on an
    # H200: 25 of 32 float32 elements differ in the last bits from the CPU's sum).
    out = compare(fn, inputs, dtype, reduced_grads=(1,) if name == "bias_dropout_add" else ())
    if not name.startswith("drop_branches"):
        _drops_something(out, inputs[0].to(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize(
    "name", ["dropout", "dropout2d", "feature_alpha_dropout", "drop_block2d", "cutout"]
)
def test_functional_channels_last_memory_format(name, dtype):
    # A channels_last input (torch's memory format): the mask follows the logical index.
    fn, shapes = FUNCTIONAL[name]
    compare(fn, _inputs(shapes), dtype, memory_format=torch.channels_last)


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize(
    "name", ["dropout", "dropout2d", "dropout2d_channels_last", "alpha_dropout", "locked_dropout"]
)
def test_functional_in_place_matches_cpu(name, dtype):
    inplace = {
        "dropout": lambda x: F.dropout(x, 0.3, True, True, seed=SEED),
        "dropout2d": lambda x: F.dropout2d(x, 0.4, True, True, seed=SEED),
        "dropout2d_channels_last": lambda x: F.dropout2d(
            x, 0.4, True, True, channels_last=True, seed=SEED
        ),
        "alpha_dropout": lambda x: F.alpha_dropout(x, 0.2, True, True, seed=SEED),
        "locked_dropout": lambda x: F.locked_dropout(x, 0.4, True, inplace=True, seed=SEED),
    }[name]
    _, shapes = FUNCTIONAL[name]
    outs = compare(lambda x: inplace(x.clone()), _inputs(shapes), dtype)
    # in place gives the out-of-place bits
    assert torch.equal(outs, compare(FUNCTIONAL[name][0], _inputs(shapes), dtype, grad=False))


def _unique_ids() -> torch.Tensor:
    """24 distinct word ids of 30, shaped (4, 6): each row of the weight's gradient is one
    upstream row (or zero), never a sum, whose order CUDA's embedding backward would choose."""
    return torch.randperm(30, generator=torch.Generator().manual_seed(3))[:24].reshape(4, 6)


def test_embedding_dropout_matches_cpu():
    # The weight's gradient too (rows of dropped words get none); embedding gathers exactly.
    indices = _unique_ids()
    for dtype in DTYPES:
        (weight,) = _inputs([(30, 8)])
        out = compare(lambda w, i: F.embedding_dropout(i, w, 0.3, True, seed=SEED),
                      [weight, indices], dtype)  # fmt: skip
        assert out.shape == (4, 6, 8)


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("per_sample", [False, True])
def test_drop_connect_linear_close_to_cpu(dtype, per_sample):
    # Not exact: the matmul inside DropConnect runs on cuBLAS (another reduction order, TF32 or
    # reduced-precision accumulation where torch allows it). The masked weight itself is exact:
    # a weight of ones through an identity input makes the product a plain copy of the mask.
    x, w, b = _inputs([(6, 12), (10, 12), (10,)])

    def fn(x, w, b):
        return F.drop_connect_linear(x, w, b, 0.4, True, per_sample=per_sample, seed=SEED)

    compare(fn, [x, w, b], dtype, exact=False)
    eye = torch.eye(12)
    ones = torch.ones(10, 12)
    masked = compare(lambda e, w: F.drop_connect_linear(e, w, None, 0.5, True, seed=SEED),
                     [eye, ones], dtype, grad=False)  # fmt: skip
    assert set(masked.unique().tolist()) <= {0.0, 2.0}


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
def test_drop_connect_conv2d_close_to_cpu(dtype):
    # Not exact: the convolution inside DropConnect runs on cuDNN (its own algorithms and
    # accumulation order).
    x, w, b = _inputs([(2, 3, 9, 9), (4, 3, 3, 3), (4,)])

    def fn(x, w, b):
        return F.drop_connect_conv2d(x, w, b, padding=1, p=0.4, training=True, seed=SEED)

    compare(fn, [x, w, b], dtype, exact=False)


# ------------------------------------------------------------------------------------------------
# Modules
# ------------------------------------------------------------------------------------------------


class _Join(torch.nn.Module):
    def __init__(self, global_fraction: float):
        super().__init__()
        self.policy = dnn.FractalDropPath(3, p=0.4, global_fraction=global_fraction, seed=SEED)
        self.join = dnn.JoinDrop(self.policy, [0, 1, 2])

    def forward(self, x):
        self.policy.sample()  # seeded: the same batch policy on every device
        return self.join([x, 2 * x, x.sin()])


class _BiasDropoutAdd(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = dnn.BiasDropoutAdd(0.3, seed=SEED)
        self.bias = torch.nn.Parameter(torch.linspace(-1, 1, 16))

    def forward(self, x):
        return self.layer(x, self.bias, x * 0.5)


# name -> (() -> module with seed=SEED, input shape, exact)
MODULES: dict[str, tuple[Callable[[], torch.nn.Module], tuple[int, ...], bool]] = {
    "Dropout": (lambda: dnn.Dropout(0.3, seed=SEED), (6, 7, 9), True),
    "Dropout_classic": (lambda: dnn.Dropout(0.3, mode="classic", seed=SEED), (6, 7, 9), True),
    "Dropout1d": (lambda: dnn.Dropout1d(0.4, seed=SEED), (4, 6, 20), True),
    "Dropout2d": (lambda: dnn.Dropout2d(0.4, seed=SEED), (4, 6, 5, 7), True),
    "Dropout2d_channels_last": (
        lambda: dnn.Dropout2d(0.4, channels_last=True, seed=SEED),
        (4, 5, 7, 6),
        True,
    ),
    "Dropout3d": (lambda: dnn.Dropout3d(0.4, seed=SEED), (3, 6, 4, 5, 3), True),
    "AlphaDropout": (lambda: dnn.AlphaDropout(0.2, seed=SEED), (6, 7, 9), True),
    "FeatureAlphaDropout": (lambda: dnn.FeatureAlphaDropout(0.3, seed=SEED), (4, 6, 5, 7), True),
    "GaussianDropout": (lambda: dnn.GaussianDropout(0.3, seed=SEED), (6, 7, 9), True),
    "BroadcastDropout": (
        lambda: dnn.BroadcastDropout(0.4, noise_shape=(None, 1, None), seed=SEED),
        (5, 9, 8),
        True,
    ),
    "LockedDropout": (lambda: dnn.LockedDropout(0.4, seed=SEED), (9, 4, 10), True),
    "DropBlock2d": (lambda: dnn.DropBlock2d(0.3, 3, seed=SEED), (2, 3, 12, 12), True),
    "DropBlock3d": (lambda: dnn.DropBlock3d(0.3, 3, seed=SEED), (2, 2, 7, 7, 7), True),
    "DropPath": (lambda: dnn.DropPath(0.4, seed=SEED), (8, 5, 6), True),
    "StochasticDepth": (lambda: dnn.StochasticDepth(0.4, "row", seed=SEED), (8, 5, 6), True),
    "Cutout": (lambda: dnn.Cutout(5, n_holes=2, seed=SEED), (3, 2, 16, 16), True),
    "JoinDrop_local": (lambda: _Join(0.0), (8, 5), True),
    # Not exact: a global column outside the join averages the branches with torch's mean, whose
    # CUDA reduction rounds differently (measured on an H200: 6 of 40 float32 outputs differ).
    "JoinDrop_global": (lambda: _Join(1.0), (8, 5), False),
    # The bias gradient (parameter 0, gradient 1) is a sum reduction: compared closely.
    "BiasDropoutAdd": (_BiasDropoutAdd, (6, 5, 16), True),
    # Not exact: cuBLAS / cuDNN arithmetic (see test_drop_connect_linear_close_to_cpu).
    "DropConnectLinear": (lambda: dnn.DropConnectLinear(12, 10, p=0.4, seed=SEED), (6, 12), False),
    "DropConnectConv2d": (
        lambda: dnn.DropConnectConv2d(3, 4, 3, padding=1, p=0.4, seed=SEED),
        (2, 3, 9, 9),
        False,
    ),
}


def _module_run(name: str, device: str, dtype: torch.dtype):
    with on(device) as target:
        return _module_run_on(name, target, dtype)


def _module_run_on(name: str, device: str, dtype: torch.dtype):
    factory, shape, _ = MODULES[name]
    torch.manual_seed(0)  # parameters, if any, are drawn on the CPU: the same on every device
    module = factory().train()
    module = copy.deepcopy(module).to(device=device, dtype=dtype)
    (x,) = _inputs([shape])
    x = x.to(device=device, dtype=dtype).requires_grad_()
    out = module(x)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    out.backward(upstream.to(device=device, dtype=dtype))
    grads = [x.grad] + [p.grad for p in module.parameters()]
    return out.detach().cpu(), [g.cpu() for g in grads]


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_matches_cpu(name, dtype):
    exact = MODULES[name][2]
    check = _equal if exact else _close
    out_a, grads_a = _module_run(name, DEVICES[0], dtype)
    out_b, grads_b = _module_run(name, DEVICES[1], dtype)
    check(out_a, out_b, f"{name} output")
    for k, (ga, gb) in enumerate(zip(grads_a, grads_b)):
        reduced = name == "BiasDropoutAdd" and k == 1
        (_close if reduced else check)(ga, gb, f"{name} gradient {k}")


def test_embedding_dropout_module_matches_cpu():
    indices = _unique_ids()
    for dtype in DTYPES:
        results = []
        for name in DEVICES:
            with on(name) as device:
                torch.manual_seed(0)
                layer = dnn.EmbeddingDropout(30, 8, p=0.3, seed=SEED)
                layer = layer.to(device=device, dtype=dtype)
                out = layer(indices.to(device))
                upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
                out.backward(upstream.to(device=device, dtype=dtype))
                results.append((out.detach().cpu(), layer.weight.grad.cpu()))
        _equal(results[0][0], results[1][0], f"EmbeddingDropout {dtype} output")
        _equal(results[0][1], results[1][1], f"EmbeddingDropout {dtype} weight gradient")


@pytest.mark.parametrize("name", ["dropout", "dropout2d", "alpha_dropout", "bias_dropout_add"])
def test_kernels_run_on_the_current_stream(name):
    # Work queued on a side stream, inputs written on it just before: the kernels must run on the
    # current stream (Triton launches on torch's), or they would read unwritten inputs.
    if DEVICES[1] != "cuda":
        pytest.skip("CUDA streams: only on a GPU")
    fn, shapes = FUNCTIONAL[name]
    inputs = _inputs(shapes)
    want = fn(*inputs)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        on_device = [torch.empty_like(t, device="cuda") for t in inputs]
        torch.cuda._sleep(50_000_000)  # keep the stream busy so a wrong stream would race ahead
        for dst, src in zip(on_device, inputs):
            dst.copy_(src, non_blocking=True)
        got = fn(*on_device)
    stream.synchronize()
    _equal(got.cpu(), want, f"{name} on a side stream")


def test_unseeded_calls_draw_fresh_masks_on_the_device():
    # Without seed= every call draws a new mask (on the second device, the one under test).
    with on(DEVICES[1]) as device:
        x = torch.ones(64, 64, device=device)
        a, b = F.dropout(x, 0.5, True), F.dropout(x, 0.5, True)
    assert a.device == x.device and not torch.equal(a, b)


# ------------------------------------------------------------------------------------------------
# torch.compile
# ------------------------------------------------------------------------------------------------


class _Block(torch.nn.Module):
    """A small residual block with dropkit layers (unseeded: fresh masks on every call)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.channel = dnn.Dropout2d(0.2)
        self.fc = torch.nn.Linear(8 * 6 * 6, 32)
        self.drop = dnn.Dropout(0.3)
        self.bda = dnn.BiasDropoutAdd(0.1)
        self.bias = torch.nn.Parameter(torch.zeros(32))
        self.path = dnn.DropPath(0.2)
        self.alpha = dnn.AlphaDropout(0.1)

    def forward(self, x):
        h = self.channel(torch.relu(self.conv(x)))
        h = self.drop(self.fc(h.flatten(1)))
        h = self.bda(h, self.bias, h)
        return self.alpha(self.path(h))


def _compiled_calls(calls: int = 10) -> tuple[dict, list[torch.Tensor], torch.nn.Module]:
    """``calls`` training steps of the compiled :class:`_Block` after ``torch._dynamo.reset()``:
    dynamo's counters, the outputs, the model. inductor on CUDA; aot_eager in the CPU self-check
    (no C++ compile of the graph on a small CPU)."""
    device = "cuda" if DEVICES[1] == "cuda" else "cpu"
    backend = "inductor" if device == "cuda" else "aot_eager"
    torch.manual_seed(0)
    model = _Block().to(device).train()
    x = torch.randn(4, 8, 6, 6, device=device)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    outs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(calls):
            out = compiled(x)
            out.sum().backward()
            outs.append(out.detach())
    stats = dict(torch._dynamo.utils.counters["stats"])
    torch._dynamo.reset()
    return stats, outs, model


def test_compile_fullgraph_compiles_once():
    # One graph over 10 calls: no recompilation (fullgraph=True raises on a graph break).
    stats, outs, model = _compiled_calls()
    assert stats["unique_graphs"] == 1, stats
    assert all(torch.isfinite(o).all() for o in outs)
    assert all(p.grad is not None for p in model.parameters())


def test_compile_fullgraph_draws_fresh_masks():
    # Every call of the compiled model draws new masks (the seed is not baked into the graph).
    # 5 calls, under dynamo's recompile limit (8): this checks the masks even where the op layer
    # recompiles (which test_compile_fullgraph_compiles_once reports on its own).
    _, outs, _ = _compiled_calls(5)
    for k in range(1, len(outs)):
        assert not torch.equal(outs[0], outs[k]), f"call {k} repeated call 0's masks"
