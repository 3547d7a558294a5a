"""dropkit's PyTorch custom operators.

They make dropkit opaque to ``torch.compile`` and ``torch.export`` (no graph breaks, and Inductor
cannot swap dropkit's stream for its own RNG) and carry the autograd rule that keeps no mask:

- ``dropkit::draw_seed(like, site)`` draws a fresh 64-bit seed from the default CPU generator as a
  0-d int64 CPU tensor. ``site`` is a distinct constant per traced call: the
  ``nondeterministic_seeded`` tag alone did not stop AOT autograd from merging two draws of one
  graph into one (two dropouts then shared a mask), while distinct arguments cannot be merged.
- ``dropkit::keep_mask_apply(x, seed, offset, threshold, scale)`` returns
  ``x * (scale if word >= threshold else 0)``. It is linear in ``x`` with the same multiplier, so
  its backward is the same op applied to the incoming gradient: only the seed (8 bytes) is saved.
- ``dropkit::keep_mask_apply_`` is the in-place form (no autograd; used when no grad is needed).
- ``dropkit::broadcast_keep_mask_apply(x, seed, offset, threshold, scale, mask_shape)``: the same
  with one mask over ``mask_shape`` (broadcastable to ``x``, same rank) broadcast over ``x``; the
  stream indexes the mask's elements. The base of spatial, locked and drop-path style methods.
- ``dropkit::alpha_mask_apply(x, seed, offset, threshold, a, kept_shift, dropped_value,
  mask_shape)``: alpha dropout, ``a * x + kept_shift`` where kept and ``dropped_value`` where
  dropped; its gradient is ``a * m`` (the broadcast op again), so again only the seed is saved.

The seed travels as a tensor, not a Python int: an ``.item()`` in traced code would break the graph.

:func:`keep_mask`, :func:`broadcast_keep_mask` and :func:`alpha_mask` are what callers use: in
plain eager mode on CPU tensors they run the same computation through a ``torch.autograd.Function``
(the seed kept as a Python int, nothing saved), or call the kernel directly when no gradient is
needed, because the custom op's Python dispatch costs about 70 us per forward+backward, more than
the kernel itself for a 100x800 activation; under ``torch.compile``, ``torch.export``, ``make_fx``,
fake or meta tensors and functorch transforms they call the op.
Both paths give bit-identical results.
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

from dropkit import kernels, rng
from dropkit.kernels import reference
from dropkit.kernels._memory import empty_output

__all__ = [
    "alpha_mask",
    "alpha_mask_apply",
    "keep_mask",
    "broadcast_keep_mask",
    "broadcast_keep_mask_apply",
    "draw_seed",
    "keep_mask_apply",
    "keep_mask_apply_",
    "seed_tensor",
]

_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1


def seed_tensor(seed: int | torch.Tensor) -> torch.Tensor:
    """A 0-d int64 CPU tensor holding ``seed`` (ints in [-2**63, 2**64) wrap to int64)."""
    if isinstance(seed, torch.Tensor):
        if seed.numel() != 1 or seed.dtype.is_floating_point or seed.dtype.is_complex:
            raise ValueError(
                f"seed must be an int or a one-element integer tensor, got {seed.dtype} "
                f"tensor of shape {tuple(seed.shape)}"
            )
        return seed.reshape(()).to(device="cpu", dtype=torch.int64)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not _INT64_MIN <= seed <= _UINT64_MAX:
        raise ValueError(f"seed must lie in [-2**63, 2**64 - 1], got {seed}")
    if seed >= 2**63:
        seed -= 2**64
    return torch.tensor(seed, dtype=torch.int64)


@torch.library.custom_op(
    "dropkit::draw_seed", mutates_args=(), tags=(torch.Tag.nondeterministic_seeded,)
)
def draw_seed(like: torch.Tensor, site: int) -> torch.Tensor:
    """Draw a seed from the default CPU generator; ``like`` and ``site`` only keep draws apart."""
    return rng.draw_seed_tensor()


@draw_seed.register_fake
def _draw_seed_fake(like: torch.Tensor, site: int) -> torch.Tensor:
    return torch.empty((), dtype=torch.int64, device="cpu")


@torch.library.custom_op("dropkit::keep_mask_apply", mutates_args=())
def keep_mask_apply(
    x: torch.Tensor, seed: torch.Tensor, offset: int, threshold: int, scale: float
) -> torch.Tensor:
    """``x * (scale if stream word >= threshold else 0)``; a new contiguous tensor."""
    return kernels.apply_keep_mask(x.contiguous(), int(seed), offset, threshold, scale)


@keep_mask_apply.register_fake
def _keep_mask_apply_fake(x, seed, offset, threshold, scale):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output) -> None:
    _, seed, offset, threshold, scale = inputs
    ctx.save_for_backward(seed)
    ctx.offset, ctx.threshold, ctx.scale = offset, threshold, scale


def _backward(ctx, grad: torch.Tensor):
    (seed,) = ctx.saved_tensors
    grad_input = keep_mask_apply(grad, seed, ctx.offset, ctx.threshold, ctx.scale)
    return grad_input, None, None, None, None


keep_mask_apply.register_autograd(_backward, setup_context=_setup_context)


class _KeepMask(torch.autograd.Function):
    """Eager ``keep_mask_apply``: the same kernel, the backward the same function again."""

    @staticmethod
    def forward(ctx, x, seed: int, offset: int, threshold: int, scale: float):
        ctx.stream = (seed, offset, threshold, scale)
        return kernels.apply_keep_mask(x.contiguous(), seed, offset, threshold, scale)

    @staticmethod
    def backward(ctx, grad):
        return _eager_keep_mask(grad, *ctx.stream), None, None, None, None


def _needs_graph(x: torch.Tensor) -> bool:
    """Whether autograd must record this call (also in a backward run with ``create_graph=True``);
    otherwise the eager routes call the computation directly."""
    return x.requires_grad and torch.is_grad_enabled()


def _eager_keep_mask(x, seed: int, offset, threshold, scale) -> torch.Tensor:
    """The eager route: the kernel, through :class:`_KeepMask` only when a graph is needed."""
    if _needs_graph(x):
        return _KeepMask.apply(x, seed, offset, threshold, scale)
    return kernels.apply_keep_mask(x.contiguous(), seed, offset, threshold, scale)


def _plain_eager(x: torch.Tensor) -> bool:
    """Whether nothing traces, fakes or transforms this call (then the op is not needed)."""
    return (
        x.is_cpu
        and type(x) in (torch.Tensor, torch.nn.Parameter)
        and not torch.compiler.is_compiling()
        and not torch._C._functorch.is_functorch_wrapped_tensor(x)
        and not torch._C._is_torch_function_mode_enabled()
        and _get_current_dispatch_mode() is None
    )


def keep_mask(
    x: torch.Tensor, seed: torch.Tensor, offset: int, threshold: int, scale: float
) -> torch.Tensor:
    """``keep_mask_apply`` with autograd, by the cheaper of two equivalent routes (module doc)."""
    if _plain_eager(x):
        return _eager_keep_mask(x, int(seed), offset, threshold, scale)
    return torch.ops.dropkit.keep_mask_apply(x, seed, offset, threshold, scale)


@torch.library.custom_op("dropkit::keep_mask_apply_", mutates_args=("x",))
def keep_mask_apply_(
    x: torch.Tensor, seed: torch.Tensor, offset: int, threshold: int, scale: float
) -> None:
    """In-place ``keep_mask_apply``."""
    if x.is_contiguous():
        kernels.apply_keep_mask(x, int(seed), offset, threshold, scale, out=x)
    else:
        x.copy_(kernels.apply_keep_mask(x.contiguous(), int(seed), offset, threshold, scale))


@keep_mask_apply_.register_fake
def _keep_mask_apply__fake(x, seed, offset, threshold, scale) -> None:
    return None


def _broadcast_apply(x, seed: int, offset, threshold, scale, mask_shape) -> torch.Tensor:
    acc = reference.accumulation_dtype(x.dtype)
    # The multiplier comes from the fast backend (ones * scale is exact), then one broadcast
    # multiply forms the product in the accumulation dtype, exactly as the reference defines it.
    multiplier = _multiplier(mask_shape, seed, offset, threshold, scale, acc, x.device)
    if x.device.type == "cpu":
        # A mixed-dtype mul computes in the promoted (accumulation) dtype and rounds once into
        # ``out``: the reference's values without a full-size temporary.
        return torch.mul(x, multiplier, out=empty_output(x))
    return (x.to(acc) * multiplier).to(x.dtype).contiguous()


@torch.library.custom_op("dropkit::broadcast_keep_mask_apply", mutates_args=())
def broadcast_keep_mask_apply(
    x: torch.Tensor,
    seed: torch.Tensor,
    offset: int,
    threshold: int,
    scale: float,
    mask_shape: list[int],
) -> torch.Tensor:
    """``x * multiplier`` with the multiplier drawn over ``mask_shape`` and broadcast over ``x``."""
    return _broadcast_apply(x, int(seed), offset, threshold, scale, mask_shape)


@broadcast_keep_mask_apply.register_fake
def _broadcast_keep_mask_apply_fake(x, seed, offset, threshold, scale, mask_shape):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _broadcast_setup_context(ctx, inputs, output) -> None:
    _, seed, offset, threshold, scale, mask_shape = inputs
    ctx.save_for_backward(seed)
    ctx.args = (offset, threshold, scale, mask_shape)


def _broadcast_backward(ctx, grad: torch.Tensor):
    (seed,) = ctx.saved_tensors
    return broadcast_keep_mask_apply(grad, seed, *ctx.args), None, None, None, None, None


broadcast_keep_mask_apply.register_autograd(
    _broadcast_backward, setup_context=_broadcast_setup_context
)


class _BroadcastKeepMask(torch.autograd.Function):
    """Eager ``broadcast_keep_mask_apply``; like :class:`_KeepMask`, its backward is itself."""

    @staticmethod
    def forward(ctx, x, seed: int, offset: int, threshold: int, scale: float, mask_shape):
        ctx.stream = (seed, offset, threshold, scale, mask_shape)
        return _broadcast_apply(x, seed, offset, threshold, scale, mask_shape)

    @staticmethod
    def backward(ctx, grad):
        return _eager_broadcast_keep_mask(grad, *ctx.stream), None, None, None, None, None


def _eager_broadcast_keep_mask(x, seed: int, offset, threshold, scale, mask_shape):
    """As :func:`_eager_keep_mask`, for a broadcast mask."""
    if _needs_graph(x):
        return _BroadcastKeepMask.apply(x, seed, offset, threshold, scale, mask_shape)
    return _broadcast_apply(x, seed, offset, threshold, scale, mask_shape)


def broadcast_keep_mask(
    x: torch.Tensor,
    seed: torch.Tensor,
    offset: int,
    threshold: int,
    scale: float,
    mask_shape: list[int],
) -> torch.Tensor:
    """``broadcast_keep_mask_apply`` with autograd, by the cheaper route (as :func:`keep_mask`)."""
    if _plain_eager(x):
        return _eager_broadcast_keep_mask(x, int(seed), offset, threshold, scale, list(mask_shape))
    return torch.ops.dropkit.broadcast_keep_mask_apply(
        x, seed, offset, threshold, scale, list(mask_shape)
    )


def _multiplier(mask_shape, seed, offset, threshold, scale, acc, device) -> torch.Tensor:
    ones = torch.ones(mask_shape, dtype=acc, device=device)
    return kernels.apply_keep_mask(ones, seed, offset, threshold, scale, out=ones)


def _alpha_apply(x, seed: int, offset, threshold, a, kept_shift, dropped_value, mask_shape):
    acc = reference.accumulation_dtype(x.dtype)
    multiplier = _multiplier(mask_shape, seed, offset, threshold, a, acc, x.device)
    shift = torch.where(
        multiplier != 0,
        torch.tensor(kept_shift, dtype=acc, device=x.device),
        torch.tensor(dropped_value, dtype=acc, device=x.device),
    )
    if list(x.shape) == list(mask_shape):
        return torch.addcmul(shift, x.to(acc), multiplier).to(x.dtype).contiguous()
    # addcmul with two broadcast operands misses torch's vectorised CPU loop (about 1.3x slower
    # than a broadcast multiply followed by an in-place broadcast add); the rounding is the same.
    return (x.to(acc) * multiplier).add_(shift).to(x.dtype).contiguous()


@torch.library.custom_op("dropkit::alpha_mask_apply", mutates_args=())
def alpha_mask_apply(
    x: torch.Tensor,
    seed: torch.Tensor,
    offset: int,
    threshold: int,
    a: float,
    kept_shift: float,
    dropped_value: float,
    mask_shape: list[int],
) -> torch.Tensor:
    """Alpha dropout's affine map: ``a x + kept_shift`` where kept, ``dropped_value`` elsewhere."""
    return _alpha_apply(x, int(seed), offset, threshold, a, kept_shift, dropped_value, mask_shape)


