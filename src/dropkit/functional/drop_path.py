"""Drop-path / stochastic depth (Huang et al. 2016): drop a whole residual branch per sample."""

from __future__ import annotations

import torch

from dropkit import _state
from dropkit.functional._common import check_input, keep_dropout
from dropkit.ops import overridable
from dropkit.ops.checks import check_flag, check_int, check_probability

__all__ = ["check_drop_path_args", "drop_path", "linear_decay_rates", "stochastic_depth"]

MODES = ("batch", "row")
MAX_LAYERS = 2**20  # the most rates linear_decay_rates makes (it returns a list that long)
_NO_MODE = object()


def check_drop_path_args(p, name: str, op: str, mode=_NO_MODE) -> float:
    """The drop probability, named ``drop_prob`` (timm) or "drop probability" (torchvision's
    message), and, when passed, ``mode`` (torchvision's ``ValueError`` for any other value)."""
    if type(p) is not float or not 0.0 <= p <= 1.0:  # the common call is accepted inline
        p = check_probability(p, name, op=op, what="drop probability" if name == "p" else name)
    if mode is not _NO_MODE and not (isinstance(mode, str) and mode in MODES):
        raise ValueError(f"mode has to be either 'batch' or 'row', but got {mode!r}")
    return p


def _drop_branch(x, p, training, per_sample, rescale, generator, seed, offset, op, name):
    check_input(x, op, name)
    if x.dim() == 0 and p > 0.0 and _state.is_stochastic(training):
        raise ValueError(f"{op}: input must have a batch dimension (N, ...), got a 0-d tensor")
    shape = [x.shape[0] if per_sample else 1] + [1] * (x.dim() - 1) if x.dim() else []
    return keep_dropout(x, p, training, False, shape, "inverted", generator, seed, offset, op,
                        rescale)  # fmt: skip


@overridable
def stochastic_depth(input: torch.Tensor, p: float, mode: str, training: bool = True, *,
                     generator: torch.Generator | None = None,
                     seed: int | torch.Tensor | None = None,
                     offset: int = 0) -> torch.Tensor:  # fmt: skip
    r"""Randomly drop the residual branch ``input`` (``torchvision.ops.stochastic_depth``).

    Huang, Sun, Liu, Sedra, Weinberger, "Deep Networks with Stochastic Depth", ECCV 2016:
    :math:`y = x\,b / (1-p)` with :math:`b \sim \mathrm{Bernoulli}(1-p)` drawn per sample
    (``mode="row"``; sample ``n`` reads stream word ``n + offset``) or once for the whole batch
    (``mode="batch"``; word ``offset``). ``p = 1`` gives zeros; evaluation is the identity (the
    paper's test-time rule in inverted form). Shape ``(N, ...)``; output the same, in the input's
    layout. ``generator``, ``seed``, ``offset``: see :func:`dropkit.functional.dropout`.
    """
    p = check_drop_path_args(p, "p", "stochastic_depth", mode)
    return _drop_branch(input, p, training, mode == "row", True, generator, seed, offset,
                        "stochastic_depth", "input")  # fmt: skip


@overridable
def drop_path(x: torch.Tensor, drop_prob: float = 0.0, training: bool = False,
              scale_by_keep: bool = True, *, generator: torch.Generator | None = None,
              seed: int | torch.Tensor | None = None, offset: int = 0) -> torch.Tensor:  # fmt: skip
    r"""Per-sample drop-path with timm's signature and defaults (``timm.layers.drop_path``):
    ``stochastic_depth(x, drop_prob, "row")`` (Huang et al. 2016, the same draws), or with
    ``scale_by_keep=False`` :math:`y_n = x_n b_n` unscaled. Unlike timm, ``drop_prob`` outside
    [0, 1] and a 0-d input raise at once; only the seed is kept for backward.
    """
    p = check_drop_path_args(drop_prob, "drop_prob", "drop_path")
    if type(scale_by_keep) is not bool:
        check_flag(scale_by_keep, "scale_by_keep", op="drop_path")
    return _drop_branch(x, p, training, True, scale_by_keep, generator, seed, offset, "drop_path",
                        "x")  # fmt: skip


def linear_decay_rates(p_last: float, num_layers: int) -> list[float]:
    r"""Huang et al. 2016's linear decay rule in drop probabilities: ``l / L * p_last`` for the
    blocks ``l = 1 .. L`` (the paper's survival :math:`1 - \frac{l}{L}(1 - p_L)`, with
    ``p_last = 0.5``), input side first; ``num_layers`` in ``[1, 2**20]``."""
    p_last = check_probability(p_last, "p_last", op="linear_decay_rates", what="p_last")
    num_layers = check_int(num_layers, "num_layers", op="linear_decay_rates", minimum=1,
                           maximum=MAX_LAYERS)  # fmt: skip
    return [layer / num_layers * p_last for layer in range(1, num_layers + 1)]
