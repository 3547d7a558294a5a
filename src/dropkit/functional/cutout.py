"""Cutout (DeVries & Taylor 2017): mask square patches of input images."""

from __future__ import annotations

import torch

from dropkit import _state, rng
from dropkit.functional._checks import check_floating, check_offset, resolve_stream

__all__ = ["cutout"]


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
    r"""Fill ``n_holes`` squares of side ``size`` per image with ``fill``.

    DeVries & Taylor, "Improved Regularization of Convolutional Neural Networks with Cutout",
    2017. Each hole's centre :math:`(c_y, c_x)` is uniform over the image,
    :math:`c_y = \lfloor u_0 H \rfloor`, :math:`c_x = \lfloor u_1 W \rfloor`, and the hole covers
    rows :math:`[c_y - \lfloor size/2 \rfloor, c_y - \lfloor size/2 \rfloor + size)` (likewise
    columns), clipped at the border, so holes near the edge are partly outside the image, as in the
    paper. (For odd ``size`` the authors' code covers ``size - 1`` rows; dropkit covers ``size``.)
    The same hole applies to every channel; images are independent. Hole ``k`` of image ``n``
    uses the stream's uniform floats at indices ``2 (n * n_holes + k) + offset`` (``u_0``) and the
    next one (``u_1``). Evaluation (``training=False``) is the identity; gradients are zero inside
    holes.

    Shape: ``(C, H, W)`` or ``(N, C, H, W)``; output the same.
    """
    check_floating(input, "cutout")
    if input.dim() not in (3, 4):
        raise ValueError(f"cutout expects (C, H, W) or (N, C, H, W) input, got {input.dim()}D")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"size must be an integer >= 0, got {size!r}")
    if isinstance(n_holes, bool) or not isinstance(n_holes, int) or n_holes < 0:
        raise ValueError(f"n_holes must be an integer >= 0, got {n_holes!r}")
    check_offset(offset)
    if not _state.is_stochastic(training) or size == 0 or n_holes == 0 or input.numel() == 0:
        return input
    batch = input if input.dim() == 4 else input[None]
    n, _, h, w = batch.shape
    seed_t, offset = resolve_stream(input, generator, seed, offset, 2 * n_holes * n)
    u = rng.uniform((n, n_holes, 2), int(seed_t), offset, device=input.device).double()
    top = (u[..., 0] * h).floor().long() - size // 2
    left = (u[..., 1] * w).floor().long() - size // 2
    rows = torch.arange(h, device=input.device)
    cols = torch.arange(w, device=input.device)
    in_rows = (rows >= top[..., None]) & (rows < top[..., None] + size)  # (n, holes, h)
    in_cols = (cols >= left[..., None]) & (cols < left[..., None] + size)
    holes = (in_rows[..., :, None] & in_cols[..., None, :]).any(1)  # (n, h, w)
    out = torch.where(holes[:, None], torch.tensor(fill, dtype=input.dtype), batch)
    return out if input.dim() == 4 else out[0]
