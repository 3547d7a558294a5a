"""DropBlock (Ghiasi, Lin, Le 2018): drop contiguous squares of convolutional feature maps."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dropkit import _state
from dropkit.ops import BLOCKS, overridable, resolve_stream
from dropkit.ops.checks import (
    MAX_EXTENT,
    check_choice,
    check_flag,
    check_floating,
    check_int,
    check_probability,
    check_real,
    check_stream_args,
    check_tensor,
    check_training,
)

__all__ = ["BORDERS", "NORMALIZE", "check_drop_block_args", "drop_block2d", "drop_block3d",
           "drop_block_gamma"]  # fmt: skip

NORMALIZE = ("sample", "batch", "none")
BORDERS = ("valid", "clip")


def check_drop_block_args(p, block_size, eps, normalize, border, per_channel, noise,
                          op: str) -> tuple:  # fmt: skip
    """Every DropBlock argument, checked once (by the functional and by the modules)."""
    return (
        check_probability(p, op=op, what="drop probability"),
        check_int(block_size, "block_size", op=op, minimum=1, maximum=MAX_EXTENT),
        check_real(eps, "eps", op=op, low=0.0, low_open=True),
        check_choice(normalize, "normalize", NORMALIZE, op=op),
        check_choice(border, "border", BORDERS, op=op),
        check_flag(per_channel, "per_channel", op=op),
        check_flag(noise, "noise", op=op),
    )


def block_sizes(block_size: int, spatial, border: str) -> list[int]:
    """The block's side per spatial dimension: ``min(block_size, S_d)`` clipped per dimension
    (``"clip"``, timm) or the same side ``min(block_size, *S)`` in every dimension (``"valid"``)."""
    if border == "clip":
        return [min(block_size, s) for s in spatial]
    side = min(block_size, *spatial)
    return [side] * len(spatial)


def drop_block_gamma(p: float, block_size: int | list[int], spatial: tuple[int, ...]) -> float:
    r"""The seed rate of the paper: :math:`\gamma = p \prod_d S_d / (\prod_d k_d (S_d - k_d + 1))`
    (for 2-D with one side ``bs``: :math:`(1-keep)\,W H / (bs^2 (W-bs+1)(H-bs+1))`); ``block_size``
    is one side for every dimension or one per dimension, each in ``[1, S_d]`` (the ops clip
    ``block_size`` to the map first). Since :math:`k (S - k + 1) \ge S`, :math:`\gamma \le p`.
    ``p`` is a drop probability in [0, 1] and ``spatial`` one or more sizes >= 1; anything else
    raises (``TypeError`` for a wrong type, ``ValueError`` for a wrong value)."""
    op = "drop_block_gamma"
    p = check_probability(p, op=op, what="drop_block_gamma: p")
    if isinstance(spatial, (str, bytes, torch.Tensor)) or not isinstance(spatial, Sequence):
        raise TypeError(
            f"{op}: spatial must be a sequence of integers, got {type(spatial).__name__} "
            f"{spatial!r}"
        )
    if not spatial:
        raise ValueError(f"{op}: spatial must hold at least one size, got {spatial!r}")
    spatial = [check_int(s, "spatial", op=op, minimum=1, maximum=MAX_EXTENT) for s in spatial]
    if isinstance(block_size, (str, bytes, torch.Tensor)) or not isinstance(block_size, Sequence):
        sizes = [check_int(block_size, "block_size", op=op)] * len(spatial)
    else:
        sizes = [check_int(k, "block_size", op=op) for k in block_size]
    if len(sizes) != len(spatial) or any(not 1 <= k <= s for k, s in zip(sizes, spatial)):
        raise ValueError(
            f"drop_block_gamma: block_size {block_size!r} must lie in [1, S] for every spatial "
            f"size S of {tuple(spatial)} (clip it to the map first, as the ops do)"
        )
    total, valid = 1, 1  # plain loops: torch.compile cannot trace math.prod over a generator
    for k, s in zip(sizes, spatial):
        total *= s
        valid *= k * (s - k + 1)
    return p * total / valid


def _drop_block(input, p, block_size, inplace, eps, training, per_channel, normalize, border,
                noise, generator, seed, offset, dims):  # fmt: skip
    op = f"drop_block{dims}d"
    check_tensor(input, op)
    p, block_size, eps, normalize, border, per_channel, noise = check_drop_block_args(
        p, block_size, eps, normalize, border, per_channel, noise, op
    )
    check_flag(inplace, "inplace", op=op)
    check_training(training, op)
    check_stream_args(generator, seed, offset)
    if not _state.is_stochastic(training) or p == 0.0:
        return input
    check_floating(input, op)
    if input.dim() != dims + 2:
        raise ValueError(f"{op}: expected a {dims + 2}D input (N, C, ...), got {input.dim()}D")
    if input.numel() == 0:
        return input
    spatial = [int(s) for s in input.shape[2:]]
    sizes = block_sizes(block_size, spatial, border)
    threshold = round(drop_block_gamma(p, sizes, spatial) * 2.0**32)
    seed_words = int(input.shape[0]) * (int(input.shape[1]) if per_channel else 1)
    for s in spatial:
        seed_words *= s
    seed_t, offset = resolve_stream(
        generator,
        seed,
        offset,
        seed_words,
        words=seed_words + (2 * input.numel() + 1 if noise else 0),
    )
    args = (seed_t, offset, threshold, sizes, per_channel, border == "clip", normalize, eps, noise)
    if inplace:
        return input.copy_(BLOCKS(input, args[0], args[1], True, *args[2:]))
    return BLOCKS(input, args[0], args[1], True, *args[2:])


_DOC_ARGS = """
    Args:
        input: ``(N, C, *S)`` floating tensor.
        p: drop probability in [0, 1] (the paper's :math:`1 - keep\\_prob`).
        block_size: side of a block (integer >= 1), clipped to the map.
        inplace: write the result into ``input``.
        eps: the normaliser's :math:`\\epsilon` (> 0).
        training: apply if True (or inside :func:`dropkit.mc.stochastic`); else the identity.
        per_channel: one seed map per sample and channel (the paper, torchvision) or one per
            sample shared by all channels (``False``; timm's ``couple_channels=True``).
        normalize: ``"sample"`` (each sample's kept mass, so samples stay independent, as batched
            Monte-Carlo needs), ``"batch"`` (torchvision, timm) or ``"none"`` (timm's
            ``scale_by_keep=False``).
        border: ``"valid"`` (seeds only where the whole block fits, so every block lies inside the
            map: the paper, torchvision) or ``"clip"`` (timm >= 1.0.23: seeds anywhere, blocks
            clipped at the border, the side clipped per dimension).
        noise: dropped elements get the stream's standard normals instead of 0 and nothing is
            rescaled (timm's ``with_noise``).
        generator, seed, offset: the random stream (see :func:`dropkit.functional.dropout`).
"""


@overridable
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
    border: str = "valid",
    noise: bool = False,
    generator: torch.Generator | None = None,
    seed: int | torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    r"""DropBlock on ``(N, C, H, W)`` maps (torchvision's argument order for the first six).

    Ghiasi, Lin, Le, "DropBlock: A regularization method for convolutional networks", NeurIPS 2018,
    Algorithm 1. With block sides :math:`k_h, k_w` (``min(block_size, H, W)`` for both with
    ``border="valid"``; ``min(block_size, H)``, ``min(block_size, W)`` with ``"clip"``) and
    :math:`\gamma = p\,H W / (k_h k_w (H-k_h+1)(W-k_w+1))` (:func:`drop_block_gamma`):

    - seeds :math:`z \sim \mathrm{Bernoulli}(\gamma)`, independently per sample and channel
      (``per_channel=True``) or one seed map per sample (``per_channel=False``); with
      ``border="valid"`` only where a whole block fits (``a_d <= i_d <= S_d - k_d + a_d``,
      ``a_d = k_d // 2``), with ``"clip"`` anywhere;
    - each seed zeroes ``[i_d - a_d, i_d - a_d + k_d)`` in every spatial dimension (centred for
      odd sides, one more row/column before the seed for even ones), clipped to the map;
      :math:`M` = 1 outside all blocks;
    - :math:`y = x\,M\,|M| / (\epsilon + \sum M)` with the sums over each sample
      (``normalize="sample"``) or the whole batch (``"batch"``; a shared mask counted once per
      channel), or :math:`y = x M` (``"none"``); with ``noise``,
      :math:`y = x M + z (1 - M)`, :math:`z` standard normals.

    Evaluation (``training=False``, outside :func:`dropkit.mc.stochastic`) and ``p = 0`` return
    ``input`` itself. ``p = 1`` does not drop everything (the paper's :math:`\gamma` counts
    overlapping blocks as disjoint).

    Stream: the seed map has shape ``(N, C', H, W)`` (``C' = C`` or 1); element ``k`` of it
    (row-major) reads word ``k + offset`` and is a seed iff that word is below
    ``round(gamma * 2**32)`` (and, for ``"valid"``, in the seed region): ``N * C' * H * W`` words.
    ``noise`` reads the standard normals of ``x``'s logical elements from variate
    ``(offset + N C' H W + 1) // 2`` on. Backward regenerates the mask from the seed; nothing of it
    is kept. The output keeps the input's layout.

    Relation to the libraries: ``torchvision.ops.drop_block2d`` is ``border="valid"``,
    ``normalize="batch"`` for odd sides (the same centred blocks, :math:`\gamma` and
    normalisation; it changes the output shape for even sides and fails when ``block_size``
    exceeds the map). ``timm.layers.drop_block_2d`` (>= 1.0.23) is ``border="clip"``,
    ``normalize="batch"`` (or ``"none"`` for ``scale_by_keep=False``), ``per_channel=False`` for
    its default ``couple_channels=True``, ``noise`` for ``with_noise``; timm's eps is ``1e-7``.
    """
    return _drop_block(input, p, block_size, inplace, eps, training, per_channel, normalize,
                       border, noise, generator, seed, offset, 2)  # fmt: skip


@overridable
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
    border: str = "valid",
    noise: bool = False,
    generator: torch.Generator | None = None,
    seed: int | torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    r"""DropBlock on ``(N, C, D, H, W)`` volumes: cubes (or, clipped, boxes).

    As :func:`drop_block2d` (same paper) with
    :math:`\gamma = p\,D H W / (k_d k_h k_w (D-k_d+1)(H-k_h+1)(W-k_w+1))`, a seed map of shape
    ``(N, C', D, H, W)`` and the same options; ``border="valid"``, ``normalize="batch"`` with odd
    sides has ``torchvision.ops.drop_block3d``'s distribution.
    """
    return _drop_block(input, p, block_size, inplace, eps, training, per_channel, normalize,
                       border, noise, generator, seed, offset, 3)  # fmt: skip


drop_block2d.__doc__ += _DOC_ARGS
drop_block3d.__doc__ += _DOC_ARGS
