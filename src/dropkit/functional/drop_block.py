"""DropBlock (Ghiasi, Lin, Le, NeurIPS 2018): drop contiguous blocks of convolutional maps."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from dropkit import _state
from dropkit.ops import checks as chk
from dropkit.ops import overridable, resolve_stream

__all__ = ["drop_block2d", "drop_block3d", "drop_block_gamma"]


def _gamma(p: float, sizes, spatial) -> float:
    total = valid = 1  # plain loops: torch.compile cannot trace math.prod over a generator
    for k, s in zip(sizes, spatial):
        total, valid = total * s, valid * k * (s - k + 1)
    return p * total / valid


def drop_block_gamma(p: float, block_size: int | list[int], spatial: tuple[int, ...]) -> float:
    r"""The paper's seed rate :math:`\gamma = p \prod_d S_d / \prod_d k_d (S_d - k_d + 1)` (at most
    ``p``) for one ``block_size`` or one per dimension, each in ``[1, S_d]`` (the ops clip it to the
    map first). Wrong types raise ``TypeError``, wrong values ``ValueError``."""
    op = "drop_block_gamma"
    p = chk.check_probability(p, op=op, what="drop_block_gamma: p")
    if isinstance(spatial, (str, bytes, torch.Tensor)) or not isinstance(spatial, Sequence):
        raise TypeError(f"{op}: spatial must be a sequence of integers, got "
                        f"{type(spatial).__name__} {spatial!r}")  # fmt: skip
    if not spatial:
        raise ValueError(f"{op}: spatial must hold at least one size, got {spatial!r}")
    spatial = [chk.check_int(s, "spatial", op=op, minimum=1, maximum=chk.MAX_EXTENT)
               for s in spatial]  # fmt: skip
    one = isinstance(block_size, (str, bytes, torch.Tensor)) or not isinstance(block_size, Sequence)
    sizes = [chk.check_int(k, "block_size", op=op)
             for k in ([block_size] * len(spatial) if one else block_size)]  # fmt: skip
    if len(sizes) != len(spatial) or any(not 1 <= k <= s for k, s in zip(sizes, spatial)):
        raise ValueError(f"{op}: block_size {block_size!r} must lie in [1, S] for every spatial "
                         f"size S of {tuple(spatial)} (the ops clip it first)")  # fmt: skip
    return _gamma(p, sizes, spatial)


def _drop_block(input, p, block_size, inplace, eps, training, per_channel, normalize, border,
                noise, generator, seed, offset, dims):  # fmt: skip
    op = f"drop_block{dims}d"
    chk.check_tensor(input, op)
    p, block_size, eps, normalize, border, per_channel, noise = chk.check_drop_block_args(
        p, block_size, eps, normalize, border, per_channel, noise, op)  # fmt: skip
    chk.check_flag(inplace, "inplace", op=op)
    chk.check_training(training, op)
    chk.check_stream_args(generator, seed, offset)
    if not _state.is_stochastic(training) or p == 0.0:
        return input
    chk.check_floating(input, op)
    if input.dim() != dims + 2:
        raise ValueError(f"{op}: expected a {dims + 2}D input (N, C, ...), got {input.dim()}D")
    if input.numel() == 0:
        return input
    n, c, *spatial = (int(s) for s in input.shape)
    clip = border == "clip"
    sizes = [min(block_size, s) for s in spatial] if clip else [min(block_size, *spatial)] * dims
    words = n * (c if per_channel else 1) * math.prod(spatial)  # the seed map's
    extra = 2 * input.numel() + 1 if noise else 0  # the normals'
    seed, offset = resolve_stream(generator, seed, offset, words, words=words + extra)
    out = torch.ops.dropkit.blocks.default(
        input, seed, offset, affine=True, threshold=round(_gamma(p, sizes, spatial) * 2.0**32),
        sizes=sizes, per_channel=per_channel, clip=clip, normalize=normalize, eps=eps, noise=noise,
    )  # fmt: skip
    return input.copy_(out) if inplace else out


@overridable
def drop_block2d(input: torch.Tensor, p: float, block_size: int, inplace: bool = False,
                 eps: float = 1e-06, training: bool = True, *, per_channel: bool = True,
                 normalize: str = "sample", border: str = "valid", noise: bool = False,
                 generator: torch.Generator | None = None, seed: int | torch.Tensor | None = None,
                 offset: int = 0) -> torch.Tensor:  # fmt: skip
    r"""DropBlock on ``(N, C, H, W)`` maps (Ghiasi, Lin, Le, "DropBlock: A regularization method for
    convolutional networks", NeurIPS 2018, Algorithm 1); torchvision's first six arguments.

    Block sides :math:`k_d` are ``min(block_size, H, W)`` (``border="valid"``) or
    ``min(block_size, S_d)`` per dimension (``"clip"``). Seeds are
    :math:`\mathrm{Bernoulli}(\gamma)`, :math:`\gamma = p\,HW / (k_h k_w (H-k_h+1)(W-k_w+1))`
    (:func:`drop_block_gamma`), per sample and channel (``per_channel``) or per sample, where the
    whole block fits (``"valid"``: the paper, torchvision) or anywhere (``"clip"``: timm). A seed
    at :math:`i` zeroes :math:`[i_d - a_d, i_d - a_d + k_d)`, :math:`a_d = \lfloor k_d/2\rfloor`,
    clipped to the map (:math:`M = 0` there, 1 elsewhere); then
    :math:`y = x\,M\,|M| / (\epsilon + \sum M)`, the sums over each sample (``normalize="sample"``:
    samples independent, as batched Monte-Carlo needs) or the batch (``"batch"``; a shared mask
    counted once per channel), or :math:`y = x M` (``"none"``); with ``noise``,
    :math:`y = x M + z (1 - M)`, :math:`z` standard normals, nothing rescaled. ``p = 1`` does not
    drop everything (:math:`\gamma` counts overlapping blocks as disjoint). In evaluation (outside
    :func:`dropkit.mc.stochastic`) and for ``p = 0``: ``input`` itself.

    Stream: seed-map element ``k`` (row-major over ``(N, C', H, W)``, ``C'`` = C or 1) is a seed
    iff word ``k + offset`` is ``< round(gamma * 2**32)``; ``noise`` reads the normals of ``x``'s
    logical elements from variate ``(offset + N C' H W + 1) // 2``. Backward is the operator on the
    gradient (nothing saved but the seed); the output keeps the input's layout. torchvision's
    ``drop_block2d`` is ``normalize="batch"`` (same distribution for odd sides); timm's
    ``drop_block_2d`` (>= 1.0.23) ``border="clip", normalize="batch"`` (``"none"`` without
    ``scale_by_keep``), ``per_channel=not couple_channels``, ``noise=with_noise``. ``generator``,
    ``seed``, ``offset``: the stream (see :func:`dropkit.functional.dropout`).
    """
    return _drop_block(input, p, block_size, inplace, eps, training, per_channel, normalize,
                       border, noise, generator, seed, offset, 2)  # fmt: skip


@overridable
def drop_block3d(input: torch.Tensor, p: float, block_size: int, inplace: bool = False,
                 eps: float = 1e-06, training: bool = True, *, per_channel: bool = True,
                 normalize: str = "sample", border: str = "valid", noise: bool = False,
                 generator: torch.Generator | None = None, seed: int | torch.Tensor | None = None,
                 offset: int = 0) -> torch.Tensor:  # fmt: skip
    r"""DropBlock on ``(N, C, D, H, W)`` volumes: :func:`drop_block2d` with cubes (boxes when
    clipped), :math:`\gamma = p\,DHW / (k_d k_h k_w (D-k_d+1)(H-k_h+1)(W-k_w+1))` and a seed map
    ``(N, C', D, H, W)``; ``normalize="batch"`` with odd sides is ``torchvision.ops.drop_block3d``.
    """
    return _drop_block(input, p, block_size, inplace, eps, training, per_channel, normalize,
                       border, noise, generator, seed, offset, 3)  # fmt: skip
