"""Every dropkit module and functional through the tools users reach for: torch.compile
(fullgraph), torch.export, torch.fx.symbolic_trace, torch.jit.trace (fresh masks on every call),
torch.jit.script (a clear refusal), pickling with a generator, and every memory layout (the output
keeps the input's layout; the mask is a function of the logical index)."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch

from dropkit import nn as dnn


def _embedding():
    layer = dnn.EmbeddingDropout(40, 6, p=0.5)
    return layer, torch.randint(0, 40, (4, 9))


class _Joined(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.policy = dnn.FractalDropPath(2, p=0.5, global_fraction=0.0)
        self.join = dnn.JoinDrop(self.policy, [0, 1])

    def forward(self, x):
        return self.join([x, 2 * x])


def _join():
    return _Joined(), torch.randn(8, 3, 5)


class _BiasDropoutAdd(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = dnn.BiasDropoutAdd(0.5)
        self.bias = torch.nn.Parameter(torch.randn(6))

    def forward(self, x):
        return self.layer(x, self.bias, x * 0.5)


# name -> () -> (module in training mode, example input)
MODULES = {
    "Dropout": lambda: (dnn.Dropout(0.5), torch.randn(8, 6, 5, 4)),
    "Dropout1d": lambda: (dnn.Dropout1d(0.5), torch.randn(8, 6, 20)),
    "Dropout2d": lambda: (dnn.Dropout2d(0.5), torch.randn(8, 6, 5, 4)),
    "Dropout3d": lambda: (dnn.Dropout3d(0.5), torch.randn(4, 6, 3, 5, 4)),
    "BroadcastDropout": lambda: (
        dnn.BroadcastDropout(0.5, noise_shape=(None, 1, None, 1)),
        torch.randn(8, 6, 5, 4),
    ),
    "LockedDropout": lambda: (dnn.LockedDropout(0.5), torch.randn(7, 8, 6)),
    "AlphaDropout": lambda: (dnn.AlphaDropout(0.5), torch.randn(8, 6, 5, 4)),
    "FeatureAlphaDropout": lambda: (dnn.FeatureAlphaDropout(0.5), torch.randn(8, 6, 5, 4)),
    "GaussianDropout": lambda: (dnn.GaussianDropout(0.5), torch.randn(8, 6, 5, 4)),
    "DropPath": lambda: (dnn.DropPath(0.5), torch.randn(16, 6, 5, 4)),
    "StochasticDepth": lambda: (dnn.StochasticDepth(0.5, "row"), torch.randn(16, 6, 5, 4)),
    "DropBlock2d": lambda: (dnn.DropBlock2d(0.3, 3), torch.randn(8, 6, 9, 9)),
    "DropBlock3d": lambda: (dnn.DropBlock3d(0.3, 3), torch.randn(4, 6, 5, 6, 5)),
    "DropBlock2d-clip-noise": lambda: (
        dnn.DropBlock2d(0.3, 3, border="clip", noise=True),
        torch.randn(8, 6, 9, 9),
    ),
    "Cutout": lambda: (dnn.Cutout(3, n_holes=2), torch.randn(8, 6, 9, 9)),
    "DropConnectLinear": lambda: (dnn.DropConnectLinear(4, 5, p=0.5), torch.randn(8, 6, 4)),
    "DropConnectLinear-per-sample": lambda: (
        dnn.DropConnectLinear(4, 5, p=0.5, per_sample=True),
        torch.randn(8, 6, 4),
    ),
    "DropConnectConv2d": lambda: (dnn.DropConnectConv2d(6, 3, 3, p=0.5), torch.randn(4, 6, 7, 7)),
    "DropConnectConv2d-per-sample": lambda: (
        dnn.DropConnectConv2d(6, 3, 3, p=0.5, per_sample=True),
        torch.randn(4, 6, 7, 7),
    ),
    "DropConnectLinear-moment-matching": lambda: (
        dnn.DropConnectLinear(
            4, 5, p=0.5, inference="moment_matching", samples=20, activation=torch.nn.ReLU()
        ).eval(),
        torch.randn(8, 4),
    ),  # fmt: skip
    "EmbeddingDropout": _embedding,
    "JoinDrop": _join,
    "BiasDropoutAdd": lambda: (_BiasDropoutAdd(), torch.randn(8, 5, 6)),
}
# Layers whose forward is not a function of a per-element, per-sample mask of the input alone.
NOT_ELEMENTWISE = {"EmbeddingDropout", "DropConnectLinear", "DropConnectLinear-per-sample",
                   "DropConnectLinear-moment-matching",
                   "DropConnectConv2d", "DropConnectConv2d-per-sample", "JoinDrop"}  # fmt: skip
FLOAT_INPUT = [n for n in MODULES if n != "EmbeddingDropout"]


def _draws_differ(module, x, calls=2) -> bool:
    outs = [module(x) for _ in range(calls)]
    return not torch.equal(outs[0], outs[1])


def _compat_modules():
    from dropkit.compat import timm, torchvision

    image = torch.randn(4, 6, 9, 9)
    return {
        "timm.DropPath": (timm.DropPath(0.3), torch.randn(64, 6, 5)),
        "timm.DropBlock2d": (timm.DropBlock2d(0.3, 3), image),
        "torchvision.StochasticDepth": (
            torchvision.StochasticDepth(0.3, "row"),
            torch.randn(64, 5),
        ),
        "torchvision.DropBlock2d": (torchvision.DropBlock2d(0.3, 3), image),
        "torchvision.DropBlock3d": (torchvision.DropBlock3d(0.3, 3), torch.randn(2, 3, 5, 6, 5)),
    }


COMPAT = sorted(_compat_modules())


@pytest.mark.parametrize("name", sorted(MODULES) + COMPAT)
def test_compiled_in_training_compiles_once_and_draws_fresh_masks(name):
    """20 calls of the compiled module: one graph (dynamo's counters), a new mask every call."""
    from torch._dynamo.utils import counters

    module, x = MODULES[name]() if name in MODULES else _compat_modules()[name]
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    torch.manual_seed(0)  # the masks drawn (and so the verdict) do not depend on earlier tests
    outs = [compiled(x) for _ in range(20)]
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["recompiles"])
    if name != "DropConnectLinear-moment-matching":  # evaluation: Monte-Carlo moments, fixed
        assert all(not torch.equal(a, b) for a, b in zip(outs, outs[1:]))


