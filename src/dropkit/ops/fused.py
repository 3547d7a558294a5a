"""``bias_dropout_add``: ``residual + dropout(x + bias)`` in one pass (Megatron-LM's fused op)."""

from __future__ import annotations

import torch

from dropkit import kernels
from dropkit.kernels.reference import accumulation_dtype
from dropkit.ops._factory import StreamOp
from dropkit.ops.masks import KEEP, keep_multiplier

__all__ = ["BIAS_DROPOUT_ADD"]


def _forward(x, bias, residual, seed, offset, threshold, scale):
    if x.is_contiguous() and residual.is_contiguous() and bias.is_contiguous():
        return kernels.bias_dropout_add(x, bias, residual, seed, offset, threshold, scale)
    # Any other layout: the reference's three roundings, in x's layout.
    acc = accumulation_dtype(x.dtype)
    m = keep_multiplier(x.shape, seed, offset, threshold, scale, acc, x.device)
    out = torch.empty_like(x)
    return out.copy_(residual.to(acc) + (x.to(acc) + bias.to(acc)) * m)


def _backward_rule(saved, grad):
    s = saved
    grad_x = KEEP(grad, s.seed, s.offset, False, s.threshold, s.scale, list(grad.shape))
    grad_bias = None
    if s.needs_input_grad[1]:
        grad_bias = grad_x.sum_to_size(s.bias_shape)
    return grad_x, grad_bias, grad, None, None, None, None, None


def _forward_with_shape(x, bias, residual, seed, offset, threshold, scale, bias_shape):
    return _forward(x, bias, residual, seed, offset, threshold, scale)


#: ``residual + (x + bias) * scale * [word >= threshold]``; gradients ``grad * m`` for ``x``,
#: its sum over the leading dimensions for ``bias``, ``grad`` for ``residual``.
BIAS_DROPOUT_ADD = StreamOp(
    "bias_dropout_add",
    "Tensor x, Tensor bias, Tensor residual, Tensor seed, int offset, int threshold, float scale, "
    "int[] bias_shape",
    _forward_with_shape,
    backward=_backward_rule,
)
