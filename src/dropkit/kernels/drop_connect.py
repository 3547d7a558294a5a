"""DropConnect's custom ops: masked linear and conv2d layers whose backward regenerates the mask.

The weight mask is a pure function of ``(seed, offset, weight element)``, so the ops save the
input, the weight and the 8-byte seed (the input and the weight are what any linear layer saves)
and redraw the masked weight in backward; no mask and no masked weight lives between forward and
backward. The gradient with respect to the weight is the unmasked gradient multiplied by the same
multiplier, i.e. ``dropkit::keep_mask_apply`` applied to it.

- ``dropkit::drop_connect_linear(input, weight, bias, seed, offset, threshold, scale)``:
  ``linear(input, W * M * scale, bias)``; weight element ``k`` (row-major) reads stream word
  ``k + offset``.
- ``dropkit::drop_connect_conv2d(input, weight, bias, seed, offset, threshold, scale, stride,
  padding, dilation, groups)``: the same for ``conv2d`` on a batched ``(N, C, H, W)`` input with
  numeric padding.
- ``dropkit::drop_connect_linear_per_sample(input, weight, seed, offset, threshold, scale,
  chunk)``: input ``(N, L, in)``; sample ``n`` uses its own mask, weight element ``k`` reading
  word ``n * weight.numel() + k + offset``. Masked weights are formed ``chunk`` samples at a time
  (``chunk * out * in`` elements of temporary memory), never ``N x out x in`` at once unless
  ``chunk >= N``; backward redraws them chunk by chunk.
- ``dropkit::drop_connect_conv2d_per_sample(input, weight, seed, offset, threshold, scale,
  stride, padding, dilation, groups, chunk)``: the same for ``conv2d``; a chunk of ``c`` samples
  runs as one grouped convolution with ``c * groups`` groups and ``c`` masked kernels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dropkit import kernels
from dropkit.kernels.ops import keep_mask_apply

__all__ = [
    "drop_connect_conv2d",
    "drop_connect_conv2d_per_sample",
    "drop_connect_linear",
    "drop_connect_linear_per_sample",
]


def _masked(weight: torch.Tensor, seed: torch.Tensor, offset: int, threshold: int, scale: float):
    return kernels.apply_keep_mask(weight.contiguous(), int(seed), offset, threshold, scale)


# ---------------------------------------------------------------------------------------------
# One mask per batch, Linear.


@torch.library.custom_op("dropkit::drop_connect_linear", mutates_args=())
def drop_connect_linear(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    seed: torch.Tensor,
    offset: int,
    threshold: int,
    scale: float,
) -> torch.Tensor:
    """``linear(input, W * M * scale, bias)`` with the mask ``M`` drawn from the stream."""
    return F.linear(input, _masked(weight, seed, offset, threshold, scale), bias)


@drop_connect_linear.register_fake
def _linear_fake(input, weight, bias, seed, offset, threshold, scale):
    return input.new_empty((*input.shape[:-1], weight.shape[0]))


def _linear_setup(ctx, inputs, output) -> None:
    input, weight, bias, seed, offset, threshold, scale = inputs
    ctx.save_for_backward(input, weight, seed)
    ctx.args = (offset, threshold, scale)


def _linear_backward(ctx, grad: torch.Tensor):
    input, weight, seed = ctx.saved_tensors
    offset, threshold, scale = ctx.args
    need_input, need_weight, need_bias = ctx.needs_input_grad[:3]
    grad_2d = grad.reshape(-1, weight.shape[0])
    grad_input = grad_weight = grad_bias = None
    if need_input:
        # The custom op, not the kernel: backward is traced by compilers, which cannot read seed.
        grad_input = grad @ keep_mask_apply(weight, seed, offset, threshold, scale)
    if need_weight:
        unmasked = grad_2d.t() @ input.reshape(-1, weight.shape[1])
        grad_weight = keep_mask_apply(unmasked, seed, offset, threshold, scale)
    if need_bias:
        grad_bias = grad_2d.sum(0)
    return grad_input, grad_weight, grad_bias, None, None, None, None


drop_connect_linear.register_autograd(_linear_backward, setup_context=_linear_setup)


# ---------------------------------------------------------------------------------------------
# One mask per batch, Conv2d.


@torch.library.custom_op("dropkit::drop_connect_conv2d", mutates_args=())
def drop_connect_conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    seed: torch.Tensor,
    offset: int,
    threshold: int,
    scale: float,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
) -> torch.Tensor:
    """``conv2d(input, W * M * scale, bias, ...)`` on a batched input with numeric padding."""
    masked = _masked(weight, seed, offset, threshold, scale)
    return F.conv2d(input, masked, bias, stride, padding, dilation, groups)


@drop_connect_conv2d.register_fake
def _conv_fake(input, weight, bias, seed, offset, threshold, scale, stride, padding, dilation,
               groups):  # fmt: skip
    return F.conv2d(input, weight, bias, stride, padding, dilation, groups)


def _conv_setup(ctx, inputs, output) -> None:
    input, weight, bias, seed, offset, threshold, scale, stride, padding, dilation, groups = inputs
    ctx.save_for_backward(input, weight, seed)
    ctx.args = (offset, threshold, scale)
    ctx.conv = (stride, padding, dilation, groups)
    ctx.has_bias = bias is not None


def _conv_backward(ctx, grad: torch.Tensor):
    input, weight, seed = ctx.saved_tensors
    offset, threshold, scale = ctx.args
    stride, padding, dilation, groups = ctx.conv
    need_input, need_weight, need_bias = ctx.needs_input_grad[:3]
    grad_input, unmasked, grad_bias = torch.ops.aten.convolution_backward(
        grad.contiguous(),
        input,
        keep_mask_apply(weight, seed, offset, threshold, scale),
        [weight.shape[0]] if ctx.has_bias else None,
        stride,
        padding,
        dilation,
        False,
        [0, 0],
        groups,
        [need_input, need_weight, need_bias and ctx.has_bias],
    )
    grad_weight = None
    if need_weight:
        grad_weight = keep_mask_apply(unmasked, seed, offset, threshold, scale)
    return (grad_input if need_input else None, grad_weight,
            grad_bias if need_bias else None) + (None,) * 8  # fmt: skip


drop_connect_conv2d.register_autograd(_conv_backward, setup_context=_conv_setup)


# ---------------------------------------------------------------------------------------------
# One mask per sample, Linear.


def _chunks(n: int, chunk: int):
    for start in range(0, n, chunk):
        yield start, min(n, start + chunk)


def _per_sample_masked(weight, seed, offset, threshold, scale, start, stop):
    # Samples [start, stop) as one contiguous (c, out, in) block: sample n's mask starts at
    # stream element n * weight.numel(), which is where the flattened block puts it.
    # clone, not contiguous(): a one-sample expand is already contiguous and would alias W.
    block = weight.expand(stop - start, *weight.shape).clone(memory_format=torch.contiguous_format)
    first = offset + start * weight.numel()
    return kernels.apply_keep_mask(block, int(seed), first, threshold, scale, out=block)


@torch.library.custom_op("dropkit::drop_connect_linear_per_sample", mutates_args=())
def drop_connect_linear_per_sample(
    input: torch.Tensor,
    weight: torch.Tensor,
    seed: torch.Tensor,
    offset: int,
    threshold: int,
    scale: float,
    chunk: int,
) -> torch.Tensor:
    """``out[n] = input[n] @ (W * M_n * scale)^T``; input ``(N, L, in)``, output ``(N, L, out)``."""
    out = input.new_empty(input.shape[0], input.shape[1], weight.shape[0])
    for start, stop in _chunks(input.shape[0], chunk):
        masked = _per_sample_masked(weight, seed, offset, threshold, scale, start, stop)
        torch.bmm(input[start:stop], masked.transpose(1, 2), out=out[start:stop])
    return out


@drop_connect_linear_per_sample.register_fake
def _per_sample_fake(input, weight, seed, offset, threshold, scale, chunk):
    return input.new_empty(input.shape[0], input.shape[1], weight.shape[0])


@torch.library.custom_op("dropkit::drop_connect_linear_per_sample_backward", mutates_args=())
def drop_connect_linear_per_sample_backward(
    grad: torch.Tensor,
    input: torch.Tensor,
    weight: torch.Tensor,
    seed: torch.Tensor,
    offset: int,
    threshold: int,
    scale: float,
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(grad_input, grad_weight)`` of the per-sample op, redrawing the masks chunk by chunk."""
    grad_input = torch.empty_like(input)
    grad_weight = torch.zeros_like(weight)
    for start, stop in _chunks(input.shape[0], chunk):
        masked = _per_sample_masked(weight, seed, offset, threshold, scale, start, stop)
        torch.bmm(grad[start:stop], masked, out=grad_input[start:stop])
        # sum_n M_n * s * (g_n^T x_n): the unmasked outer products, masked by the same stream.
        outer = torch.bmm(grad[start:stop].transpose(1, 2), input[start:stop])
        first = offset + start * weight.numel()
        kernels.apply_keep_mask(outer, int(seed), first, threshold, scale, out=outer)
        grad_weight += outer.sum(0)
    return grad_input, grad_weight