@pytest.mark.parametrize("name", sorted(MODULES))
def test_compile_fullgraph_matches_eager(name):
    # aot_eager runs the recorded seed draws as they are; Inductor replaces them with its own
    # generator unless torch._inductor.config.fallback_random is set (as for torch's dropout).
    module, x = MODULES[name]()
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    torch.manual_seed(3)
    eager = module(x)
    torch.manual_seed(3)
    assert torch.equal(compiled(x), eager)
    assert not torch.equal(compiled(x), eager)  # fresh seeds on the next call


@pytest.mark.parametrize("name", sorted(MODULES))
def test_export_draws_fresh_masks(name):
    module, x = MODULES[name]()
    program = torch.export.export(module, (x,))
    run = program.module()
    torch.manual_seed(4)
    first = run(x)
    torch.manual_seed(4)
    assert torch.equal(run(x), first) and _draws_differ(run, x)
    assert first.shape == module(x).shape


def test_fx_cannot_record_a_builtin_activation():
    """A known limit of torch.fx: a builtin function as an argument (activation=torch.relu) has no
    graph form; an nn.Module activation (torch.nn.ReLU()) traces (see the table)."""
    layer = dnn.DropConnectLinear(4, 5, activation=torch.relu).eval()
    with pytest.raises(NotImplementedError, match="argument of type"):
        torch.fx.symbolic_trace(layer)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_fx_symbolic_trace(name):
    module, x = MODULES[name]()
    graph = torch.fx.symbolic_trace(module)
    torch.manual_seed(5)
    want = module(x)
    torch.manual_seed(5)
    assert torch.equal(graph(x), want)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_jit_trace_draws_fresh_masks(name):
    module, x = MODULES[name]()
    traced = torch.jit.trace(module, (x,), check_trace=False)
    assert _draws_differ(traced, x), "a traced module must not replay one mask"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_jit_script_refuses_and_points_to_compile(name):
    module, _ = MODULES[name]()
    with pytest.raises(RuntimeError, match="torch.jit.script.*torch.compile"):
        torch.jit.script(module)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_generator_survives_pickle_deepcopy_and_save(name):
    module, x = MODULES[name]()
    stochastic = [m for m in module.modules() if hasattr(m, "generator")]
    for layer in stochastic:
        layer.generator = torch.Generator().manual_seed(7)
        layer.seed = None
    buffer = io.BytesIO()
    torch.save(module, buffer)
    copies = [pickle.loads(pickle.dumps(module)), copy.deepcopy(module)]
    buffer.seek(0)
    copies.append(torch.load(buffer, weights_only=False))
    want = module(x)
    for clone in copies:
        for layer in clone.modules():
            if hasattr(layer, "generator"):
                assert isinstance(layer.generator, torch.Generator)
                layer.generator.manual_seed(7)
        assert torch.equal(clone(x), want)


def _layouts(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same logical values in other memory layouts."""
    found = {}
    if x.dim() in (4, 5):
        fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
        found["channels_last"] = x.contiguous(memory_format=fmt)
    perm = list(range(x.dim()))[::-1]
    found["permuted"] = x.permute(perm).contiguous().permute(perm)
    big = torch.zeros([2 * s for s in x.shape])
    big[tuple(slice(None, None, 2) for _ in x.shape)] = x
    found["sliced"] = big[tuple(slice(None, None, 2) for _ in x.shape)]
    return found


@pytest.mark.parametrize("name", sorted(set(FLOAT_INPUT) - NOT_ELEMENTWISE))
def test_layouts_keep_strides_and_the_logical_mask(name):
    module, x = MODULES[name]()
    for seed in (11,):
        for layer in module.modules():
            if hasattr(layer, "seed"):
                layer.seed = seed
    leaf = x.clone().requires_grad_()
    want = module(leaf)
    (want_grad,) = torch.autograd.grad(want, leaf, torch.ones_like(want))
    for label, y in _layouts(x).items():
        y = y.detach().requires_grad_()
        got = module(y)
        assert torch.equal(got, want), label
        assert got.stride() == torch.empty_like(y).stride(), label
        (grad,) = torch.autograd.grad(got, y, torch.ones_like(got))
        assert torch.equal(grad, want_grad), label