@alpha_mask_apply.register_fake
def _alpha_fake(x, seed, offset, threshold, a, kept_shift, dropped_value, mask_shape):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _alpha_setup_context(ctx, inputs, output) -> None:
    _, seed, offset, threshold, a, _, _, mask_shape = inputs
    ctx.save_for_backward(seed)
    ctx.args = (offset, threshold, a, mask_shape)


def _alpha_backward(ctx, grad: torch.Tensor):
    (seed,) = ctx.saved_tensors
    return (_alpha_grad(grad, seed, *ctx.args),) + (None,) * 7


alpha_mask_apply.register_autograd(_alpha_backward, setup_context=_alpha_setup_context)


def _alpha_grad(grad, seed, offset, threshold, a, mask_shape, *, eager=False) -> torch.Tensor:
    """``grad * a * m``: the gradient of the affine map. ``eager``: inside the eager route, where
    the seed is a Python int (else a seed tensor, routed as :func:`keep_mask` routes)."""
    if list(grad.shape) == list(mask_shape):
        # Elementwise mask: the fused kernel regenerates and applies it in one pass.
        route = _eager_keep_mask if eager else keep_mask
        return route(grad, seed, offset, threshold, a)
    route = _eager_broadcast_keep_mask if eager else broadcast_keep_mask
    return route(grad, seed, offset, threshold, a, mask_shape)


