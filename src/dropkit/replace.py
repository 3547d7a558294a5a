"""Swap torch's dropout modules for dropkit's in an existing model, and back."""

from __future__ import annotations

import copy

from torch import nn

__all__ = ["replace_dropout"]


def _pairs():
    from dropkit import nn as dnn

    return [
        (nn.Dropout, dnn.Dropout),
        (nn.Dropout1d, dnn.Dropout1d),
        (nn.Dropout2d, dnn.Dropout2d),
        (nn.Dropout3d, dnn.Dropout3d),
        (nn.AlphaDropout, dnn.AlphaDropout),
        (nn.FeatureAlphaDropout, dnn.FeatureAlphaDropout),
    ]


def replace_dropout(
    model: nn.Module, to: str = "dropkit", *, mode: str = "inverted", inplace: bool = True
) -> nn.Module:
    """Replace every torch dropout module of ``model`` by its dropkit twin (``to="dropkit"``) or
    the reverse (``to="torch"``), keeping ``p``, ``inplace`` and the train/eval flag.

    ``mode`` sets the mode of new dropkit ``Dropout``/``Dropout1d..3d`` layers (``"classic"``
    changes the test-time function: use :func:`dropkit.convert` to keep it). A classic-mode dropkit
    layer has no torch equivalent: converting it to torch raises unless you first
    ``dropkit.convert(model, to="inverted")``. Returns the model (a deep copy unless ``inplace``).
    """
    if to not in ("dropkit", "torch"):
        raise ValueError(f"to must be 'dropkit' or 'torch', got {to!r}")
    if mode not in ("inverted", "classic"):
        raise ValueError(f"mode must be 'inverted' or 'classic', got {mode!r}")
    model = model if inplace else copy.deepcopy(model)
    pairs = _pairs()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            for torch_cls, dk_cls in pairs:
                if to == "dropkit" and type(child) is torch_cls:
                    extra = {"mode": mode} if hasattr(dk_cls(0.5), "mode") else {}
                    new = dk_cls(child.p, child.inplace, **extra)
                elif to == "torch" and type(child) is dk_cls:
                    if getattr(child, "mode", "inverted") != "inverted":
                        raise ValueError(
                            f"{name}: torch has no classic dropout; run "
                            "dropkit.convert(model, to='inverted') first"
                        )
                    new = torch_cls(child.p, child.inplace)
                else:
                    continue
                new.train(child.training)
                setattr(parent, name, new)
                break
    return model
