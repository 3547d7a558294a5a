"""Convert a model between classic and inverted dropout without changing its test-time function.

Hinton et al. 2012 trained with unscaled ("classic") dropout and tested the "mean network", whose
outgoing weights of each dropped layer are multiplied by the keep probability ``1 - p``. Inverted
dropout moves that factor into training. So a classic ``Dropout(p)`` followed by an affine layer
``W x + b`` computes at test time ``W ((1-p) x) + b = ((1-p) W) x + b``: the same as an inverted
``Dropout(p)`` followed by the layer with weight ``(1-p) W`` and the same bias.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["convert"]

_AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Bilinear)
# Modules that commute with a positive scalar factor, so the factor may be moved past them.
_HOMOGENEOUS = (nn.ReLU, nn.LeakyReLU, nn.Identity, nn.Flatten, nn.MaxPool1d, nn.MaxPool2d,
                nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
                nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)  # fmt: skip


def convert(model: nn.Module, to: str = "inverted", *, inplace: bool = False) -> nn.Module:
    """Switch every dropkit ``Dropout`` in ``nn.Sequential`` containers of ``model`` to mode ``to``,
    rescaling the weight of the next affine layer (Linear/Conv/Bilinear) so that the eval-mode
    function is unchanged: ``to="inverted"`` multiplies it by ``1 - p``, ``to="classic"`` divides
    by it. Between the dropout and that layer only positively homogeneous modules (ReLU, pooling,
    Flatten, Identity, other dropouts) may stand; anything else raises ``ValueError``, as does a
    dropout with no affine layer after it or with ``p = 1`` (whose function cannot be kept).

    Returns the converted model (a deep copy unless ``inplace``).
    """
    from dropkit.nn import Dropout

    if to not in ("inverted", "classic"):
        raise ValueError(f"to must be 'inverted' or 'classic', got {to!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    model = model if inplace else copy.deepcopy(model)
    source = "classic" if to == "inverted" else "inverted"
    containers = [m for m in model.modules() if isinstance(m, nn.Sequential)]
    handled = set()
    for seq in containers:
        layers = list(seq)
        for index, layer in enumerate(layers):
            if not isinstance(layer, Dropout) or layer.mode != source or layer.p == 0.0:
                if isinstance(layer, Dropout) and layer.mode == source:
                    layer.mode = to  # p = 0: both modes are the identity
                    handled.add(id(layer))
                continue
            if layer.p == 1.0:
                raise ValueError("a dropout with p=1 cannot be converted (its keep factor is 0)")
            target = None
            for follower in layers[index + 1 :]:
                if isinstance(follower, _AFFINE):
                    target = follower
                    break
                if not isinstance(follower, (*_HOMOGENEOUS, Dropout)):
                    raise ValueError(
                        f"cannot move the keep factor of {layer!r} past {type(follower).__name__}: "
                        "only ReLU, pooling, Flatten, Identity and dropout may stand between a "
                        "dropout and the affine layer it feeds"
                    )
            if target is None:
                raise ValueError(
                    f"{layer!r} is not followed by a Linear/Conv layer in its Sequential"
                )
            factor = 1.0 - layer.p if to == "inverted" else 1.0 / (1.0 - layer.p)
            with torch.no_grad():
                target.weight.mul_(factor)
            layer.mode = to
            handled.add(id(layer))
    left = [m for m in model.modules() if isinstance(m, Dropout) and m.mode == source]
    if left:
        raise ValueError(
            f"{len(left)} {source} dropout layer(s) are not inside an nn.Sequential; "
            "convert them by hand (scale the weights they feed by 1 - p)"
        )
    return model