class _AlphaMask(torch.autograd.Function):
    """Eager ``alpha_mask_apply``; its backward multiplies by ``a * m`` (no tensor saved)."""

    @staticmethod
    def forward(ctx, x, seed: int, offset, threshold, a, kept_shift, dropped_value, mask_shape):
        ctx.stream = (seed, offset, threshold, a, mask_shape)
        return _alpha_apply(x, seed, offset, threshold, a, kept_shift, dropped_value, mask_shape)

    @staticmethod
    def backward(ctx, grad):
        return (_alpha_grad(grad, *ctx.stream, eager=True),) + (None,) * 7


def alpha_mask(
    x: torch.Tensor,
    seed: torch.Tensor,
    offset: int,
    threshold: int,
    a: float,
    kept_shift: float,
    dropped_value: float,
    mask_shape: list[int],
) -> torch.Tensor:
    """``alpha_mask_apply`` with autograd, by the cheaper route (as :func:`keep_mask`)."""
    args = (offset, threshold, a, kept_shift, dropped_value, list(mask_shape))
    if _plain_eager(x):
        if _needs_graph(x):
            return _AlphaMask.apply(x, int(seed), *args)
        return _alpha_apply(x, int(seed), *args)
    return torch.ops.dropkit.alpha_mask_apply(x, seed, *args)
