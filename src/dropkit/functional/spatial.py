r"""Channel ("spatial") dropout 1d/2d/3d (Tompson et al. 2015): torch semantics, channels-last too.

Tompson, Goroshin, Jain, LeCun, Bregler, "Efficient Object Localization Using Convolutional
Networks", CVPR 2015: adjacent activations of a feature map are strongly correlated, so dropping
single pixels barely regularises; drop whole channels instead. For each sample ``n`` and channel
``c``: :math:`y_{n,c,\dots} = x_{n,c,\dots}\, m_{n,c} / (1-p)` with
:math:`m_{n,c} \sim \mathrm{Bernoulli}(1-p)`. The mask has shape ``(N, C, 1, ...)`` (or
``(N, 1, ..., C)`` channels-last; unbatched inputs drop the ``N``) and mask element ``n*C + c``
reads stream word ``n*C + c + offset``, so channels-first and channels-last layouts of the same
data draw the same channel mask.

Evaluation (``training=False`` outside :mod:`dropkit.mc`) is the identity (``mode="classic"``:
:math:`x(1-p)`). Differences from ``torch.nn.functional.dropout1d/2d/3d``: the mask comes from the
dropkit stream (same distribution, different draws from torch's generator), and the extra keyword
arguments ``channels_last``, ``mode``, ``generator``, ``seed`` and ``offset``. Ranks, unbatched
handling, warnings and errors are torch's.
"""

from __future__ import annotations

import warnings

import torch

from dropkit import _state
from dropkit.functional._common import keep_dropout
from dropkit.ops import overridable
from dropkit.ops.checks import check_flag, check_probability, check_tensor, check_training

__all__ = ["dropout1d", "dropout2d", "dropout3d"]


_FEATURE_RANK_ERROR = "Feature dropout requires at least 2 dimensions in the input"


def _channel_dropout(input, p, training, inplace, batched, channels_last, mode, generator, seed,
                     offset, op):  # fmt: skip
    """Torch's ``feature_dropout`` on ``input`` (with a leading batch of one added when not
    ``batched``): the mask varies over the batch and channel dimensions only."""
    if type(channels_last) is not bool:
        check_flag(channels_last, "channels_last", op=op)
    dims = input.dim()
    if dims + (0 if batched else 1) < 2:
        # torch only fails here when it actually samples; a no-op call passes through. (p and
        # training are checked here for the comparison; keep_dropout checks them otherwise.)
        p = check_probability(p, op=op)
        if _state.is_stochastic(check_training(training, op)) and 0.0 < p < 1.0:
            raise RuntimeError(_FEATURE_RANK_ERROR)
        shape = list(input.shape)
    else:
        shape = [1] * dims
        channel = dims - 1 if channels_last else (1 if batched else 0)
        shape[channel] = input.shape[channel]
        if batched:
            shape[0] = input.shape[0]
    return keep_dropout(input, p, training, inplace, shape, mode, generator, seed, offset, op)


@overridable
def dropout1d(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    channels_last: bool = False,
    mode: str = "inverted",
    generator: torch.Generator | None = None,
    seed: int | torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    """Zero whole channels of ``(N, C, L)`` or unbatched ``(C, L)`` input (``(N, L, C)`` /
    ``(L, C)`` with ``channels_last``). ``mode``, ``generator``, ``seed`` and ``offset`` as in
    :func:`dropkit.functional.dropout`."""
    check_tensor(input, "dropout1d")
    if input.dim() not in (2, 3):
        raise RuntimeError(
            f"dropout1d: Expected 2D or 3D input, but received a {input.dim()}D input. Note "
            "that dropout1d exists to provide channel-wise dropout on inputs with 1 spatial "
            "dimension, a channel dimension, and an optional batch dimension "
            "(i.e. 2D or 3D inputs)."
        )
    return _channel_dropout(input, p, training, inplace, input.dim() == 3, channels_last, mode,
                            generator, seed, offset, "dropout1d")  # fmt: skip


@overridable
def dropout2d(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    channels_last: bool = False,
    mode: str = "inverted",
    generator: torch.Generator | None = None,
    seed: int | torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    """Zero whole channels of ``(N, C, H, W)`` input (``(N, H, W, C)`` with ``channels_last``).

    Like torch, a 3D input is treated as batched 1D ``(N, C, L)`` with a warning (torch's
    historical behaviour, kept for drop-in compatibility); other ranks warn and drop over the
    first two dimensions (a 2D input is dropped elementwise; a 1D input is an error), as in
    torch."""
    check_tensor(input, "dropout2d")
    dims = input.dim()
    if dims not in (3, 4):
        warnings.warn(
            f"dropout2d: Received a {dims}-D input to dropout2d, which is deprecated and will "
            "result in an error in a future release. To retain the behavior and silence this "
            "warning, please use dropout instead. Note that dropout2d exists to provide "
            "channel-wise dropout on inputs with 2 spatial dimensions, a channel dimension, "
            "and an optional batch dimension (i.e. 3D or 4D inputs).",
            stacklevel=2,
        )
    if dims == 3:
        warnings.warn(
            "dropout2d: Received a 3D input to dropout2d and assuming that channel-wise 1D "
            "dropout behavior is desired - input is interpreted as shape (N, C, L), where C is "
            "the channel dim. This behavior will change in a future release to interpret the "
            "input as one without a batch dimension, i.e. shape (C, H, W). To maintain the 1D "
            "channel-wise dropout behavior, please switch to using dropout1d instead.",
            stacklevel=2,
        )
    return _channel_dropout(input, p, training, inplace, True, channels_last, mode, generator,
                            seed, offset, "dropout2d")  # fmt: skip


@overridable
def dropout3d(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    channels_last: bool = False,
    mode: str = "inverted",
    generator: torch.Generator | None = None,
    seed: int | torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    """Zero whole channels of ``(N, C, D, H, W)`` or unbatched ``(C, D, H, W)`` input
    (``(N, D, H, W, C)`` / ``(D, H, W, C)`` with ``channels_last``).

    Like torch, any rank other than 5 is treated as unbatched (a batch of one is added, so the
    channel is dimension 0), and ranks other than 4 and 5 warn."""
    check_tensor(input, "dropout3d")
    dims = input.dim()
    if dims not in (4, 5):
        warnings.warn(
            f"dropout3d: Received a {dims}-D input to dropout3d, which is deprecated and will "
            "result in an error in a future release. To retain the behavior and silence this "
            "warning, please use dropout instead. Note that dropout3d exists to provide "
            "channel-wise dropout on inputs with 3 spatial dimensions, a channel dimension, "
            "and an optional batch dimension (i.e. 4D or 5D inputs).",
            stacklevel=2,
        )
    return _channel_dropout(input, p, training, inplace, dims == 5, channels_last, mode,
                            generator, seed, offset, "dropout3d")  # fmt: skip
