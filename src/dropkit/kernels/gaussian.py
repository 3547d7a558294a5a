"""Multiplicative Gaussian noise from the dropkit stream, as a custom op that stores no noise.

``dropkit::gaussian_noise_apply(x, seed, offset, std)`` returns ``x * (1 + std * z)`` with ``z``
the stream's standard normals (:func:`dropkit.rng.normal`, computed by
:func:`dropkit.kernels.normal` on the CPU: variate ``i`` of the row-major
flattening consumes words ``2(i + offset)`` and ``2(i + offset) + 1``). The multiplier is formed in
float64 and rounded once to the accumulation dtype; the op is linear in ``x``, so backward applies
the same op to the gradient (only the seed is saved).
"""

from __future__ import annotations

import torch

from dropkit.kernels.reference import accumulation_dtype

__all__ = ["gaussian_noise_apply"]


@torch.library.custom_op("dropkit::gaussian_noise_apply", mutates_args=())
def gaussian_noise_apply(
    x: torch.Tensor, seed: torch.Tensor, offset: int, std: float
) -> torch.Tensor:
    from dropkit.kernels import normal  # the backend dispatch

    acc = accumulation_dtype(x.dtype)
    # The numba normals (CPU) are the reference's words and formula, ~20x faster than
    # rng.normal; other devices and the "reference" backend fall back to rng.normal.
    z = normal(x.shape, int(seed), offset, device=x.device, dtype=torch.float64)
    multiplier = (1.0 + std * z).to(acc)
    return (x.to(acc) * multiplier).to(x.dtype).contiguous()


@gaussian_noise_apply.register_fake
def _fake(x, seed, offset, std):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output) -> None:
    _, seed, offset, std = inputs
    ctx.save_for_backward(seed)
    ctx.offset, ctx.std = offset, std


def _backward(ctx, grad: torch.Tensor):
    (seed,) = ctx.saved_tensors
    return gaussian_noise_apply(grad, seed, ctx.offset, ctx.std), None, None, None


gaussian_noise_apply.register_autograd(_backward, setup_context=_setup_context)
