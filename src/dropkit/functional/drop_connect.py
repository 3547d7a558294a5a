"""DropConnect (Wan, Zeiler, Zhang, LeCun, Fergus 2013): drop weights instead of activations."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from dropkit import _state, rng
from dropkit.functional._checks import (
    check_floating,
    check_mode,
    check_offset,
    check_probability,
    resolve_stream,
)
from dropkit.kernels.reference import keep_multiplier

__all__ = ["drop_connect_conv2d", "drop_connect_linear"]

INFERENCE = ("weight_scaling", "moment_matching")
# Per-sample masks are drawn for this many weight elements at a time (bounds the temporary memory).
_PER_SAMPLE_BUDGET = 1 << 22


def _check(p, mode, inference, samples, offset):
    p = check_probability(p)
    check_mode(mode)
    if inference not in INFERENCE:
        raise ValueError(f"inference must be one of {INFERENCE}, got {inference!r}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
    check_offset(offset)
    return p


def _scale(p: float, mode: str) -> float:
    return 1.0 if mode == "classic" else (0.0 if p == 1.0 else 1.0 / (1.0 - p))


def _moments(p: float, mode: str) -> tuple[float, float]:
    """(mean factor, variance factor) of one masked weight ``W * m * scale`` relative to W, W^2."""
    if mode == "classic":
        return 1.0 - p, p * (1.0 - p)
    return 1.0, (p / (1.0 - p) if p < 1.0 else 0.0)


def _infer(mean, var, activation, samples, seed_t, offset):
    """Wan et al. 2013, Algorithm 2: average ``activation`` over Gaussian samples of each unit."""
    if activation is None:
        return mean
    out = torch.zeros_like(mean)
    std = var.clamp_min(0).sqrt()
    for z in range(samples):
        noise = rng.normal(mean.shape, int(seed_t), offset + z * mean.numel(), device=mean.device)
        out += activation(mean + std * noise.to(mean.dtype))
    return out / samples


class _PerSampleLinear(torch.autograd.Function):
    """``y_n = (W * M_n * scale) v_n``; backward regenerates the masks chunk by chunk (no N x out x
    in tensor is kept)."""

    @staticmethod
    def forward(ctx, input, weight, seed, offset, threshold, scale):
        ctx.save_for_backward(input, weight, seed)
        ctx.args = (offset, threshold, scale)
        out = input.new_empty(input.shape[0], weight.shape[0])
        for start, stop, masked, _ in _per_sample_weights(weight, int(seed), offset, threshold,
                                                          scale, input.shape[0]):  # fmt: skip
            out[start:stop] = torch.bmm(masked, input[start:stop, :, None])[..., 0]
        return out

    @staticmethod
    def backward(ctx, grad):
        input, weight, seed = ctx.saved_tensors
        offset, threshold, scale = ctx.args
        grad_input = torch.empty_like(input) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros_like(weight) if ctx.needs_input_grad[1] else None
        for start, stop, masked, mult in _per_sample_weights(weight, int(seed), offset, threshold,
                                                             scale, input.shape[0]):  # fmt: skip
            g = grad[start:stop]
            if grad_input is not None:
                grad_input[start:stop] = torch.bmm(g[:, None, :], masked)[:, 0]
            if grad_weight is not None:
                outer = g[:, :, None] * input[start:stop, None, :]
                grad_weight += (outer * mult).sum(0)
        return grad_input, grad_weight, None, None, None, None


def _per_sample_weights(weight, seed, offset, threshold, scale, n):
    per = weight.numel()
    chunk = max(1, _PER_SAMPLE_BUDGET // max(per, 1))
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        mult = keep_multiplier(
            (stop - start, *weight.shape), seed, offset + start * per, threshold, scale,
            weight.dtype, weight.device,
        )  # fmt: skip
        yield start, stop, weight * mult, mult


def drop_connect_linear(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    p: float = 0.5,
    training: bool = True,
    *,
    per_sample: bool = False,
    mode: str = "inverted",
    inference: str = "weight_scaling",
    samples: int = 1000,
    activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
    seed: int | torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    r"""A linear layer whose weights are dropped: ``activation((W * M * s) v + b)``.

    Wan, Zeiler, Zhang, LeCun, Fergus, "Regularization of Neural Networks using DropConnect",
    ICML 2013. :math:`M_{ij} \sim \mathrm{Bernoulli}(1-p)`; ``s = 1/(1-p)`` (inverted) or 1
    (classic). One mask per batch (stream word ``k + offset`` for weight element ``k``) or, with
    ``per_sample``, one per sample (sample ``n`` uses words from ``n * out * in + offset``; masks
    are drawn in chunks of at most ~4M weight elements and regenerated in backward: time
    O(N * out * in), extra memory O(chunk)). The bias is never dropped.

    Inference (``training=False``):

    - ``"weight_scaling"``: the mean network ``activation(E[W~] v + b)`` with ``E[W~] = W``
      (inverted) or ``(1-p) W`` (classic).
    - ``"moment_matching"`` (the paper's Algorithm 2): each unit's pre-activation is approximated
      by :math:`\mathcal{N}(\mu, \sigma^2)` with :math:`\mu = E[W~] v + b` and
      :math:`\sigma^2 = \mathrm{Var}[W~](W \odot W)(v \odot v)`, where the per-weight variance
      factor is :math:`p(1-p)` (classic, the paper's formula) or :math:`p/(1-p)` (inverted, the same
      after the ``1/(1-p)`` scaling); ``samples`` draws (stream normals) go through ``activation``
      and are averaged. Without an activation this is exactly :math:`\mu`.

    Shape: input ``(N, in)``, weight ``(out, in)``, output ``(N, out)``.
    """
    check_floating(input, "drop_connect_linear")
    p = _check(p, mode, inference, samples, offset)
    act = activation if activation is not None else (lambda t: t)
    if _state.is_stochastic(training) and p > 0.0:
        scale, threshold = _scale(p, mode), rng.keep_threshold(p)
        if per_sample:
            if input.dim() != 2:
                raise ValueError(f"per_sample DropConnect needs (N, in) input, got {input.dim()}D")
            numel = input.shape[0] * weight.numel()
            seed_t, off = resolve_stream(input, generator, seed, offset, numel)
            out = _PerSampleLinear.apply(input, weight, seed_t, off, threshold, scale)
            return act(out if bias is None else out + bias)
        seed_t, off = resolve_stream(weight, generator, seed, offset, weight.numel())
        masked = torch.ops.dropkit.keep_mask_apply(weight, seed_t, off, threshold, scale)
        return act(F.linear(input, masked, bias))
    mean_factor, var_factor = _moments(p, mode)
    mean = F.linear(input, weight * mean_factor if mean_factor != 1.0 else weight, bias)
    if inference == "weight_scaling" or p == 0.0 or activation is None:
        return act(mean)
    var = var_factor * F.linear(input * input, weight * weight)
    seed_t, off = resolve_stream(input, generator, seed, offset, samples * mean.numel())
    return _infer(mean, var, activation, samples, seed_t, off)


def drop_connect_conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    p: float = 0.5,
    training: bool = True,
    *,
    mode: str = "inverted",
    inference: str = "weight_scaling",
    samples: int = 1000,
    activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
    seed: int | torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    """DropConnect on a 2-D convolution's kernel: one mask per batch over ``weight``; inference as
    in :func:`drop_connect_linear`, with ``sigma^2 = Var[W~] * conv2d(v*v, W*W)``. Arguments
    ``stride``..``groups`` as ``torch.nn.functional.conv2d`` (string padding included)."""
    check_floating(input, "drop_connect_conv2d")
    p = _check(p, mode, inference, samples, offset)
    act = activation if activation is not None else (lambda t: t)

    def conv(x, w, b=None):
        return F.conv2d(x, w, b, stride, padding, dilation, groups)

    if _state.is_stochastic(training) and p > 0.0:
        seed_t, off = resolve_stream(weight, generator, seed, offset, weight.numel())
        masked = torch.ops.dropkit.keep_mask_apply(
            weight, seed_t, off, rng.keep_threshold(p), _scale(p, mode)
        )
        return act(conv(input, masked, bias))
    mean_factor, var_factor = _moments(p, mode)
    mean = conv(input, weight * mean_factor if mean_factor != 1.0 else weight, bias)
    if inference == "weight_scaling" or p == 0.0 or activation is None:
        return act(mean)
    var = var_factor * conv(input * input, weight * weight)
    seed_t, off = resolve_stream(input, generator, seed, offset, samples * mean.numel())
    return _infer(mean, var, activation, samples, seed_t, off)
