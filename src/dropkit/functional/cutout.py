"""Cutout (DeVries & Taylor 2017): mask square patches of input images."""

from __future__ import annotations

import torch

from dropkit import _state
from dropkit.ops import HOLES, overridable, resolve_stream
from dropkit.ops.checks import (
    MAX_EXTENT,
    check_fill,
    check_int,
    check_real,
    check_stream_args,
    check_tensor,
    check_training,
)

__all__ = ["MAX_HOLES", "check_cutout_args", "cutout"]

#: The most holes per image: the holes' centres are drawn (and, in the reference kernel, their
#: masks formed) per image and hole, so the count is bounded before anything is drawn.
MAX_HOLES = 4096


def check_cutout_args(size, n_holes, fill, op: str = "cutout") -> tuple[int, int, float]:
    """``size`` an integer in ``[1, 2**31 - 1]``, ``n_holes`` an integer in ``[0, MAX_HOLES]``,
    ``fill`` a finite real number (not a bool)."""
    size = check_int(size, "size", op=op, minimum=1, maximum=MAX_EXTENT)
    n_holes = check_int(n_holes, "n_holes", op=op, minimum=0, maximum=MAX_HOLES)
    if isinstance(fill, bool) or (isinstance(fill, torch.Tensor) and fill.dtype == torch.bool):
        raise TypeError(f"{op}: fill must be a real number, got bool {fill!r}")
    fill = check_real(fill, "fill", op=op)
    return size, n_holes, fill


@overridable
def cutout(
    input: torch.Tensor,
    size: int,
    n_holes: int = 1,
    fill: float = 0.0,
    training: bool = True,
    *,
    generator: torch.Generator | None = None,
    seed: int | torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    r"""Fill ``n_holes`` squares of side ``size`` per image with ``fill`` (training only).

    DeVries & Taylor, "Improved Regularization of Convolutional Neural Networks with Cutout",
    arXiv:1708.04552, 2017. For image ``n`` and hole ``k`` the centre is uniform over the pixels,

    .. math:: c_y = \lfloor u_{2j} H \rfloor,\quad c_x = \lfloor u_{2j+1} W \rfloor,\quad
              j = n \cdot n\_holes + k,

    where :math:`u_i = (w_{i + offset} \gg 8) \cdot 2^{-24}` is the stream's uniform float of word
    ``i + offset`` (so image ``n`` consumes words ``[2 n n_holes, 2 (n + 1) n_holes)``: images are
    independent and a prefix of the batch draws the same holes). The hole covers rows
    :math:`[c_y - \lfloor size/2 \rfloor, c_y - \lfloor size/2 \rfloor + size)` and the same
    columns around :math:`c_x`, clipped at the border: holes near the edge fall partly outside the
    image, as in the paper (whose centres are uniform over the image, not over the positions
    where the whole square fits). Every channel of an image gets the same holes; overlapping holes
    simply union. Output: :math:`y = x` outside the holes and ``fill`` inside (in the input's
    layout); gradients are zero inside the holes. There is no rescaling (Cutout is an input
    augmentation).

    Difference from the authors' code: it covers ``[c - size//2, c + size//2)``, i.e. ``size - 1``
    rows for odd ``size``; dropkit always covers ``size`` rows and columns (before clipping).
    torchvision and timm have no Cutout (their ``RandomErasing`` draws rectangles of random area
    and aspect ratio that lie inside the image).

    Args:
        input: ``(C, H, W)`` or ``(N, C, H, W)``, floating or integer (e.g. uint8 images).
        size: side of the square, integer in ``[1, 2**31 - 1]``.
        n_holes: holes per image, integer in ``[0, 4096]`` (0: identity).
        fill: the value written into the holes: a finite number representable in ``input``'s
            dtype (an integer in range for integer dtypes; nothing is truncated or wrapped).
        training: apply if True (or inside :func:`dropkit.mc.stochastic`); else the identity.
        generator, seed, offset: the random stream (see :func:`dropkit.functional.dropout`).

    Returns:
        A new tensor of ``input``'s shape and dtype (``input`` itself when nothing is cut).
    """
    check_tensor(input, "cutout")
    if input.dtype == torch.bool or input.dtype.is_complex:
        raise TypeError(
            f"cutout: input must have a real floating or integer dtype, got {input.dtype}"
        )
    size, n_holes, fill = check_cutout_args(size, n_holes, fill)
    check_fill(fill, input.dtype)
    check_training(training, "cutout")
    if input.dim() not in (3, 4):
        raise ValueError(f"cutout expects (C, H, W) or (N, C, H, W) input, got {input.dim()}D")
    check_stream_args(generator, seed, offset)
    if not _state.is_stochastic(training) or size == 0 or n_holes == 0 or input.numel() == 0:
        return input
    n = input.shape[0] if input.dim() == 4 else 1
    seed_t, offset = resolve_stream(generator, seed, offset, 2 * n_holes * n)
    return HOLES(input, seed_t, offset, affine=True, size=size, n_holes=n_holes, fill=fill)
