"""DropBlock (Ghiasi, Lin, Le 2018): drop contiguous squares of convolutional feature maps."""

from __future__ import annotations

import math

import torch

from dropkit import _state
from dropkit.functional._checks import check_floating, check_offset, resolve_stream
from dropkit.kernels import drop_block as _kernel  # noqa: F401  (registers the custom op)

__all__ = ["drop_block2d", "drop_block3d", "drop_block_gamma"]

NORMALIZE = ("sample", "batch")


def drop_block_gamma(p: float, block_size: int, spatial: tuple[int, ...]) -> float:
    r"""The seed rate of the paper: :math:`\gamma = p \prod_d S_d / (bs^{D} \prod_d (S_d - bs + 1))`
    (for 2-D: :math:`(1-keep)\,W H / (bs^2 (W-bs+1)(H-bs+1))`). Since
    :math:`bs\,(S - bs + 1) \ge S` for :math:`1 \le bs \le S`, :math:`\gamma \le p \le 1`."""
    valid = math.prod(s - block_size + 1 for s in spatial)
    return p * math.prod(spatial) / (block_size ** len(spatial) * valid)


def _drop_block(input, p, block_size, inplace, eps, training, per_channel, normalize,
                generator, seed, offset, spatial_dims):  # fmt: skip
    name = f"drop_block{spatial_dims}d"
    check_floating(input, name)
    if input.dim() != spatial_dims + 2:
        raise ValueError(
            f"{name}: expected a {spatial_dims + 2}D input (N, C, ...), got {input.dim()}D"
        )
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"drop probability has to be between 0 and 1, but got {p}")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be an integer >= 1, got {block_size!r}")
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize must be one of {NORMALIZE}, got {normalize!r}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    check_offset(offset)
    if not _state.is_stochastic(training) or p == 0.0 or input.numel() == 0:
        return input
    spatial = tuple(input.shape[2:])
    # torchvision's rule for maps smaller than the block: the block covers the whole map.
    block_size = min(block_size, *spatial)
    gamma = drop_block_gamma(p, block_size, spatial)
    channels = input.shape[1] if per_channel else 1
    seed_numel = input.shape[0] * channels * math.prod(s - block_size + 1 for s in spatial)
    seed_t, offset = resolve_stream(input, generator, seed, offset, seed_numel)
    threshold = round(gamma * 2.0**32)
    result = torch.ops.dropkit.drop_block_apply(
        input, seed_t, offset, threshold, block_size, spatial_dims, per_channel,
        normalize == "sample", float(eps),
    )  # fmt: skip
    return input.copy_(result) if inplace else result


def drop_block2d(
    input: torch.Tensor,
    p: float,
    block_size: int,
    inplace: bool = False,
    eps: float = 1e-06,
    training: bool = True,
    *,
    per_channel: bool = True,
    normalize: str = "sample",
    generator: torch.Generator | None = None,
    seed: int | torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    r"""DropBlock on ``(N, C, H, W)`` maps (torchvision's argument order).

    Ghiasi, Lin, Le, "DropBlock: A regularization method for convolutional networks", NeurIPS 2018,
    Algorithm 1. Block seeds are Bernoulli(:math:`\gamma`) (:func:`drop_block_gamma`) over the
    positions where a whole ``block_size`` square fits, ``(N, C, H-bs+1, W-bs+1)``
    (``per_channel=False``: one seed map per sample shared by all channels, as timm's
    ``batchwise``/shared option); each seed zeroes the square it anchors (top-left), so blocks never
    leave the map and any block size keeps the shape. The result is renormalised by the realised
    kept fraction: :math:`y = x\,M\,|M| / (\epsilon + \sum M)`, counted per sample
    (``normalize="sample"``, default: samples stay independent, as batched MC needs) or over the
    batch (``"batch"``: torchvision's ``drop_block2d``). For odd block sizes and batch
    normalisation this is torchvision's distribution (its centred blocks on a padded seed map are
    the same squares); torchvision cannot take even block sizes without changing the shape.

    Seed ``k`` of the row-major seed map of sample ``n`` reads stream word
    ``n * seed_numel + k + offset``; it is a seed iff the word is below ``round(gamma * 2**32)``.
    Nothing of the block mask is kept for backward.
    """
    return _drop_block(input, p, block_size, inplace, eps, training, per_channel, normalize,
                       generator, seed, offset, 2)  # fmt: skip


def drop_block3d(
    input: torch.Tensor,
    p: float,
    block_size: int,
    inplace: bool = False,
    eps: float = 1e-06,
    training: bool = True,
    *,
    per_channel: bool = True,
    normalize: str = "sample",
    generator: torch.Generator | None = None,
    seed: int | torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    """DropBlock on ``(N, C, D, H, W)`` volumes: cubes of side ``block_size``; as
    :func:`drop_block2d` with :math:`\\gamma = p\\,DHW / (bs^3 (D-bs+1)(H-bs+1)(W-bs+1))`."""
    return _drop_block(input, p, block_size, inplace, eps, training, per_channel, normalize,
                       generator, seed, offset, 3)  # fmt: skip
