"""The eager routes (``keep_mask``, ``broadcast_keep_mask``, ``alpha_mask``) and the custom ops
agree bit for bit, with and without gradients; tracing takes the ops."""

import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx

from dropkit import rng
from dropkit.kernels import ops


def _elementwise(route):
    return lambda x, seed, offset, threshold, scale: route(x, seed, offset, threshold, scale)


def _broadcast(route):
    def call(x, seed, offset, threshold, scale):
        mask_shape = [x.shape[0]] + [1] * (x.dim() - 1)
        return route(x, seed, offset, threshold, scale, mask_shape)

    return call


def _alpha(route, feature: bool):
    def call(x, seed, offset, threshold, scale):
        mask_shape = list(x.shape)
        if feature:
            mask_shape = [x.shape[0]] + [1] * (x.dim() - 1)
        return route(x, seed, offset, threshold, scale, 0.25, -1.5, mask_shape)

    return call


ROUTE_PAIRS = {
    "alpha": (_alpha(ops.alpha_mask, False), _alpha(torch.ops.dropkit.alpha_mask_apply, False)),
    "feature alpha": (
        _alpha(ops.alpha_mask, True),
        _alpha(torch.ops.dropkit.alpha_mask_apply, True),
    ),
    "elementwise": (_elementwise(ops.keep_mask), _elementwise(torch.ops.dropkit.keep_mask_apply)),
    "broadcast": (
        _broadcast(ops.broadcast_keep_mask),
        _broadcast(torch.ops.dropkit.broadcast_keep_mask_apply),
    ),
}


def _both_routes(kind: str, x: torch.Tensor, seed: int, threshold: int, scale: float):
    outputs, grads = [], []
    for route in ROUTE_PAIRS[kind]:
        leaf = x.detach().clone().requires_grad_()
        source = leaf.t() if leaf.dim() == 2 else leaf  # a non-contiguous input
        y = route(source, ops.seed_tensor(seed), 3, threshold, scale)
        (grad,) = torch.autograd.grad(y, leaf, torch.arange(y.numel()).reshape(y.shape).to(y))
        outputs.append(y)
        grads.append(grad)
    return outputs, grads


@pytest.mark.parametrize("kind", sorted(ROUTE_PAIRS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("shape", [(7,), (33, 65), (300, 257)])
def test_eager_route_equals_the_op(kind, dtype, shape):
    x = torch.randn(shape).to(dtype)
    (a, b), (ga, gb) = _both_routes(kind, x, 2**63 + 9, rng.keep_threshold(0.35), 1 / 0.65)
    assert a.dtype == b.dtype == dtype and a.is_contiguous()
    assert torch.equal(a, b)
    assert torch.equal(ga, gb)


@pytest.mark.parametrize("kind", sorted(ROUTE_PAIRS))
def test_eager_route_double_backward_matches_the_op(kind):
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    seed = ops.seed_tensor(4)
    results = []
    for route in ROUTE_PAIRS[kind]:
        y = route(x * x, seed, 0, rng.keep_threshold(0.5), 2.0)
        (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
        (gg,) = torch.autograd.grad(g.sum(), x)
        results.append((g.detach(), gg))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])


@pytest.mark.parametrize(
    "kind, op_name",
    [
        ("elementwise", "dropkit.keep_mask_apply"),
        ("broadcast", "dropkit.broadcast_keep_mask_apply"),
        ("alpha", "dropkit.alpha_mask_apply"),
    ],
)
def test_tracing_takes_the_custom_op(kind, op_name):
    seed = ops.seed_tensor(1)
    eager_route = ROUTE_PAIRS[kind][0]
    graph = make_fx(lambda t: eager_route(t, seed, 0, rng.keep_threshold(0.5), 2.0))(
        torch.randn(8, 3)
    )
    assert op_name in graph.code


@pytest.mark.parametrize("kind", sorted(ROUTE_PAIRS))
def test_eager_route_keeps_no_tensor_for_backward(kind):
    x = torch.randn(64, 64, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        ROUTE_PAIRS[kind][0](x, ops.seed_tensor(5), 0, rng.keep_threshold(0.5), 2.0)
    assert saved == []


@pytest.mark.parametrize("kind", sorted(ROUTE_PAIRS))
def test_no_grad_route_equals_the_op(kind):
    x = torch.randn(33, 65)
    eager_route, op_route = ROUTE_PAIRS[kind]
    with torch.no_grad():
        a = eager_route(x, ops.seed_tensor(11), 2, rng.keep_threshold(0.3), 1 / 0.7)
    b = op_route(x, ops.seed_tensor(11), 2, rng.keep_threshold(0.3), 1 / 0.7)
    assert a.grad_fn is None and torch.equal(a, b)
