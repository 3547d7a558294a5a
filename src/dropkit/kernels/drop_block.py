"""The DropBlock multiplier as a custom op that keeps no block mask between forward and backward.

``dropkit::drop_block_apply(x, seed, offset, threshold, block_size, spatial_dims, per_channel,
per_sample, eps)`` returns ``x * M * s``. The seed mask has shape ``(N, C', H-bs+1, W-bs+1)``
(``C' = C`` per channel, else 1; 3-D adds a depth dimension). Its element ``k`` (row-major) is a
block seed iff the stream word at ``k + offset`` is *below* ``threshold = round(gamma * 2**32)``.
A seed at ``(i, j)`` zeroes the block ``[i, i + bs) x [j, j + bs)``, which always fits, so the map
keeps its shape for odd and even ``bs``. ``s = numel / (eps + sum(M))`` over each sample
(``per_sample``) or over the batch. The op is linear in ``x`` with a multiplier that depends only on
the seed, so its backward applies the same op to the gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dropkit import rng

__all__ = ["block_keep_multiplier", "drop_block_apply"]


def block_keep_multiplier(
    shape: list[int],
    seed: int,
    offset: int,
    threshold: int,
    block_size: int,
    spatial_dims: int,
    per_channel: bool,
    per_sample: bool,
    eps: float,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """``M * s`` broadcastable to ``shape``; see the module docstring."""
    n, c = shape[0], shape[1]
    spatial = shape[2:]
    seed_shape = [n, c if per_channel else 1] + [s - block_size + 1 for s in spatial]
    words = rng.stream_words(
        int(torch.Size(seed_shape).numel()), seed, offset, device=device
    ).reshape(seed_shape)
    seeds = (words < threshold).to(dtype)
    pad = [block_size - 1] * (2 * spatial_dims)
    pool = F.max_pool2d if spatial_dims == 2 else F.max_pool3d
    blocks = pool(F.pad(seeds, pad), kernel_size=block_size, stride=1)
    keep = 1.0 - blocks
    keep_full = keep.expand(n, c, *spatial)
    if per_sample:
        kept = keep_full.reshape(n, -1).sum(1)
        per = keep_full[0].numel()
        scale = (per / (eps + kept)).reshape(n, *([1] * (len(shape) - 1)))
    else:
        scale = keep_full.numel() / (eps + keep_full.sum())
    return keep * scale


@torch.library.custom_op("dropkit::drop_block_apply", mutates_args=())
def drop_block_apply(
    x: torch.Tensor,
    seed: torch.Tensor,
    offset: int,
    threshold: int,
    block_size: int,
    spatial_dims: int,
    per_channel: bool,
    per_sample: bool,
    eps: float,
) -> torch.Tensor:
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    multiplier = block_keep_multiplier(
        list(x.shape), int(seed), offset, threshold, block_size, spatial_dims, per_channel,
        per_sample, eps, acc, x.device,
    )  # fmt: skip
    return (x.to(acc) * multiplier).to(x.dtype).contiguous()


@drop_block_apply.register_fake
def _fake(x, seed, offset, threshold, block_size, spatial_dims, per_channel, per_sample, eps):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output) -> None:
    ctx.save_for_backward(inputs[1])
    ctx.args = inputs[2:]


def _backward(ctx, grad: torch.Tensor):
    (seed,) = ctx.saved_tensors
    return (drop_block_apply(grad, seed, *ctx.args),) + (None,) * 8


drop_block_apply.register_autograd(_backward, setup_context=_setup_context)
