"""The operators: for every primitive and every factory-made method, ``torch.library.opcheck``
passes (schema, fake, autograd registration, AOT dispatch), the compiled CPU kernels and the
reference kernels agree bit for bit (forward, backward, double backward), the autograd rule saves
no tensor but the declared ones, and tracing records the operator."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx

from dropkit import ops, rng
from dropkit.kernels import seed_tensor

T = rng.keep_threshold(0.4)
KEEP = torch.ops.dropkit.keep.default
KEEP_AFFINE = torch.ops.dropkit.keep_affine.default
BLOCKS = torch.ops.dropkit.blocks.default


def _ids(shape):
    return (torch.arange(shape[0] * shape[1]).reshape(shape) * 7) % 50


def _cases():
    """name -> (operator, x shape, args after (x, seed, offset))."""
    x4 = (4, 3, 5, 6)
    return {
        "keep": (KEEP, x4, lambda s: (T, 2.5, list(s))),
        "keep-broadcast": (KEEP, x4, lambda s: (T, 2.5, [s[0], s[1], 1, 1])),
        "keep-broadcast-inner": (KEEP, x4, lambda s: (T, 2.5, [1, s[1], 1, s[3]])),
        "alpha": (KEEP_AFFINE, x4, lambda s: (T, 0.8, 0.3, -1.2, list(s))),
        "alpha-feature": (KEEP_AFFINE, x4, lambda s: (T, 0.8, 0.3, -1.2, [s[0], s[1], 1, 1])),
        "normal_noise": (ops.NORMAL_NOISE.op, x4, lambda s: (True, 0.7)),
        "blocks-valid": (BLOCKS, x4, lambda s: (True, T // 8, [3, 3], True, False,
                                                        "sample", 1e-6, False)),
        "blocks-clip-batch": (BLOCKS, x4, lambda s: (True, T // 8, [2, 3], False, True,
                                                            "batch", 1e-6, False)),
        "blocks-noise": (BLOCKS, x4, lambda s: (True, T // 8, [3, 3], False, True, "none",
                                                        1e-6, True)),
        "holes": (ops.HOLES.op, x4, lambda s: (True, 3, 2, 0.5)),
        "branches": (ops.BRANCHES.op, (3, 4, 5), lambda s: (True, T)),
        "embedding": (ops.EMBEDDING.op, (2, 5, 3), lambda s: (True, _ids(s[:2]), T, 2.0)),
    }  # fmt: skip


CASES = _cases()


def _args(name, x, seed):
    _, _, extra = CASES[name]
    return (x, seed, 3, *extra(list(x.shape)))


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("layout", ["contiguous", "permuted"])
def test_opcheck(name, layout):
    op, shape, _ = CASES[name]
    x = torch.randn(shape, dtype=torch.float64)
    if layout == "permuted":
        x = x.transpose(-1, -2).contiguous().transpose(-1, -2)
    torch.library.opcheck(op, _args(name, x.requires_grad_(), seed_tensor(9)))


def test_opcheck_stream_ops():
    x, w, b = torch.randn(6, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64), None
    seed = seed_tensor(5)
    x, w = x.requires_grad_(), w.requires_grad_()
    torch.library.opcheck(ops.LINEAR.op, (x, w, b, seed, 0, T, 2.0))
    torch.library.opcheck(ops.LINEAR_PER_SAMPLE.op, (x[:, None], w, seed, 0, T, 2.0, 2))
    img = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    k = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    conv = ([1, 1], [1, 1], [1, 1], 1)
    torch.library.opcheck(ops.CONV2D.op, (img, k, None, seed, 0, T, 2.0, *conv))
    torch.library.opcheck(ops.CONV2D_PER_SAMPLE.op, (img, k, seed, 0, T, 2.0, *conv, 1))
    torch.library.opcheck(ops.NORMAL.op, (x.detach(), seed, 4, [3, 2]))
    r = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.dropkit.bias_dropout_add.default, (x, bias, r, seed, 0, T, 2.0))


def _run(name, x, seed):
    op = CASES[name][0]
    leaf = x.detach().clone().requires_grad_()
    y = op(*_args(name, leaf, seed))
    weights = torch.arange(y.numel(), dtype=y.dtype).reshape(y.shape)
    (grad,) = torch.autograd.grad(y, leaf, weights)
    return y, grad


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_compiled_kernels_equal_the_reference(name, dtype, cpu_kernels):
    op, shape, _ = CASES[name]
    x = torch.randn(shape).to(dtype)
    with cpu_kernels("cpu"):
        a, ga = _run(name, x, seed_tensor(2**63 + 9))
    with cpu_kernels("reference"):
        b, gb = _run(name, x, seed_tensor(2**63 + 9))
    assert a.dtype == b.dtype == dtype
    assert torch.equal(a, b) and torch.equal(ga, gb)
    with torch.no_grad():
        c = op(*_args(name, x, seed_tensor(2**63 + 9)))
    assert c.grad_fn is None and torch.equal(c, b)


@pytest.mark.parametrize("name", sorted(CASES))
def test_double_backward_equals_the_reference(name, cpu_kernels):
    op, shape, _ = CASES[name]
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    results = []
    for kernels in ("cpu", "reference"):
        with cpu_kernels(kernels):
            y = op(*_args(name, x * x, seed_tensor(4)))
            (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
            (gg,) = torch.autograd.grad(g.sum(), x)
        results.append((g.detach(), gg))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


@pytest.mark.parametrize("name", sorted(CASES))
def test_autograd_saves_no_tensor_but_the_declared_ones(name):
    op, shape, _ = CASES[name]
    x = torch.randn(shape, requires_grad=True)
    args = _args(name, x, seed_tensor(5))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        op(*args)
    declared = [a for a in args[4:] if isinstance(a, torch.Tensor)]  # the ids of EMBEDDING
    assert len(saved) == len(declared) and all(s is d for s, d in zip(saved, declared))


@pytest.mark.parametrize("name", sorted(CASES))
def test_tracing_records_the_operator(name):
    op, shape, _ = CASES[name]
    graph = make_fx(lambda t: op(*_args(name, t, seed_tensor(1))))(torch.randn(shape))
    assert f"dropkit.{op._opname}" in graph.code


def test_gradcheck():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    for name in ("keep", "alpha", "normal_noise", "blocks-valid", "holes"):
        op = CASES[name][0]
        y = torch.randn(4, 3, 5, 6, dtype=torch.float64, requires_grad=True)
        torch.autograd.gradcheck(
            lambda t, op=op, name=name: op(*_args(name, t, seed_tensor(3))), (y,)
        )
    torch.autograd.gradcheck(lambda t: KEEP(t, seed_tensor(3), 0, T, 2.0, [3, 4]), (x,))


def test_schema_needs_a_seed():
    with pytest.raises(ValueError, match="'seed' is not in list|seed"):
        ops.StreamOp("no_seed_here", "Tensor x, int offset", lambda x, offset: x)


# -- docs/design/ops.md's example, run from the page itself (the op renamed) -----------------------
def _docs_example() -> dict:
    page = (Path(__file__).resolve().parents[2] / "docs" / "design" / "ops.md").read_text()
    code = re.search(r"```python exec=\"on\"[^\n]*\n(.*?)```", page, re.S).group(1)
    assert 'MaskOp("pairs"' in code
    namespace: dict = {}
    exec(code.replace('MaskOp("pairs"', 'MaskOp("test_pairs"'), namespace)
    return namespace


def test_a_new_method_in_twenty_lines():
    example = _docs_example()
    drop_channel_pairs, PAIRS = example["drop_channel_pairs"], example["PAIRS"]
    x = torch.randn(3, 6, 4, 5, dtype=torch.float64, requires_grad=True)
    y = drop_channel_pairs(x, 0.5, seed=3)
    kept = (y != 0).any(-1).any(-1)  # (N, C)
    assert torch.equal(kept[:, 0::2], kept[:, 1::2]) and 0 < kept.sum() < kept.numel()
    torch.library.opcheck(PAIRS.op, (x, seed_tensor(3), 0, True, T, 2.0))
    torch.autograd.gradcheck(lambda t: drop_channel_pairs(t, 0.5, seed=3), (x,))
    compiled = torch.compile(drop_channel_pairs, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(x, 0.5, seed=3), y)
    cl = x.detach().contiguous(memory_format=torch.channels_last)
    out = drop_channel_pairs(cl, 0.5, seed=3)
    assert out.is_contiguous(memory_format=torch.channels_last) and torch.equal(out, y.detach())


class _Recorder(torch.overrides.TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.seen.append(getattr(func, "__name__", func))
        return func(*args, **(kwargs or {}))


class _Tagged(torch.Tensor):
    """A subclass whose __torch_function__ marks that it received the public call."""

    calls: list = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if getattr(func, "__module__", "").startswith("dropkit.functional"):
            cls.calls.append(func.__name__)
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **(kwargs or {}))


def test_public_functionals_reach_torch_function_modes_and_subclasses():
    from dropkit import functional as F

    x = torch.randn(4, 3, 5, 5)
    with _Recorder() as mode:
        F.dropout(x, 0.3, seed=1)
        F.drop_branches([x, x], 0.3, seed=1)
    assert mode.seen[:1] == ["dropout"] and "drop_branches" in mode.seen

    _Tagged.calls.clear()
    tagged = x.as_subclass(_Tagged)
    F.dropout2d(tagged, 0.3, seed=1)  # the first argument
    F.dropout(x, p=0.3, seed=torch.tensor(1).as_subclass(_Tagged))  # a keyword argument
    F.drop_branches([x, tagged], 0.3, seed=1)  # inside a list
    assert _Tagged.calls[:3] == ["dropout2d", "dropout", "drop_branches"]
