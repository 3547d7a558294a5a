"""DropConnect (Wan, Zeiler, Zhang, LeCun, Fergus 2013): drop weights instead of activations."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from dropkit import _state, rng
from dropkit import ops as _ops
from dropkit.functional._common import check_mode, keep_scale
from dropkit.ops import overridable, resolve_stream
from dropkit.ops.checks import (
    check_choice,
    check_conv2d_shapes,
    check_drop_connect_tensors,
    check_flag,
    check_int,
    check_probability,
    check_stream_args,
    check_training,
)

__all__ = ["drop_connect_conv2d", "drop_connect_linear"]

INFERENCE = ("weight_scaling", "moment_matching")
#: The most Gaussian draws per unit of moment matching (``samples`` sizes a loop of draws).
MAX_SAMPLES = 2**20
# Temporary elements per chunk: per-sample masked weights (samples x out x in) and the Gaussian
# draws of moment matching (rows x samples x units) are formed at most this many at a time.
_CHUNK_BUDGET = 1 << 22


def check_inference(inference: str, samples: int, activation, op: str = "drop_connect") -> int:
    check_choice(inference, "inference", INFERENCE, op=op)
    samples = check_int(samples, "samples", op=op, minimum=1, maximum=MAX_SAMPLES)
    if activation is not None and not callable(activation):
        raise TypeError(
            f"{op}: activation must be callable or None, got {type(activation).__name__}"
        )
    return samples


def _check(input, weight, bias, p, training, per_sample, mode, inference, samples, activation,
           generator, seed, offset, op):  # fmt: skip
    check_drop_connect_tensors(input, weight, bias, op)
    p = check_probability(p, op=op)
    check_training(training, op)
    check_flag(per_sample, "per_sample", op=op)
    check_mode(mode, op)
    check_inference(inference, samples, activation, op)
    check_stream_args(generator, seed, offset)
    return p


def _moments(p: float, mode: str) -> tuple[float, float]:
    """(mean, variance) of one train-time weight ``W M s`` in units of ``W`` and ``W**2``."""
    if mode == "classic":
        return 1.0 - p, p * (1.0 - p)
    # W M / (1-p): mean W, variance W^2 p (1-p) / (1-p)^2 = W^2 p / (1-p).
    return 1.0, (p / (1.0 - p) if p < 1.0 else 0.0)


def _moment_matching(mean, var, activation, samples, seed_t, offset, batched):
    """Average ``activation(mean + std * z)`` over ``samples`` stream normals ``z`` per unit.

    Row ``n`` of the batch owns variates ``[n * samples * U, (n + 1) * samples * U)`` (``U`` units
    per row), sample ``z`` of unit ``u`` being variate ``n * samples * U + z * U + u``; so a row's
    result does not depend on the other rows, and a batch replicated along dim 0 draws row by row.
    """
    rows = mean.shape[0] if batched else 1
    units = mean.numel() // max(rows, 1)
    if mean.numel() == 0:
        return mean
    mu = mean.reshape(rows, 1, units)
    std = var.clamp_min(0).sqrt().reshape(rows, 1, units)
    z_chunk = min(samples, max(1, _CHUNK_BUDGET // units))
    row_chunk = 1 if z_chunk < samples else max(1, _CHUNK_BUDGET // (samples * units))
    parts = []
    for r0 in range(0, rows, row_chunk):
        r1 = min(rows, r0 + row_chunk)
        total = 0
        for z0 in range(0, samples, z_chunk):
            z1 = min(samples, z0 + z_chunk)
            first = offset + r0 * samples * units + z0 * units
            z = _ops.NORMAL(mean.detach(), seed_t, first, [r1 - r0, z1 - z0, units])
            total = total + activation(mu[r0:r1] + std[r0:r1] * z).sum(1)
        parts.append(total)
    return (torch.cat(parts) / samples).reshape(mean.shape)


@overridable
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
    r"""A linear layer whose weights are dropped: ``a((W * M * s) v + b)``.

    Wan, Zeiler, Zhang, LeCun, Fergus, "Regularization of Neural Networks using DropConnect",
    ICML 2013. :math:`M_{ij} \sim \mathrm{Bernoulli}(1-p)`, ``s = 1/(1-p)`` (``mode="inverted"``,
    the default) or ``s = 1`` (``mode="classic"``, the paper's form), ``a`` = ``activation`` (the
    identity when None). The bias is never dropped (as in the paper).

    Training (or inside :func:`dropkit.mc.stochastic`):

    - one mask per batch (default): weight element ``k`` (row-major over ``(out, in)``) is kept iff
      its stream word ``k + offset`` is ``>= round(p * 2**32)``. Backward redraws the masked weight
      from the seed (custom op ``dropkit::drop_connect_linear``): no mask is stored; the input and
      ``W`` are saved, as by any linear layer.
    - ``per_sample=True``: sample ``n`` (index along dim 0) has its own mask, element ``k`` reading
      word ``n * out * in + k + offset``. Cost: time ``O(N * out * in)`` (a batched matrix-vector
      product instead of one matrix product, the price of per-sample masks), forward and again in
      backward, where the masks are redrawn; temporary memory ``min(N, ~4M / (out * in))`` masked
      weight matrices at a time; an ``N x out x in`` tensor is never formed when it is larger.

    Inference (``training=False``):

    - ``inference="weight_scaling"``: the mean network ``a(E[W M s] v + b)``, with
      ``E[W M s] = W`` (inverted) or ``(1-p) W`` (classic).
    - ``inference="moment_matching"`` (the paper's section 3, Algorithm 2): each unit's
      pre-activation ``u = (W M s) v + b`` is approximated by :math:`\mathcal{N}(\mu, \sigma^2)`,
      :math:`\mu = E[W M s] v + b`, :math:`\sigma^2 = c\,(W \odot W)(v \odot v)` with
      :math:`c = p(1-p)` in classic mode (the paper's formula: mean ``(1-p) W v``) and
      :math:`c = p/(1-p)` in inverted mode (``W M / (1-p)`` has mean ``W`` and variance
      ``W^2 p/(1-p)``); ``samples`` Gaussian draws per unit go through ``activation`` and are
      averaged. Row ``n``, draw ``z``, unit ``u`` consumes stream normal
      ``n * samples * U + z * U + u + offset`` (:func:`dropkit.rng.normal`; ``U`` units per row).
      Without an activation the average is exactly ``mu`` and nothing is drawn.

    Shapes: input ``(*, in)`` (``(N, *, in)`` with ``per_sample``), weight ``(out, in)``, bias
    ``(out,)``; output ``(*, out)``. torch has no DropConnect; with ``p = 0`` (or in eval mode with
    ``"weight_scaling"`` and inverted mode) the result equals ``torch.nn.functional.linear`` bit for
    bit.
    """
    p = _check(input, weight, bias, p, training, per_sample, mode, inference, samples, activation,
               generator, seed, offset, "drop_connect_linear")  # fmt: skip
    act = activation if activation is not None else (lambda t: t)
    if _state.is_stochastic(training) and p > 0.0:
        scale, threshold = keep_scale(p, mode), rng.keep_threshold(p)
        if per_sample:
            if input.dim() < 2:
                raise ValueError("per_sample DropConnect needs a batch dimension: input (N, *, in)")
            n = input.shape[0]
            seed_t, off = resolve_stream(generator, seed, offset, n * weight.numel())
            chunk = max(1, _CHUNK_BUDGET // max(weight.numel(), 1))
            rows = input.reshape(n, -1, input.shape[-1]).contiguous()
            out = _ops.LINEAR_PER_SAMPLE(rows, weight, seed_t, off, threshold, scale, chunk)
            out = out.reshape(*input.shape[:-1], weight.shape[0])
            return act(out if bias is None else out + bias)
        seed_t, off = resolve_stream(generator, seed, offset, weight.numel())
        return act(_ops.LINEAR(input, weight, bias, seed_t, off, threshold, scale))
    mean_factor, var_factor = _moments(p, mode)
    mean = F.linear(input, weight * mean_factor if mean_factor != 1.0 else weight, bias)
    if inference == "weight_scaling" or p == 0.0 or activation is None:
        return act(mean)
    var = var_factor * F.linear(input * input, weight * weight)
    seed_t, off = resolve_stream(
        generator,
        seed,
        offset,
        samples * mean.numel(),
        words=2 * (samples * mean.numel() + offset) - offset,
    )
    return _moment_matching(mean, var, activation, samples, seed_t, off, input.dim() > 1)


def _pair(value, name: str) -> list[int]:
    values = [value, value] if isinstance(value, int) else list(value)
    if len(values) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return values


def _resolve_padding(input, weight, padding, stride, dilation):
    """Numeric ``(padding, input)`` for ``conv2d``'s padding, string forms included.

    ``"same"`` pads ``dilation * (k - 1)`` in total, the odd element on the bottom/right, as
    torch does; asymmetric padding is applied to the input explicitly."""
    if isinstance(padding, str):
        if padding == "valid":
            return [0, 0], input
        if padding != "same":
            raise ValueError(f"padding must be 'valid', 'same', an int or a pair, got {padding!r}")
        if stride != [1, 1]:
            raise ValueError("padding='same' is not supported for strided convolutions")
        total = [d * (k - 1) for d, k in zip(dilation, weight.shape[2:])]
        left = [t // 2 for t in total]
        extra = [t - 2 * lo for t, lo in zip(total, left)]
        if any(extra):
            input = F.pad(input, (0, extra[1], 0, extra[0]))
        return left, input
    values = _pair(padding, "padding")
    if min(values) < 0:
        raise ValueError(f"padding must be >= 0, got {padding!r}")
    return values, input


@overridable
def drop_connect_conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | str = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
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
    r"""DropConnect on a 2-D convolution's kernel (Wan et al. 2013, applied to convolutions).

    ``a(conv2d(v, W * M * s, b, stride, padding, dilation, groups))`` with one mask per batch
    over the kernel ``(out, in/groups, kH, kW)``: element ``k`` (row-major) kept iff its stream
    word ``k + offset`` is ``>= round(p * 2**32)``; ``s`` as in :func:`drop_connect_linear`. The
    mask is shared by every position (the weight is shared) and, by default, every sample of the
    batch. Backward redraws the masked kernel from the seed (custom op
    ``dropkit::drop_connect_conv2d``); nothing mask-sized is stored.

    ``per_sample=True``: sample ``n`` has its own kernel mask (element ``k`` reads word
    ``n * weight.numel() + k + offset``), run as a grouped convolution over chunks of samples
    (custom op ``dropkit::drop_connect_conv2d_per_sample``). Cost: the same FLOPs as the shared
    kernel but grouped-convolution speed, plus ``min(N, ~4M / weight.numel())`` masked kernels of
    temporary memory; the masks are redrawn in backward. Needs a batched input.

    Inference: as :func:`drop_connect_linear`, with :math:`\mu = \mathrm{conv2d}(v, E[W M s]) + b`
    and :math:`\sigma^2 = c\,\mathrm{conv2d}(v \odot v, W \odot W)` (each output element is a sum
    of independent masked products); moment matching draws ``samples`` normals per output
    element, sample ``n``'s block first (variate ``n * samples * U + z * U + u``,
    ``U = out * H' * W'``).

    Arguments ``stride``, ``padding`` (ints, pairs, ``"valid"`` or ``"same"``), ``dilation`` and
    ``groups`` as ``torch.nn.functional.conv2d``; input ``(N, C, H, W)`` or ``(C, H, W)``. With
    ``p = 0`` the result equals ``torch.nn.functional.conv2d`` bit for bit.
    """
    p = _check(input, weight, bias, p, training, per_sample, mode, inference, samples, activation,
               generator, seed, offset, "drop_connect_conv2d")  # fmt: skip
    stride, padding, dilation, groups = check_conv2d_shapes(
        input, weight, stride, padding, dilation, groups
    )
    if input.dim() not in (3, 4) or weight.dim() != 4:
        raise ValueError(
            f"drop_connect_conv2d expects (N, C, H, W) or (C, H, W) input and a 4-D weight, "
            f"got {input.dim()}-D input and {weight.dim()}-D weight"
        )
    groups = check_int(groups, "groups", op="drop_connect_conv2d", minimum=1)
    act = activation if activation is not None else (lambda t: t)

    def conv(x, w, b=None):
        return F.conv2d(x, w, b, stride, padding, dilation, groups)

    if _state.is_stochastic(training) and p > 0.0:
        strides, dilations = _pair(stride, "stride"), _pair(dilation, "dilation")
        if min(strides) < 1 or min(dilations) < 1:
            raise ValueError(f"stride and dilation must be >= 1, got {stride!r}, {dilation!r}")
        batched = input if input.dim() == 4 else input[None]
        pads, batched = _resolve_padding(batched, weight, padding, strides, dilations)
        threshold, scale = rng.keep_threshold(p), keep_scale(p, mode)
        if per_sample:
            if input.dim() != 4:
                raise ValueError("per_sample DropConnect needs a batched (N, C, H, W) input")
            n = input.shape[0]
            seed_t, off = resolve_stream(generator, seed, offset, n * weight.numel())
            chunk = max(1, _CHUNK_BUDGET // max(weight.numel(), 1))
            out = _ops.CONV2D_PER_SAMPLE(
                batched.contiguous(),
                weight,
                seed_t,
                off,
                threshold,
                scale,
                strides,
                pads,
                dilations,
                groups,
                chunk,
            )
            return act(out if bias is None else out + bias[:, None, None])
        seed_t, off = resolve_stream(generator, seed, offset, weight.numel())
        out = _ops.CONV2D(
            batched, weight, bias, seed_t, off, threshold, scale, strides, pads, dilations, groups
        )
        return act(out if input.dim() == 4 else out[0])
    mean_factor, var_factor = _moments(p, mode)
    mean = conv(input, weight * mean_factor if mean_factor != 1.0 else weight, bias)
    if inference == "weight_scaling" or p == 0.0 or activation is None:
        return act(mean)
    var = var_factor * conv(input * input, weight * weight)
    seed_t, off = resolve_stream(
        generator,
        seed,
        offset,
        samples * mean.numel(),
        words=2 * (samples * mean.numel() + offset) - offset,
    )
    return _moment_matching(mean, var, activation, samples, seed_t, off, input.dim() == 4)
