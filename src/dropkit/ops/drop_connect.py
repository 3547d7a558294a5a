"""DropConnect's stream ops: masked linear and conv2d layers whose backward redraws the mask.

The weight mask is a pure function of ``(seed, offset, weight element)``: the ops save the input
and the weight (what any linear layer saves) and the 8-byte seed, and redraw the masked weight in
backward. The weight's gradient is the unmasked one times the same multiplier (:data:`KEEP`).

- ``linear``: ``linear(input, W * M * scale, bias)``; weight element ``k`` (row-major) reads
  stream word ``k + offset``.
- ``conv2d``: the same for ``conv2d`` on a batched ``(N, C, H, W)`` input with numeric padding.
- ``linear_per_sample``: input ``(N, L, in)``; sample ``n`` has its own mask, weight element ``k``
  reading word ``n * weight.numel() + k + offset``; masked weights are formed ``chunk`` samples at
  a time and redrawn in backward (``*_backward``, an op of its own).
- ``conv2d_per_sample``: the same for ``conv2d``; a chunk of ``c`` samples runs as one grouped
  convolution with ``c * groups`` groups.
- ``normal``: the stream's standard normals of a shape (moment matching's draws).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dropkit import kernels
from dropkit.ops._factory import StreamOp

__all__ = ["CONV2D", "CONV2D_PER_SAMPLE", "LINEAR", "LINEAR_PER_SAMPLE", "NORMAL"]


def _masked(weight, seed, offset, threshold, scale):
    """``W * M * scale`` (``seed`` an int in the forward, the saved tensor in the backward)."""
    return torch.ops.dropkit.keep(weight, kernels.seed_tensor(seed), offset, threshold, scale,
                                  list(weight.shape))  # fmt: skip


# -- one mask per batch, linear --------------------------------------------------------------------
def _linear(input, weight, bias, seed, offset, threshold, scale):
    return F.linear(input, _masked(weight, seed, offset, threshold, scale), bias)


def _linear_backward(saved, grad):
    s = saved
    need_input, need_weight, need_bias = s.needs_input_grad[:3]
    grad_2d = grad.reshape(-1, s.weight.shape[0])
    grad_input = grad_weight = grad_bias = None
    if need_input:
        grad_input = grad @ _masked(s.weight, s.seed, s.offset, s.threshold, s.scale)
    if need_weight:
        unmasked = grad_2d.t() @ s.input.reshape(-1, s.weight.shape[1])
        grad_weight = _masked(unmasked, s.seed, s.offset, s.threshold, s.scale)
    if need_bias:
        grad_bias = grad_2d.sum(0)
    return grad_input, grad_weight, grad_bias, None, None, None, None


LINEAR = StreamOp(
    "drop_connect_linear",
    "Tensor input, Tensor weight, Tensor? bias, Tensor seed, int offset, int threshold, "
    "float scale",
    _linear,
    backward=_linear_backward,
    saves=("input", "weight"),
    fake=lambda input, weight, *rest: input.new_empty((*input.shape[:-1], weight.shape[0])),
)


# -- one mask per batch, conv2d --------------------------------------------------------------------
def _conv(input, weight, bias, seed, offset, threshold, scale, stride, padding, dilation, groups):
    masked = _masked(weight, seed, offset, threshold, scale)
    return F.conv2d(input, masked, bias, stride, padding, dilation, groups)


def _conv_backward(saved, grad):
    s = saved
    need_input, need_weight, need_bias = s.needs_input_grad[:3]
    has_bias = need_bias  # a None bias needs no gradient
    grad_input, unmasked, grad_bias = torch.ops.aten.convolution_backward(
        grad.contiguous(), s.input, _masked(s.weight, s.seed, s.offset, s.threshold, s.scale),
        [s.weight.shape[0]] if has_bias else None, s.stride, s.padding, s.dilation, False,
        [0, 0], s.groups, [need_input, need_weight, has_bias],
    )  # fmt: skip
    grad_weight = None
    if need_weight:
        grad_weight = _masked(unmasked, s.seed, s.offset, s.threshold, s.scale)
    return (grad_input if need_input else None, grad_weight,
            grad_bias if has_bias else None) + (None,) * 8  # fmt: skip


CONV2D = StreamOp(
    "drop_connect_conv2d",
    "Tensor input, Tensor weight, Tensor? bias, Tensor seed, int offset, int threshold, "
    "float scale, int[] stride, int[] padding, int[] dilation, int groups",
    _conv,
    backward=_conv_backward,
    saves=("input", "weight"),
    fake=lambda input, weight, bias, seed, offset, threshold, scale, *conv: F.conv2d(
        input, weight, bias, *conv
    ),
)


# -- one mask per sample ---------------------------------------------------------------------------
def _chunks(n: int, chunk: int):
    for start in range(0, n, chunk):
        yield start, min(n, start + chunk)


def _per_sample_masked(weight, seed: int, offset, threshold, scale, start, stop):
    # Samples [start, stop) as one contiguous (c, *W) block: sample n's mask starts at stream
    # element n * weight.numel(), which is where the flattened block puts it.
    block = weight.expand(stop - start, *weight.shape).clone(memory_format=torch.contiguous_format)
    first = offset + start * weight.numel()
    return kernels.apply_keep_mask(block, seed, first, threshold, scale, out=block)


def _linear_ps(input, weight, seed, offset, threshold, scale, chunk):
    out = input.new_empty(input.shape[0], input.shape[1], weight.shape[0])
    for start, stop in _chunks(input.shape[0], chunk):
        masked = _per_sample_masked(weight, seed, offset, threshold, scale, start, stop)
        torch.bmm(input[start:stop], masked.transpose(1, 2), out=out[start:stop])
    return out


def _linear_ps_grads(grad, input, weight, seed, offset, threshold, scale, chunk):
    grad_input = torch.empty_like(input)
    grad_weight = torch.zeros_like(weight)
    for start, stop in _chunks(input.shape[0], chunk):
        masked = _per_sample_masked(weight, seed, offset, threshold, scale, start, stop)
        torch.bmm(grad[start:stop], masked, out=grad_input[start:stop])
        # sum_n M_n * s * (g_n^T x_n): the unmasked outer products, masked by the same stream.
        outer = torch.bmm(grad[start:stop].transpose(1, 2), input[start:stop])
        first = offset + start * weight.numel()
        kernels.apply_keep_mask(outer, seed, first, threshold, scale, out=outer)
        grad_weight += outer.sum(0)
    return grad_input, grad_weight


LINEAR_PS_BACKWARD = StreamOp(
    "drop_connect_linear_per_sample_backward",
    "Tensor grad, Tensor input, Tensor weight, Tensor seed, int offset, int threshold, "
    "float scale, int chunk",
    _linear_ps_grads,
    returns="(Tensor, Tensor)",
    fake=lambda grad, input, weight, *rest: (torch.empty_like(input), torch.empty_like(weight)),
)


def _ps_backward(grads_op, extra: int):
    def backward(saved, grad):
        s = saved
        rest = [getattr(s, n) for n in grads_op.arg_names[4:]]
        grad_input, grad_weight = grads_op(grad.contiguous(), s.input, s.weight, s.seed, *rest)
        return (grad_input, grad_weight) + (None,) * extra

    return backward


LINEAR_PER_SAMPLE = StreamOp(
    "drop_connect_linear_per_sample",
    "Tensor input, Tensor weight, Tensor seed, int offset, int threshold, float scale, int chunk",
    _linear_ps,
    backward=_ps_backward(LINEAR_PS_BACKWARD, 5),
    saves=("input", "weight"),
    fake=lambda input, weight, *rest: input.new_empty(
        input.shape[0], input.shape[1], weight.shape[0]
    ),
)


def _grouped(input, masked, stride, padding, dilation, groups):
    count = masked.shape[0]
    kernel = masked.reshape(count * masked.shape[1], *masked.shape[2:])
    flat = input.reshape(1, -1, *input.shape[2:])
    out = F.conv2d(flat, kernel, None, stride, padding, dilation, groups * count)
    return out.reshape(count, masked.shape[1], *out.shape[2:])


def _conv_ps(input, weight, seed, offset, threshold, scale, stride, padding, dilation, groups,
             chunk):  # fmt: skip
    parts = []
    for start, stop in _chunks(input.shape[0], chunk):
        masked = _per_sample_masked(weight, seed, offset, threshold, scale, start, stop)
        parts.append(_grouped(input[start:stop], masked, stride, padding, dilation, groups))
    return torch.cat(parts)


def _conv_ps_grads(grad, input, weight, seed, offset, threshold, scale, stride, padding,
                   dilation, groups, chunk):  # fmt: skip
    grad_input = torch.empty_like(input)
    grad_weight = torch.zeros_like(weight)
    for start, stop in _chunks(input.shape[0], chunk):
        count = stop - start
        masked = _per_sample_masked(weight, seed, offset, threshold, scale, start, stop)
        kernel = masked.reshape(count * weight.shape[0], *weight.shape[1:])
        g_in, g_kernel, _ = torch.ops.aten.convolution_backward(
            grad[start:stop].reshape(1, -1, *grad.shape[2:]).contiguous(),
            input[start:stop].reshape(1, -1, *input.shape[2:]), kernel, None, stride, padding,
            dilation, False, [0, 0], groups * count, [True, True, False],
        )  # fmt: skip
        grad_input[start:stop] = g_in.reshape(count, *input.shape[1:])
        g_kernel = g_kernel.reshape(count, *weight.shape).contiguous()
        first = offset + start * weight.numel()
        kernels.apply_keep_mask(g_kernel, seed, first, threshold, scale, out=g_kernel)
        grad_weight += g_kernel.sum(0)
    return grad_input, grad_weight


CONV2D_PS_BACKWARD = StreamOp(
    "drop_connect_conv2d_per_sample_backward",
    "Tensor grad, Tensor input, Tensor weight, Tensor seed, int offset, int threshold, "
    "float scale, int[] stride, int[] padding, int[] dilation, int groups, int chunk",
    _conv_ps_grads,
    returns="(Tensor, Tensor)",
    fake=lambda grad, input, weight, *rest: (torch.empty_like(input), torch.empty_like(weight)),
)

CONV2D_PER_SAMPLE = StreamOp(
    "drop_connect_conv2d_per_sample",
    "Tensor input, Tensor weight, Tensor seed, int offset, int threshold, float scale, "
    "int[] stride, int[] padding, int[] dilation, int groups, int chunk",
    _conv_ps,
    backward=_ps_backward(CONV2D_PS_BACKWARD, 9),
    saves=("input", "weight"),
    fake=lambda input, weight, seed, offset, threshold, scale, *conv_and_chunk: F.conv2d(
        input, weight, None, *conv_and_chunk[:4]
    ),
)


# -- the stream's normals (moment matching) --------------------------------------------------------
def _normal(like, seed, offset, shape):
    return kernels.normal(tuple(shape), seed, offset, device=like.device, dtype=like.dtype)


#: Standard normals of ``shape`` in ``like``'s dtype and device; ``offset`` counts variates.
NORMAL = StreamOp(
    "normal",
    "Tensor like, Tensor seed, int offset, int[] shape",
    _normal,
    fake=lambda like, seed, offset, shape: like.new_empty(shape),
)
