"""Swap torch's dropout modules for dropkit's in an existing model, and back."""

from __future__ import annotations

import copy
import inspect

from torch import nn

from dropkit.ops.checks import check_choice, check_flag, check_module

__all__ = ["replace_dropout"]

_NAMES = ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout")


def _pairs() -> list[tuple[type, type]]:
    from dropkit import nn as dnn

    # Looked up by name so that a class not (yet) in dropkit.nn is skipped, not an import error.
    return [(getattr(nn, n), getattr(dnn, n)) for n in _NAMES if hasattr(dnn, n)]


def _takes_mode(cls: type) -> bool:
    return "mode" in inspect.signature(cls.__init__).parameters


def replace_dropout(
    model: nn.Module, to: str = "dropkit", *, mode: str = "inverted", inplace: bool = True
) -> nn.Module:
    """Replace torch's dropout modules of ``model`` by dropkit's twins, or the reverse.

    ``to="dropkit"``: every module whose type is exactly ``torch.nn.Dropout``, ``Dropout1d``,
    ``Dropout2d``, ``Dropout3d``, ``AlphaDropout`` or ``FeatureAlphaDropout`` (subclasses are left
    alone: they may override ``forward``) becomes the dropkit class of the same name with the same
    ``p``, ``inplace`` and train/eval flag. ``mode`` sets the mode of the new ``Dropout`` /
    ``Dropout1d..3d`` layers (alpha dropout has none); ``"classic"`` changes the test-time
    function (eval multiplies by ``1 - p``) — train with it, or use :func:`dropkit.convert`.

    ``to="torch"``: the reverse. A classic-mode dropkit layer has no torch equivalent and raises
    ``ValueError`` (run ``dropkit.convert(model, to="inverted")`` first), as does a channels-last
    spatial dropout; a per-layer ``seed``/``generator`` is dropped (torch has none).

    Returns ``model`` (changed in place), or a changed deep copy with ``inplace=False``. A bare
    dropout module (``replace_dropout(nn.Dropout(0.5))``) cannot change its own class: its
    replacement is returned (whatever ``inplace``) and the argument is left as it was.
    """
    check_module(model, "model", op="replace_dropout")
    check_choice(to, "to", ("dropkit", "torch"), op="replace_dropout")
    check_choice(mode, "mode", ("inverted", "classic"), op="replace_dropout")
    inplace = check_flag(inplace, "inplace", op="replace_dropout")
    pairs = _pairs()
    # A bare dropout module: the module cannot change its own class, so return its replacement.
    root = _replacement(model, "<model>", to, mode, pairs)
    if root is not None:
        return root
    model = model if inplace else copy.deepcopy(model)
    replacements = []
    for parent_name, parent in model.named_modules():
        for name, child in parent.named_children():
            full = f"{parent_name}.{name}" if parent_name else name
            new = _replacement(child, full, to, mode, pairs)
            if new is not None:
                replacements.append((parent, name, new))
    # Swapped after the walk (and after every check passed) so a refusal leaves the model whole.
    for parent, name, new in replacements:
        setattr(parent, name, new)
    return model


def _replacement(
    module: nn.Module, where: str, to: str, mode: str, pairs: list[tuple[type, type]]
) -> nn.Module | None:
    """The module that replaces ``module`` (held at ``where``), or None when it stays."""
    for torch_cls, dk_cls in pairs:
        if to == "dropkit" and type(module) is torch_cls:
            extra = {"mode": mode} if _takes_mode(dk_cls) else {}
            new = dk_cls(module.p, module.inplace, **extra)
        elif to == "torch" and type(module) is dk_cls:
            if getattr(module, "mode", "inverted") != "inverted":
                raise ValueError(
                    f"{where}: torch has no classic dropout; run "
                    "dropkit.convert(model, to='inverted') first"
                )
            if getattr(module, "channels_last", False):
                raise ValueError(f"{where}: torch has no channels-last {torch_cls.__name__}")
            new = torch_cls(module.p, module.inplace)
        else:
            continue
        new.train(module.training)
        return new
    return None