@drop_connect_linear_per_sample_backward.register_fake
def _per_sample_backward_fake(grad, input, weight, seed, offset, threshold, scale, chunk):
    return torch.empty_like(input), torch.empty_like(weight)


def _per_sample_setup(ctx, inputs, output) -> None:
    input, weight, seed, offset, threshold, scale, chunk = inputs
    ctx.save_for_backward(input, weight, seed)
    ctx.args = (offset, threshold, scale, chunk)


def _per_sample_backward(ctx, grad: torch.Tensor):
    input, weight, seed = ctx.saved_tensors
    grad_input, grad_weight = drop_connect_linear_per_sample_backward(
        grad.contiguous(), input, weight, seed, *ctx.args
    )
    return grad_input, grad_weight, None, None, None, None, None


drop_connect_linear_per_sample.register_autograd(
    _per_sample_backward, setup_context=_per_sample_setup
)


# ---------------------------------------------------------------------------------------------
# One mask per sample, Conv2d: the chunk's samples become groups of one grouped convolution.


def _grouped(input, masked, stride, padding, dilation, groups):
    count = masked.shape[0]
    kernel = masked.reshape(count * masked.shape[1], *masked.shape[2:])
    flat = input.reshape(1, -1, *input.shape[2:])
    out = F.conv2d(flat, kernel, None, stride, padding, dilation, groups * count)
    return out.reshape(count, masked.shape[1], *out.shape[2:])


