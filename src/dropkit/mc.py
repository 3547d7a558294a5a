"""Monte-Carlo dropout (Gal & Ghahramani 2016): predictive uncertainty from stochastic passes.

:func:`stochastic` switches every dropkit stochastic op on at inference — modules and functional
calls alike, drop-path, DropBlock and DropConnect included, because every op asks
``dropkit._state.is_stochastic`` — while the model stays in eval mode (BatchNorm keeps using its
running statistics and does not update them; ``model.train()`` is never called). The switch holds
in the calling thread/asyncio context only. torch's own dropout *modules* can be switched too
(pass the model); torch's *functional* dropout cannot be switched from outside: convert such
models with :func:`dropkit.replace_dropout`.

:func:`mc_predict` runs ``T`` stochastic passes and returns the predictive mean, predictive
entropy, mutual information (BALD) and variance with streaming estimators (running sums merged
chunk by chunk; no ``[B, C, T]`` tensor is formed).

Batched sampling: the ``T`` passes are run as a few forwards of the input replicated ``k`` times
along dim 0 (``k`` bounded by ``max_rows`` and ``memory_budget``). Masks depend on (sample index,
element) only — in the replicated batch, replica ``t`` starts at stream element
``t * mask_numel_of_one_replica`` of each op's seed, which is where the ``t``-th looped pass starts
(see :mod:`dropkit._state`) — so a batched run draws exactly the masks of the looped run; outputs
agree bit for bit when the model's layers treat rows independently with the same kernels
(Linear/ReLU/dropout), and up to floating-point reduction order otherwise.

Not batchable per sample: ops that draw once for the whole batch — per-batch DropConnect
(``DropConnectLinear`` / ``DropConnectConv2d`` with ``per_sample=False``),
``StochasticDepth(mode="batch")``, DropBlock with ``normalize="batch"``, embedding dropout's word-
type mask. With ``batch_replicas="auto"`` :func:`mc_predict` finds their *modules* and loops; with
``batch_replicas=True`` it warns, and the batched run then shares those draws across the samples of
a chunk (it differs from the looped run). Functional calls of such ops inside custom modules cannot
be detected: pass ``batch_replicas=False`` for such models. Layers that mix rows of the batch
(BatchNorm in training mode, attention over the batch) must not be batched either, and batching
assumes dim 0 of ``x`` and of the logits is the batch (a model fed ``(T, N, C)`` sequences needs
``batch_replicas=False``)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from dropkit import _state, rng
from dropkit.ops import checks as _checks

__all__ = ["MCPrediction", "batch_wide_modules", "mc_predict", "stochastic"]

#: The most stochastic passes :func:`mc_predict` runs (``samples`` sizes its loop).
MAX_SAMPLES = 2**20

_TORCH_FUNCTIONAL = {
    nn.Dropout: nn.functional.dropout,
    nn.Dropout1d: nn.functional.dropout1d,
    nn.Dropout2d: nn.functional.dropout2d,
    nn.Dropout3d: nn.functional.dropout3d,
    nn.AlphaDropout: nn.functional.alpha_dropout,
    nn.FeatureAlphaDropout: nn.functional.feature_alpha_dropout,
}


def _sample_torch_dropout(module: nn.Module, args: tuple, output: object) -> object:
    """Forward hook on a torch dropout module: inside a :func:`stochastic` block of the calling
    thread/context, replace its eval-mode output (the input) by a sample; elsewhere do nothing."""
    if module.training or not _state.is_stochastic(False):
        return None
    return _TORCH_FUNCTIONAL[type(module)](args[0], module.p, True, False)


@contextlib.contextmanager
def stochastic(model: nn.Module | None = None) -> Iterator[None]:
    """Sample every dropkit stochastic op at inference inside the ``with`` block.

    Nests and is exception safe. Scope: the calling thread (or asyncio task) only — the switch is
    a context variable (:mod:`dropkit._state`), so other threads keep evaluating deterministically
    while one runs Monte-Carlo inference, and a thread started inside the block does not inherit
    it. Module modes are not touched. With ``model``, torch's own dropout modules inside it
    (``nn.Dropout``, ``Dropout1d..3d``, ``AlphaDropout``, ``FeatureAlphaDropout``, exactly those
    types) sample too: a forward hook, active in the calling thread/context only, replaces their
    eval-mode output by torch's functional dropout in training mode (from torch's generator; not
    in place). torch's *functional* dropout (``torch.nn.functional.dropout(x, training=
    self.training)``) cannot be switched from outside — use :func:`dropkit.replace_dropout` or
    dropkit's functional ops. Under ``torch.compile`` the switch is process-wide (see
    :mod:`dropkit._state`).
    """
    if model is not None and not isinstance(model, nn.Module):
        raise TypeError(
            f"stochastic() takes the model (an nn.Module) whose torch dropout modules should "
            f"sample too, or nothing; got {type(model).__name__} {model!r}"
        )
    handles = []
    if model is not None:
        handles = [m.register_forward_hook(_sample_torch_dropout) for m in model.modules()
                   if type(m) in _TORCH_FUNCTIONAL]  # fmt: skip
    _state.enter_stochastic_inference()
    try:
        yield
    finally:
        _state.exit_stochastic_inference()
        for handle in handles:
            handle.remove()


@dataclass
class MCPrediction:
    """Monte-Carlo predictive summaries over ``samples`` passes (accumulated in float64, returned
    in the dtype of the model's logits).

    With ``p_t = softmax(logits_t)``: ``mean = (1/T) sum_t p_t`` ``(B, C)``; ``entropy =
    H[mean] = -sum_c mean_c log mean_c`` ``(B,)``; ``mutual_information = H[mean] - (1/T) sum_t
    H[p_t]`` (BALD) ``(B,)``; ``variance = (1/T) sum_t (p_t - mean)^2`` (population variance)
    ``(B, C)``.
    """

    mean: torch.Tensor
    entropy: torch.Tensor
    mutual_information: torch.Tensor
    variance: torch.Tensor
    samples: int


def _entropy(p: torch.Tensor) -> torch.Tensor:
    # 0 log 0 = 0: clamping only the log's argument leaves exact zeros contributing nothing.
    return -(p * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))).sum(-1)


def batch_wide_modules(model: nn.Module) -> list[str]:
    """Names of the modules of ``model`` that draw one random value for the whole batch: those
    whose ``draws_once_per_batch`` attribute is true (dropkit's layers and its timm/torchvision
    peers set it; a custom module that draws once per batch can set it too)."""
    _checks.check_module(model, "model", op="batch_wide_modules")
    return [
        name or type(module).__name__
        for name, module in model.named_modules()
        if getattr(module, "draws_once_per_batch", False)
    ]


def _is_stochastic_module(module: nn.Module) -> bool:
    from dropkit import nn as dnn
    from dropkit.nn._base import StochasticModule

    # DropConnect and embedding dropout subclass torch layers, not StochasticModule.
    classes = [StochasticModule, *_TORCH_FUNCTIONAL]
    classes += [getattr(dnn, n) for n in ("DropConnectLinear", "DropConnectConv2d",
                                          "EmbeddingDropout") if hasattr(dnn, n)]  # fmt: skip
    return any(isinstance(m, tuple(classes)) for m in module.modules())


def _split_sequential(model: nn.Module) -> tuple[nn.Module | None, nn.Module]:
    """For an ``nn.Sequential``, the prefix before the first stochastic module, and the rest."""
    if not isinstance(model, nn.Sequential):
        return None, model
    for index, module in enumerate(model):
        if _is_stochastic_module(module):
            return (model[:index] if index else None), model[index:]
    return None, model


def _run_prefix(head: Callable, x: torch.Tensor) -> torch.Tensor | None:
    """``head(x)``, or None when ``head`` drew from the dropkit stream (it is not deterministic)."""
    probe = _state.SampleStream(0)
    previous = _state.set_sample_stream(probe)
    try:
        with stochastic(head if isinstance(head, nn.Module) else None):
            out = head(x)
    finally:
        _state.set_sample_stream(previous)
    return None if probe.calls else out


def _rows_for_budget(body: nn.Module, h: torch.Tensor, budget: int) -> tuple[int, torch.Tensor]:
    """Run one replica while measuring the widest activation; rows that fit ``budget`` bytes."""
    widest = 0

    def hook(module, args, output):
        nonlocal widest
        if isinstance(output, torch.Tensor):
            widest = max(widest, output.numel() * output.element_size())

    handles = [m.register_forward_hook(hook) for m in body.modules()]
    try:
        logits = body(h)
    finally:
        for handle in handles:
            handle.remove()
    rows = max(h.shape[0], 1)
    # Without autograd a layer's input and output are alive together: twice the widest one.
    per_row = (h.numel() * h.element_size() + 2 * widest) / rows
    return max(1, int(budget // max(per_row, 1))), logits


@torch.no_grad()
def mc_predict(
    model: nn.Module,
    x: torch.Tensor,
    samples: int = 30,
    *,
    batch_replicas: bool | str = "auto",
    memory_budget: int | None = None,
    max_rows: int = 8192,
    seed: int | None = None,
    prefix: Callable[[torch.Tensor], torch.Tensor] | None | str = "auto",
) -> MCPrediction:
    """Monte-Carlo dropout prediction of a classifier returning logits ``(B, C)``.

    Args:
        model: the network; put in eval mode for the call and restored after.
        x: a batch ``(B, ...)``.
        samples: ``T`` stochastic passes, an integer in ``[1, 2**20]``.
        batch_replicas: run several replicas of ``x`` in one forward (``True``), one pass per
            sample (``False``), or ``"auto"``: batch unless the model holds modules that draw once
            per batch (:func:`batch_wide_modules`).
        memory_budget: bytes one forward may use; the rows per forward are estimated from the
            widest activation of a first single-replica pass (an estimate, not a hard limit).
        max_rows: the largest batch one forward may see.
        seed: the base seed of the sample stream, an integer in ``[-2**63, 2**64)`` (default: drawn
            from torch's default generator, so ``mc_predict`` is reproducible under
            ``torch.manual_seed``); floats and bools are refused, not truncated. Pass ``t`` uses
            ``SampleStream(seed, replica=t)``: the same masks whether batched or looped.
        prefix: a deterministic front part run once on ``x`` (``model`` is then applied to its
            output, replicated); ``"auto"``: for an ``nn.Sequential``, the layers before its first
            stochastic module; ``None``: no prefix. A detected prefix that turns out to draw from
            the dropkit stream is discarded (the whole model is run per sample); a given one
            raises ``ValueError``.

    torch's own dropout modules in ``model`` are sampled too (see :func:`stochastic`), but from
    torch's generator: not reproducible by ``seed``, and a batched run differs from a looped one
    (both are valid Monte-Carlo samples).

    Returns:
        :class:`MCPrediction`, in the dtype of the model's logits (a float32 model gives float32
        summaries; they are accumulated in float64).
    """
    op = "mc_predict"
    _checks.check_module(model, "model", op=op)
    _checks.check_tensor(x, op, "x", 2)
    if x.dim() < 1:
        raise ValueError(f"{op}: x must have a batch dimension (B, ...), got a 0-d tensor")
    samples = _checks.check_int(samples, "samples", op=op, minimum=1, maximum=MAX_SAMPLES)
    if not (isinstance(batch_replicas, str) and batch_replicas == "auto"):
        try:
            _checks.check_flag(batch_replicas, "batch_replicas", op=op)
        except TypeError:
            error = ValueError if isinstance(batch_replicas, str) else TypeError
            raise error(
                f"{op}: batch_replicas must be True, False or 'auto', got {batch_replicas!r}"
            ) from None
        batch_replicas = bool(batch_replicas)
    max_rows = _checks.check_int(max_rows, "max_rows", op=op, minimum=1)
    if memory_budget is not None:
        memory_budget = _checks.check_int(memory_budget, "memory_budget", op=op, minimum=1)
    if isinstance(prefix, str) and prefix != "auto":
        raise ValueError(f"{op}: prefix must be a callable, None or 'auto', got {prefix!r}")
    if not (prefix is None or isinstance(prefix, str) or callable(prefix)):
        raise TypeError(f"{op}: prefix must be a callable, None or 'auto', got {prefix!r}")
    base_seed = rng.draw_seed() if seed is None else rng.check_seed(seed)
    was_training = model.training
    model.eval()
    try:
        head, body = _split_sequential(model) if prefix == "auto" else (prefix, model)
        h = _run_prefix(head, x) if head is not None else None
        if h is None and head is not None and prefix != "auto":
            raise ValueError("prefix drew from the dropkit stream: it is not deterministic")
        if h is None:
            h, body = x, model
        per_pass = h.shape[0]
        wide = batch_wide_modules(body)
        if batch_replicas == "auto":
            batch_replicas = not wide
        elif batch_replicas and wide:
            warnings.warn(
                f"modules {wide} draw once per batch: a batched Monte-Carlo run shares those "
                "draws across the samples of a chunk (use batch_replicas=False to avoid it)",
                stacklevel=2,
            )
        chunk = max(1, max_rows // max(per_pass, 1)) if batch_replicas else 1
        stats = _Running()
        first = 0
        with stochastic(body):
            if batch_replicas and memory_budget is not None:
                with _sample_stream(base_seed, 0, 1):
                    rows, logits = _rows_for_budget(body, h, memory_budget)
                stats.add(_probs(logits, 1, per_pass), logits.dtype)
                chunk, first = min(chunk, max(1, rows // max(per_pass, 1))), 1
            while first < samples:
                count = min(chunk, samples - first)
                inp = h if count == 1 else h.repeat(count, *([1] * (h.dim() - 1)))
                with _sample_stream(base_seed, first, count):
                    logits = body(inp)
                stats.add(_probs(logits, count, per_pass), logits.dtype)
                first += count
    finally:
        model.train(was_training)
    return stats.result()


@contextlib.contextmanager
def _sample_stream(base_seed: int, replica: int, replicas: int) -> Iterator[None]:
    previous = _state.set_sample_stream(_state.SampleStream(base_seed, replica, replicas))
    try:
        yield
    finally:
        _state.set_sample_stream(previous)


def _probs(logits: torch.Tensor, count: int, per_pass: int) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(
            "mc_predict needs a model returning one tensor of class logits (B, C), got "
            f"{type(logits).__name__}"
        )
    if logits.dim() != 2:
        hint = (
            " A 1-D output has no class dimension: for a binary classifier with one logit z per "
            "sample return torch.stack([torch.zeros_like(z), z], dim=1) (softmax of [0, z] is "
            "[1 - sigmoid(z), sigmoid(z)])."
            if logits.dim() == 1
            else ""
        )
        fed = f" (for {count} replicas of the batch of {per_pass} stacked along dim 0)"
        raise ValueError(
            "mc_predict needs a model returning class logits of shape (B, C) — one row per input "
            "row, softmax-ed over dim 1 to class probabilities — got shape "
            f"{tuple(logits.shape)}{fed if count > 1 else ''}.{hint}"
        )
    if logits.shape[0] != count * per_pass:
        raise ValueError(
            f"mc_predict fed {count * per_pass} rows ({count} replica(s) of {per_pass}) and got "
            f"{logits.shape[0]} rows of logits back: the model must keep dim 0 as the batch (pass "
            "batch_replicas=False for models that do not)"
        )
    return torch.softmax(logits.double(), -1).reshape(count, per_pass, -1)


class _Running:
    """Streaming mean / M2 (Chan et al.'s pairwise merge) and mean entropy over sample chunks."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = self.m2 = self.entropy = None
        self.dtype = torch.float64

    def add(self, probs: torch.Tensor, dtype: torch.dtype) -> None:
        if dtype.is_floating_point:
            self.dtype = dtype
        count = probs.shape[0]
        chunk_mean = probs.mean(0)
        chunk_m2 = ((probs - chunk_mean) ** 2).sum(0)
        chunk_entropy = _entropy(probs).sum(0)
        if self.mean is None:
            self.n, self.mean, self.m2, self.entropy = count, chunk_mean, chunk_m2, chunk_entropy
            return
        total = self.n + count
        delta = chunk_mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self.m2 = self.m2 + chunk_m2 + delta * delta * (self.n * count / total)
        self.entropy = self.entropy + chunk_entropy
        self.n = total

    def result(self) -> MCPrediction:
        entropy = _entropy(self.mean)
        dtype = self.dtype
        return MCPrediction(
            mean=self.mean.to(dtype),
            entropy=entropy.to(dtype),
            mutual_information=(entropy - self.entropy / self.n).to(dtype),
            variance=(self.m2 / self.n).to(dtype),
            samples=self.n,
        )
