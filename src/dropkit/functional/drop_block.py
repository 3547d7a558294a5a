"""DropBlock (Ghiasi, Lin, Le 2018): drop contiguous squares of convolutional feature maps."""

from __future__ import annotations

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
    # plain loops: torch.compile cannot trace math.prod over a generator
    total, valid = 1, 1
    for size in spatial:
        total *= size
        valid *= size - block_size + 1
    return p * total / (block_size ** len(spatial) * valid)


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
    # timm's rule for maps smaller than the block (torchvision fails there): one block, whole map.
    block_size = min(block_size, *spatial)
    gamma = drop_block_gamma(p, block_size, spatial)
    channels = input.shape[1] if per_channel else 1
    seed_numel = input.shape[0] * channels * input[0, 0].numel()
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
    r"""DropBlock on ``(N, C, H, W)`` maps (torchvision's argument order for the first six).

    Ghiasi, Lin, Le, "DropBlock: A regularization method for convolutional networks", NeurIPS 2018,
    Algorithm 1. With ``bs = min(block_size, H, W)`` and
    :math:`\gamma = p\,H W / (bs^2 (H-bs+1)(W-bs+1))` (:func:`drop_block_gamma`; the paper's
    :math:`(1-keep\_prob)`; :math:`\gamma \le p`):

    - seeds :math:`z \sim \mathrm{Bernoulli}(\gamma)` at the positions where a whole block fits
      (``a <= h <= H - bs + a`` and the same for ``w``, ``a = bs // 2``), independently per sample
      and channel (``per_channel=True``: the paper and torchvision) or one seed map per sample
      shared by all channels (``per_channel=False``);
    - each seed zeroes the ``bs x bs`` square ``[h - a, h - a + bs) x [w - a, w - a + bs)``
      (centred for odd ``bs``; for even ``bs`` one more row/column before the seed), which never
      leaves the map, so every block size keeps the shape; :math:`M` = 1 outside all squares;
    - :math:`y = x\,M\,|M| / (\epsilon + \sum M)`: the sums run over each sample
      (``normalize="sample"``, the default, so samples stay independent, as batched Monte-Carlo
      needs) or over the whole batch (``normalize="batch"``, torchvision), counting a shared mask
      once per channel.

    Evaluation (``training=False``, outside :func:`dropkit.mc.stochastic`) and ``p = 0`` return
    ``input`` itself. ``p = 1`` does not drop everything (the paper's :math:`\gamma` counts
    overlapping blocks as disjoint), only ``bs = 1`` with ``p = 1`` gives zeros.

    Stream: the seed mask has shape ``(N, C', H, W)`` (``C' = C`` or 1); element ``k`` of it
    (row-major) reads word ``k + offset`` and is a seed iff that word is below
    ``round(gamma * 2**32)`` (i.e. not a keep decision at that threshold) and lies in the seed
    region. One call consumes ``N * C' * H * W`` words. Backward regenerates the mask from the
    seed; nothing of it is kept.

    Relation to the libraries:

    - ``torchvision.ops.drop_block2d`` draws Bernoulli(:math:`\gamma`) seeds over
      ``(N, C, H-bs+1, W-bs+1)``, pads by ``bs // 2`` and max-pools: for odd ``bs`` these are the
      same centred squares, the same :math:`\gamma` and, with ``normalize="batch"``, the same
      normalisation, so the distributions coincide. torchvision changes the output shape for even
      ``bs`` and fails when ``block_size`` exceeds the map; dropkit clips ``bs`` to the map (as
      timm) and keeps the shape.
    - ``timm.layers.drop_block_2d`` (``fast=False``) uses the same seed region and centred blocks,
      but computes :math:`\gamma` with the unclipped ``block_size`` in the denominator,
      normalises over the batch with eps ``1e-7``, and its ``batchwise=True`` shares one mask over
      the *batch* (not over channels; dropkit does not offer that coupling, which would make
      samples dependent). timm's default ``fast=True`` path seeds every position (no seed region)
      and clips the blocks at the border.
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
    r"""DropBlock on ``(N, C, D, H, W)`` volumes: cubes of side ``bs = min(block_size, D, H, W)``.

    As :func:`drop_block2d` (same paper) with
    :math:`\gamma = p\,D H W / (bs^3 (D-bs+1)(H-bs+1)(W-bs+1))`, a seed region and cube anchoring
    in all three spatial dimensions, a seed mask of shape ``(N, C', D, H, W)`` (``N*C'*D*H*W``
    stream words) and the same normalisation; ``normalize="batch"`` with odd ``bs`` has
    ``torchvision.ops.drop_block3d``'s distribution.
    """
    return _drop_block(input, p, block_size, inplace, eps, training, per_channel, normalize,
                       generator, seed, offset, 3)  # fmt: skip