@torch.library.custom_op("dropkit::drop_connect_conv2d_per_sample", mutates_args=())
def drop_connect_conv2d_per_sample(
    input: torch.Tensor,
    weight: torch.Tensor,
    seed: torch.Tensor,
    offset: int,
    threshold: int,
    scale: float,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    chunk: int,
) -> torch.Tensor:
    """``out[n] = conv2d(input[n], W * M_n * scale)``; sample ``n``'s mask at ``n * W.numel()``."""
    parts = []
    for start, stop in _chunks(input.shape[0], chunk):
        masked = _per_sample_masked(weight, seed, offset, threshold, scale, start, stop)
        parts.append(_grouped(input[start:stop], masked, stride, padding, dilation, groups))
    return torch.cat(parts)


@drop_connect_conv2d_per_sample.register_fake
def _conv_per_sample_fake(input, weight, seed, offset, threshold, scale, stride, padding,
                          dilation, groups, chunk):  # fmt: skip
    return F.conv2d(input, weight, None, stride, padding, dilation, groups)


@torch.library.custom_op("dropkit::drop_connect_conv2d_per_sample_backward", mutates_args=())
def drop_connect_conv2d_per_sample_backward(
    grad: torch.Tensor,
    input: torch.Tensor,
    weight: torch.Tensor,
    seed: torch.Tensor,
    offset: int,
    threshold: int,
    scale: float,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(grad_input, grad_weight)`` of the per-sample conv, redrawing the masks by chunks."""
    grad_input = torch.empty_like(input)
    grad_weight = torch.zeros_like(weight)
    for start, stop in _chunks(input.shape[0], chunk):
        count = stop - start
        masked = _per_sample_masked(weight, seed, offset, threshold, scale, start, stop)
        kernel = masked.reshape(count * weight.shape[0], *weight.shape[1:])
        g_in, g_kernel, _ = torch.ops.aten.convolution_backward(
            grad[start:stop].reshape(1, -1, *grad.shape[2:]).contiguous(),
            input[start:stop].reshape(1, -1, *input.shape[2:]),
            kernel,
            None,
            stride,
            padding,
            dilation,
            False,
            [0, 0],
            groups * count,
            [True, True, False],
        )
        grad_input[start:stop] = g_in.reshape(count, *input.shape[1:])
        g_kernel = g_kernel.reshape(count, *weight.shape).contiguous()
        first = offset + start * weight.numel()
        kernels.apply_keep_mask(g_kernel, int(seed), first, threshold, scale, out=g_kernel)
        grad_weight += g_kernel.sum(0)
    return grad_input, grad_weight


@drop_connect_conv2d_per_sample_backward.register_fake
def _conv_per_sample_backward_fake(grad, input, weight, seed, offset, threshold, scale, stride,
                                   padding, dilation, groups, chunk):  # fmt: skip
    return torch.empty_like(input), torch.empty_like(weight)


def _conv_per_sample_setup(ctx, inputs, output) -> None:
    input, weight, seed = inputs[:3]
    ctx.save_for_backward(input, weight, seed)
    ctx.args = inputs[3:]


def _conv_per_sample_backward(ctx, grad: torch.Tensor):
    input, weight, seed = ctx.saved_tensors
    grad_input, grad_weight = drop_connect_conv2d_per_sample_backward(
        grad.contiguous(), input, weight, seed, *ctx.args
    )
    return (grad_input, grad_weight) + (None,) * 9


drop_connect_conv2d_per_sample.register_autograd(
    _conv_per_sample_backward, setup_context=_conv_per_sample_setup
)
