"""Convert a model between classic and inverted dropout without changing its test-time function.

Hinton et al. 2012 ("Improving neural networks by preventing co-adaptation of feature
detectors") trained with unscaled ("classic") dropout and tested the "mean network", whose
outgoing weights of each dropped layer are multiplied by the keep probability ``1 - p``; dropkit's
classic mode does this at eval time as ``x * (1 - p)``. Inverted dropout moves the factor into
training. A classic dropout followed by an affine layer ``W x + b`` computes at test time
``W ((1-p) x) + b = ((1-p) W) x + b``: the same as an inverted dropout followed by the layer with
weight ``(1-p) W`` and the same bias.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from dropkit.ops.checks import check_choice, check_flag, check_module

__all__ = ["convert"]

# Layers linear in their input up to the bias: W (c x) + b = (c W) x + b.
_AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
           nn.ConvTranspose3d)  # fmt: skip
# Positively homogeneous, f(c x) = c f(x) for c > 0, so the factor may be moved past them.
_HOMOGENEOUS = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.Identity, nn.Flatten, nn.Unflatten,
                nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d,
                nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
                nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
                nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d)  # fmt: skip


def _flatten(seq: nn.Sequential) -> list[nn.Module]:
    layers = []
    for module in seq:
        layers.extend(_flatten(module) if isinstance(module, nn.Sequential) else [module])
    return layers


def _is_identity_at_eval(module: nn.Module) -> bool:
    from dropkit.nn._base import DropoutBase

    torch_dropout = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
    return isinstance(module, torch_dropout) or (
        isinstance(module, DropoutBase) and module.mode == "inverted"
    )


def convert(model: nn.Module, to: str = "inverted", *, inplace: bool = False) -> nn.Module:
    """Switch dropkit's dropout layers of ``model`` to mode ``to`` keeping the eval function.

    Handles every :class:`dropkit.nn.Dropout`-like layer (``Dropout``, ``Dropout1d/2d/3d``,
    ``BroadcastDropout``, ``LockedDropout``: all compute ``x * (1 - p)`` at eval in classic mode)
    inside ``nn.Sequential`` containers, nested Sequentials read as one flat sequence. The weight
    (not the bias) of the next affine layer (Linear, Conv1d/2d/3d, ConvTranspose1d/2d/3d) is
    multiplied by ``1 - p`` for ``to="inverted"`` and divided by it for ``to="classic"``. Between
    the dropout and that layer only positively homogeneous layers may stand (ReLU, LeakyReLU,
    PReLU, max/avg pooling, zero padding, Flatten/Unflatten, Identity) and dropouts that are the
    identity at eval (inverted dropkit ones, torch's ``Dropout``/``Dropout1d..3d``).

    Raises ``ValueError`` — before changing anything — when a dropout to convert is followed by
    anything else (BatchNorm, tanh, a custom module, ...), has no affine layer after it, sits
    outside an ``nn.Sequential``, or has ``p = 1`` (its test-time function is 0, and scaling the
    next weight by 0 cannot be undone). ``p = 0`` layers just change mode. Not converted:
    DropConnect (its factor acts on its own weight), Gaussian and alpha dropout (no classic form).

    Returns the converted model: a deep copy unless ``inplace``. Eval outputs agree up to the
    rounding of the scaled weights (float64: ~1e-15 relative).
    """
    from dropkit.nn._base import DropoutBase

    check_module(model, "model", op="convert")
    check_choice(to, "to", ("inverted", "classic"), op="convert")
    inplace = check_flag(inplace, "inplace", op="convert")
    model = model if inplace else copy.deepcopy(model)
    source = "classic" if to == "inverted" else "inverted"
    nested = {id(child) for m in model.modules() if isinstance(m, nn.Sequential) for child in m}
    roots = [m for m in model.modules() if isinstance(m, nn.Sequential) and id(m) not in nested]

    paths: dict[int, list[str]] = {}  # every place each module is held (shared ones: several)
    for name, module in model.named_modules(remove_duplicate=False):
        paths.setdefault(id(module), []).append(name or "<model>")

    # (dropout, layer whose weight scales, how many places hold the Sequential it was found in)
    plan: list[tuple[nn.Module, nn.Module | None, int]] = []
    for root in roots:
        uses = len(paths[id(root)])
        layers = _flatten(root)
        for index, layer in enumerate(layers):
            if not isinstance(layer, DropoutBase) or layer.mode != source:
                continue
            if layer.p == 0.0:
                plan.append((layer, None, uses))  # both modes are the identity
                continue
            if layer.p == 1.0:
                raise ValueError(f"{layer!r} cannot be converted: its keep factor 1 - p is 0")
            target = None
            for follower in layers[index + 1 :]:
                if isinstance(follower, _AFFINE):
                    target = follower
                    break
                if not (isinstance(follower, _HOMOGENEOUS) or _is_identity_at_eval(follower)):
                    raise ValueError(
                        f"cannot move the keep factor of {layer!r} past {type(follower).__name__}: "
                        "only ReLU-like activations, pooling, zero padding, Flatten, Identity and "
                        "eval-identity dropouts may stand between a dropout and the "
                        "Linear/Conv layer it feeds"
                    )
            if target is None:
                raise ValueError(
                    f"{layer!r} is not followed by a Linear/Conv layer in its Sequential"
                )
            plan.append((layer, target, uses))
    planned = {id(layer) for layer, _, _ in plan}
    left = [
        m
        for m in model.modules()
        if isinstance(m, DropoutBase) and m.mode == source and id(m) not in planned
    ]
    if left:
        raise ValueError(
            f"{len(left)} {source} dropout layer(s) are not inside an nn.Sequential; "
            "convert them by hand (scale the weight of the layer they feed by 1 - p)"
        )
    targets = _scaled_once(plan, paths)
    with torch.no_grad():
        for layer, target in targets:
            factor = 1.0 - layer.p if to == "inverted" else 1.0 / (1.0 - layer.p)
            target.weight.mul_(factor)
        for layer, _, _ in plan:
            layer.mode = to
    return model


def _scaled_once(
    plan: list[tuple[nn.Module, nn.Module | None, int]], paths: dict[int, list[str]]
) -> list[tuple[nn.Module, nn.Module]]:
    """Each layer whose weight scales, once, with a dropout that feeds it.

    A layer held in several places of the model (a Linear shared by two branches, a Sequential
    used twice) is scaled once, and only when every place that holds it is fed by a dropout being
    converted, all with the same ``p``; otherwise scaling would change its other uses, so this
    raises ``ValueError``. (Uses inside a custom ``forward`` that calls one attribute twice cannot
    be seen; such a layer counts as used once.)"""
    feeders: dict[int, list[nn.Module]] = {}
    targets: dict[int, nn.Module] = {}
    for layer, target, uses in plan:
        if target is not None:
            feeders.setdefault(id(target), []).extend([layer] * uses)
            targets[id(target)] = target
    result = []
    for key, target in targets.items():
        layers, where = feeders[key], paths[key]
        rates = sorted({layer.p for layer in layers})
        if len(layers) != len(where) or len(rates) != 1:
            raise ValueError(
                f"{type(target).__name__} at {', '.join(where)} is used in {len(where)} place(s), "
                f"{len(layers)} of them fed by dropouts to convert (p = "
                f"{', '.join(str(r) for r in rates)}): scaling its weight once cannot keep every "
                "use's eval output; give each use its own layer (copy.deepcopy) or convert by hand"
            )
        result.append((layers[0], target))
    return result
