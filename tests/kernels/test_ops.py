"""The eager route of ``keep_mask`` and the custom op agree bit for bit; tracing takes the op."""

import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx

from dropkit import rng
from dropkit.kernels import ops


def _both_routes(x: torch.Tensor, seed: int, threshold: int, scale: float):
    outputs, grads = [], []
    for route in (ops.keep_mask, torch.ops.dropkit.keep_mask_apply):
        leaf = x.detach().clone().requires_grad_()
        source = leaf.t() if leaf.dim() == 2 else leaf  # a non-contiguous input
        y = route(source, ops.seed_tensor(seed), 3, threshold, scale)
        (grad,) = torch.autograd.grad(y, leaf, torch.arange(y.numel()).reshape(y.shape).to(y))
        outputs.append(y)
        grads.append(grad)
    return outputs, grads


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("shape", [(7,), (33, 65), (300, 257)])
def test_eager_route_equals_the_op(dtype, shape):
    x = torch.randn(shape).to(dtype)
    (a, b), (ga, gb) = _both_routes(x, 2**63 + 9, rng.keep_threshold(0.35), 1 / 0.65)
    assert a.dtype == b.dtype == dtype and a.is_contiguous()
    assert torch.equal(a, b)
    assert torch.equal(ga, gb)


def test_eager_route_double_backward_matches_the_op():
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    seed = ops.seed_tensor(4)
    results = []
    for route in (ops.keep_mask, torch.ops.dropkit.keep_mask_apply):
        y = route(x * x, seed, 0, rng.keep_threshold(0.5), 2.0)
        (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
        (gg,) = torch.autograd.grad(g.sum(), x)
        results.append((g.detach(), gg))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])


def test_tracing_takes_the_custom_op():
    seed = ops.seed_tensor(1)
    graph = make_fx(lambda t: ops.keep_mask(t, seed, 0, rng.keep_threshold(0.5), 2.0))(
        torch.randn(8)
    )
    assert "dropkit.keep_mask_apply" in graph.code


def test_eager_route_keeps_no_tensor_for_backward():
    x = torch.randn(4096, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        ops.keep_mask(x, ops.seed_tensor(5), 0, rng.keep_threshold(0.5), 2.0)
    assert saved == []
