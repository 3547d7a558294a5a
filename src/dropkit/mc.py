"""Monte-Carlo dropout (Gal & Ghahramani 2016): predictive uncertainty from stochastic passes.

:func:`stochastic` switches every dropkit stochastic op on at inference — modules and functional
calls alike, drop-path, DropBlock and DropConnect included — while the model stays in eval mode
(BatchNorm keeps using its running statistics and does not update them). :func:`mc_predict` runs
``T`` stochastic passes and returns the predictive mean, predictive entropy, mutual information
(BALD) and variance with streaming estimators (no ``[B, C, T]`` tensor is formed).

Batched sampling: the ``T`` passes are run as few forwards of the input replicated along dim 0,
chunked to a row budget. Masks depend on (sample index, element) only — the ``t``-th replica
starts at stream element ``t * mask_numel_of_one_replica`` of each op's seed — so a batched run
draws exactly the masks of the looped run. Ops that draw one value for the whole batch (per-batch
DropConnect, ``stochastic_depth(mode="batch")``, DropBlock with ``normalize="batch"``, embedding
dropout's word-type mask) cannot be split per sample that way; :func:`mc_predict` detects their
modules and loops instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from dropkit import _state, rng

__all__ = ["MCPrediction", "mc_predict", "stochastic"]

_TORCH_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                  nn.FeatureAlphaDropout)  # fmt: skip


@contextlib.contextmanager
def stochastic(model: nn.Module | None = None) -> Iterator[None]:
    """Sample every dropkit stochastic op at inference inside the ``with`` block.

    With ``model``, torch's own dropout modules inside it are also put in training mode for the
    block (and restored after); torch's *functional* dropout cannot be switched from outside —
    convert such models with :func:`dropkit.replace_dropout`.
    """
    switched = []
    if model is not None:
        switched = [m for m in model.modules() if isinstance(m, _TORCH_DROPOUT) and not m.training]
    for module in switched:
        module.train()
    _state.enter_stochastic_inference()
    try:
        yield
    finally:
        _state.exit_stochastic_inference()
        for module in switched:
            module.eval()


@dataclass
class MCPrediction:
    """Monte-Carlo predictive summaries, each of shape ``(B,)`` or ``(B, C)``."""

    mean: torch.Tensor  # predictive mean of the class probabilities, (B, C)
    entropy: torch.Tensor  # predictive entropy H[mean], (B,)
    mutual_information: torch.Tensor  # BALD: H[mean] - mean_t H[p_t], (B,)
    variance: torch.Tensor  # per-class variance of p_t over samples, (B, C)
    samples: int


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))).sum(-1)


def _batch_wide_draws(model: nn.Module) -> list[str]:
    from dropkit import nn as dnn

    def batch_wide(m: nn.Module) -> bool:
        return (
            (isinstance(m, dnn.DropConnectLinear) and not m.per_sample)
            or isinstance(m, dnn.DropConnectConv2d)
            or (isinstance(m, dnn.StochasticDepth) and m.mode == "batch")
            or (isinstance(m, dnn.DropBlock2d) and m.normalize == "batch")
            or isinstance(m, dnn.EmbeddingDropout)
        )

    found = [name for name, m in model.named_modules() if batch_wide(m)]
    return found


def _split_sequential(model: nn.Module) -> tuple[Callable | None, nn.Module]:
    """For an ``nn.Sequential``, the deterministic prefix before the first stochastic module."""
    from dropkit.nn._base import StochasticModule

    if not isinstance(model, nn.Sequential):
        return None, model
    for index, module in enumerate(model):
        stochastic_here = any(
            isinstance(m, (StochasticModule, *_TORCH_DROPOUT)) for m in module.modules()
        )
        if stochastic_here:
            return (model[:index] if index else None), model[index:]
    return None, model


@torch.no_grad()
def mc_predict(
    model: nn.Module,
    x: torch.Tensor,
    samples: int = 30,
    *,
    batch_replicas: bool | str = "auto",
    max_rows: int = 8192,
    seed: int | None = None,
    prefix: Callable[[torch.Tensor], torch.Tensor] | None | str = "auto",
) -> MCPrediction:
    """Monte-Carlo dropout prediction of a classifier returning logits ``(B, C)``.

    Args:
        model: the network (put in eval mode for the call and restored after).
        x: a batch ``(B, ...)``.
        samples: ``T >= 1`` stochastic passes.
        batch_replicas: run replicas of ``x`` in one forward (``True``), loop (``False``), or
            ``"auto"``: batch unless the model holds ops that draw once per batch.
        max_rows: the largest batch one forward may see (bounds memory when batching).
        seed: the base seed of the sample stream (default: drawn from torch's generator), so
            ``mc_predict`` is reproducible under ``torch.manual_seed``.
        prefix: a deterministic front part run once on ``x`` before the stochastic rest
            (``model`` is then applied to its output); ``"auto"`` detects it for ``nn.Sequential``.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
    if batch_replicas not in (True, False, "auto"):
        raise ValueError(f"batch_replicas must be True, False or 'auto', got {batch_replicas!r}")
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise ValueError(f"max_rows must be an integer >= 1, got {max_rows!r}")
    base_seed = rng.draw_seed() if seed is None else int(seed)
    was_training = model.training
    model.eval()
    try:
        head, body = _split_sequential(model) if prefix == "auto" else (prefix, model)
        h = head(x) if head is not None else x
        per_pass = h.shape[0]
        if batch_replicas == "auto":
            batch_replicas = not _batch_wide_draws(body)
        chunk = max(1, max_rows // max(per_pass, 1)) if batch_replicas else 1
        total = sq_total = entropy_total = None
        with stochastic(body):
            for first in range(0, samples, chunk):
                count = min(chunk, samples - first)
                previous = _state.set_sample_stream(
                    _state.SampleStream(base_seed, replica=first, replicas=count)
                )
                try:
                    inp = h if count == 1 else h.repeat(count, *([1] * (h.dim() - 1)))
                    logits = body(inp)
                finally:
                    _state.set_sample_stream(previous)
                probs = torch.softmax(logits.double(), -1).reshape(count, per_pass, -1)
                part, sq, ent = probs.sum(0), (probs * probs).sum(0), _entropy(probs).sum(0)
                if total is None:
                    total, sq_total, entropy_total = part, sq, ent
                else:
                    total += part
                    sq_total += sq
                    entropy_total += ent
    finally:
        model.train(was_training)
    mean = total / samples
    entropy = _entropy(mean)
    return MCPrediction(
        mean=mean,
        entropy=entropy,
        mutual_information=entropy - entropy_total / samples,
        variance=(sq_total / samples - mean * mean).clamp_min(0),
        samples=samples,
    )
