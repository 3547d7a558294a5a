"""Several runs of one MLP architecture trained as one stacked model, each bit for bit its own.

:func:`train_ensemble` trains K *members* (an :class:`~dropkit_lab.engine.model.MLPConfig` and a
:class:`~dropkit_lab.engine.trainer.TrainConfig` each) that share the architecture (input size,
hidden widths, classes, activation), the data, the batch size and the number of epochs; they may
differ in dropout method (``"none"`` or ``"dropout"``), probabilities and mode, learning-rate
schedule, momentum, ``scale_step``, max-norm, evaluation interval, initial scale and seed. Each
member ends with the weights, history and test errors that :func:`~dropkit_lab.engine.trainer.train`
gives it alone, bit for bit (``tests/lab/engine/test_engine_ensemble.py``).

How. The weights of layer ``l`` are one ``(K, out, in)`` tensor, and the forward product and
the input gradient of a layer are one ``torch.baddbmm``/``torch.bmm`` for all members. On the CPU
(torch 2.13, MKL) these give each slice exactly the bits of ``F.linear``'s ``addmm`` and of its
input gradient's ``mm``, measured at every shape of the lab's nets (batches 4-2000, widths 10-800,
K = 1-9, 1 and 2 threads; ``benchmarks/ensemble.py --check-matmul``). The weight gradient is the
exception, so it is one ``mm`` per member (:class:`_StackedLinear` says why). The bias gradient
is ``grad.sum(1)``, per slice the bits of ``grad.sum(0)``; the element-wise ops (activation,
optimizer, max-norm) give each element the same bits whatever tensor it sits in. What depends on
the member stays per member: each member's masks come from its own generator
(``torch.Generator().manual_seed(mask_seed(seed, epoch))``, the seed the single trainer gives the
default generator) with one :func:`dropkit.functional.dropout` call per member and layer, in the
single run's order (input, hidden 1, hidden 2, ...); its loss is its own ``cross_entropy`` sum
over its batch; its shuffle is its own seed's; its optimizer step uses its own learning rate and
momentum (members that share them, e.g. in the same epoch of the same schedule, are updated in one
call on their contiguous slice); its max-norm bound applies to its own rows.

Checkpoints are the single trainer's, one file per member (same format, same fingerprint), so a
run stopped under the ensemble resumes alone or in an ensemble, and the other way round. Members
resumed at different epochs are trained in segments: those furthest behind first, the others
joining as the epochs meet. Threads: as :func:`train`, a member resumed from a checkpoint trains
on with the thread count it recorded (members whose counts differ are trained in separate
ensembles, one per count); fresh members use the caller's count.

CUDA. The same code runs with ``device="cuda"``; whether cuBLAS's batched and single matmuls agree
bit for bit on a GPU is for ``tests/cuda`` to check on that GPU (it does not hold by design). The
step is not captured in a CUDA graph: dropkit's kernels take each call's mask seed as a host
integer drawn when the call is made, so a replayed graph would replay the captured masks, and the
learning rate and momentum (host scalars that change every epoch) and the max-norm test (a
host-side ``any()``) would be frozen too. Only an ensemble without dropout and without max-norm
could be captured safely, once per epoch; the lab's ensembles are not of that kind, so nothing is
captured.

Not stacked (the runner trains these alone): BatchNorm, DropConnect and Gaussian dropout, and
data-parallel training (``torch.distributed``).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import dropkit.functional as DF
from dropkit.nn import Dropout
from dropkit_lab.data.dataset import Dataset
from dropkit_lab.engine.model import MLP, MLPConfig, build_mlp
from dropkit_lab.engine.optim import HintonSGD, apply_max_norm
from dropkit_lab.engine.progress import Progress, make_progress
from dropkit_lab.engine.trainer import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    TrainConfig,
    TrainResult,
    _fingerprint,
    _load_checkpoint,
    _save_atomic,
    mask_seed,
    shuffle_seed,
)

__all__ = ["Member", "stack_key", "train_ensemble"]

#: Evaluation batch of :func:`dropkit_lab.engine.trainer.evaluate`.
_EVAL_BATCH = 2000


@dataclass(frozen=True)
class Member:
    """One run of an ensemble: its model and recipe, and the file it checkpoints to (or None)."""

    model: MLPConfig
    train: TrainConfig
    checkpoint: str | os.PathLike | None = None
    name: str = ""


def stack_key(model: MLPConfig, train: TrainConfig) -> tuple | None:
    """What members of one ensemble share, or None when the run cannot be stacked (BatchNorm,
    DropConnect, Gaussian dropout: their layers are trained alone)."""
    if model.method not in ("none", "dropout") or model.batchnorm:
        return None
    return (
        model.in_features,
        model.widths,
        model.num_classes,
        model.activation,
        train.batch_size,
        train.epochs,
    )


@dataclass
class _State:
    """A member while it trains: its own MLP and optimizer (the single trainer's, for the
    checkpoint format and the result), history and the noise before each linear layer."""

    member: Member
    model: MLP
    optimizer: HintonSGD
    linears: list[nn.Linear]
    noise: list[tuple[float, str] | None]
    fingerprint: dict
    checkpoint: Path | None
    history: list[dict] = field(default_factory=list)
    start: int = 0
    resumed_from: int = 0
    threads: int | None = None
    last_errors: int | None = None
    last_errors_epoch: int = -1


def _noise_before_linears(model: MLP) -> tuple[list[nn.Linear], list[tuple[float, str] | None]]:
    linears, noise, pending = [], [], None
    for layer in model.layers:
        if isinstance(layer, Dropout):
            pending = (float(layer.p), layer.mode)
        elif isinstance(layer, nn.Linear):
            linears.append(layer)
            noise.append(pending)
            pending = None
        elif not isinstance(layer, (nn.ReLU, nn.Sigmoid)):
            raise ValueError(f"cannot stack a {type(layer).__name__} layer")
    return linears, noise


def _prepare(member: Member, n_train: int, device: torch.device) -> _State:
    if stack_key(member.model, member.train) is None:
        raise ValueError(f"{member.name or 'member'}: {member.model.method} cannot be stacked")
    schedule = member.train.schedule
    model = build_mlp(member.model, member.train.seed).to(device)
    optimizer = HintonSGD(
        model.parameters(),
        lr=schedule.lr_at(0),
        momentum=schedule.momentum_at(0),
        scale_step=member.train.scale_step,
    )
    linears, noise = _noise_before_linears(model)
    checkpoint = Path(member.checkpoint) if member.checkpoint is not None else None
    state = _State(
        member, model, optimizer, linears, noise,
        _fingerprint(member.model, member.train, n_train), checkpoint,
    )  # fmt: skip
    if checkpoint is not None and checkpoint.exists():
        saved = _load_checkpoint(checkpoint, device, state.fingerprint)
        try:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(checkpoint, f"does not fit the model ({exc})") from exc
        state.history = list(saved["history"])
        state.start = state.resumed_from = int(saved["epoch"])
        threads = saved.get("threads")
        if isinstance(threads, int) and threads >= 1:
            state.threads = threads
    return state


def train_ensemble(
    members: list[Member],
    data: Dataset,
    *,
    progress: str | Progress = "auto",
    desc: str = "ensemble",
    stop_after: int | None = None,
    device: str | torch.device = "cpu",
) -> list[TrainResult]:
    """Train ``members`` (see the module docstring) on ``data`` as one stacked model; returns one
    :class:`~dropkit_lab.engine.trainer.TrainResult` per member, in order, each what
    :func:`~dropkit_lab.engine.trainer.train` returns for that member alone (weights, history,
    test errors bit for bit; a history record's ``seconds`` is the member's share of the
    ensemble's epoch: its time divided by the members trained in it).

    Args:
        members: runs whose :func:`stack_key` is one and the same.
        progress: one bar for the whole ensemble (:func:`make_progress`).
        stop_after: stop once this many epochs are done (a simulated kill, for tests).
        device: where to train.

    Raises :class:`~dropkit_lab.engine.trainer.CheckpointError` when a member's checkpoint
    exists but cannot be resumed from (nothing has trained then), ``FloatingPointError`` when a
    member diverges.
    """
    if not members:
        return []
    keys = {stack_key(m.model, m.train) for m in members}
    if None in keys or len(keys) > 1:
        raise ValueError("members must share one architecture, batch size and epoch count")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        raise RuntimeError("train_ensemble does not run data-parallel; use train()")
    device = torch.device(device)
    n_train = len(data.train_y)
    states = [_prepare(m, n_train, device) for m in members]
    saved = torch.get_num_threads()
    t_start = time.perf_counter()
    try:
        by_threads: dict[int, list[_State]] = {}
        for s in states:
            by_threads.setdefault(s.threads or saved, []).append(s)
        epochs = members[0].train.epochs
        last = epochs if stop_after is None else min(stop_after, epochs)
        bar = make_progress(progress)
        bar.start(epochs, min(s.start for s in states), desc)
        try:
            for threads, group in by_threads.items():
                if torch.get_num_threads() != threads:
                    torch.set_num_threads(threads)
                _train_group(group, data, last, device, bar)
        finally:
            bar.close()
        results = []
        seconds = time.perf_counter() - t_start
        test_x, test_y = data.test_x.to(device), data.test_y.to(device)
        stale = [s for s in states if s.last_errors_epoch != len(s.history) - 1 or not s.history]
        if stale:
            torch.set_num_threads(stale[0].threads or saved)
            for s, errors in zip(stale, _evaluate(stale, test_x, test_y), strict=True):
                s.last_errors = errors
        for s in states:
            results.append(
                TrainResult(
                    model=s.model,
                    history=s.history,
                    test_error=s.last_errors / len(test_y),
                    test_errors=s.last_errors,
                    n_test=len(test_y),
                    seconds=seconds,
                    resumed_from=s.resumed_from,
                    finished=last == epochs,
                    threads=s.threads or saved,
                )
            )
        return results
    finally:
        if torch.get_num_threads() != saved:
            torch.set_num_threads(saved)


class _Stack:
    """Some members' stacked weights ``(K, out, in)``, biases ``(K, out)`` and velocities."""

    def __init__(self, states: list[_State]) -> None:
        self.states = states
        n = len(states[0].linears)
        with torch.no_grad():
            self.weights = [torch.stack([s.linears[i].weight for s in states]) for i in range(n)]
            self.biases = [torch.stack([s.linears[i].bias for s in states]) for i in range(n)]
            self.velocity = {}
            for p in self.params():
                p.requires_grad_(True)
            for i in range(n):
                for name, stacked in (("weight", self.weights[i]), ("bias", self.biases[i])):
                    parts = []
                    for s in states:
                        param = getattr(s.linears[i], name)
                        v = s.optimizer.state.get(param, {}).get("velocity")
                        parts.append(torch.zeros_like(param) if v is None else v)
                    self.velocity[id(stacked)] = torch.stack(parts)

    def params(self) -> list[torch.Tensor]:
        return [t for pair in zip(self.weights, self.biases) for t in pair]

    @torch.no_grad()
    def write_back(self) -> None:
        """Copy every member's slice into its own MLP and optimizer state."""
        for k, s in enumerate(self.states):
            for i, linear in enumerate(s.linears):
                for param, stacked in (
                    (linear.weight, self.weights[i]),
                    (linear.bias, self.biases[i]),
                ):
                    param.copy_(stacked[k])
                    s.optimizer.state[param]["velocity"] = self.velocity[id(stacked)][k].clone()

    def forward(self, x: torch.Tensor, training: bool, generators=None) -> torch.Tensor:
        """Logits ``(K, B, classes)`` of input ``x`` ``(K, B, in)``."""
        h = x
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            noise = [s.noise[i] for s in self.states]
            if any(n is not None for n in noise):
                parts = list(h.unbind(0))
                for k, n in enumerate(noise):
                    if n is not None:
                        g = generators[k] if generators is not None else None
                        parts[k] = DF.dropout(parts[k], n[0], training, mode=n[1], generator=g)
                h = torch.stack(parts)
            h = _StackedLinear.apply(h, w, b)
            if i < last:
                act = self.states[0].member.model.activation
                h = torch.relu(h) if act == "relu" else torch.sigmoid(h)
        return h


class _StackedLinear(torch.autograd.Function):
    """``x @ W^T + b`` per member, with each slice's bits of ``F.linear`` forward and backward.

    Forward and input gradient are one ``baddbmm``/``bmm`` (equal to ``addmm``/``mm`` per slice).
    The weight gradient is not: autograd forms ``F.linear``'s as ``grad^T @ x`` (``mm`` of a
    transposed view), and neither ``bmm(grad^T, x)`` nor autograd's ``baddbmm`` formula
    ``(x^T @ grad)^T`` reproduces it at 10 outputs (measured, torch 2.13 + MKL: with 2 threads
    ``mm`` splits the reduction over the batch while ``bmm`` gives each slice one thread, and the
    other formula sums in another order at any thread count). So it is one ``mm`` per member,
    exactly autograd's call.
    """

    @staticmethod
    def forward(x, w, b):
        return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, w, _ = inputs
        ctx.save_for_backward(x, w)
        ctx.x_needs_grad = inputs[0].requires_grad

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        grad_x = torch.bmm(grad, w) if ctx.x_needs_grad else None
        grad_w = w.new_empty(w.shape)
        for g, xk, out in zip(grad.unbind(0), x.unbind(0), grad_w.unbind(0), strict=True):
            torch.mm(g.t(), xk, out=out)  # written in place: no stacking copy
        return grad_x, grad_w, grad.sum(1)


def _runs(values: list) -> list[tuple[int, int, object]]:
    """Maximal runs ``(start, end, value)`` of equal consecutive values."""
    out = []
    for k, v in enumerate(values):
        if out and out[-1][2] == v:
            out[-1] = (out[-1][0], k + 1, v)
        else:
            out.append((k, k + 1, v))
    return out


def _evaluate(states: list[_State], x: torch.Tensor, y: torch.Tensor) -> list[int]:
    """Misclassified test examples of each member (evaluation mode), as ``evaluate`` counts."""
    return _evaluate_stack(_Stack(states), x, y)


def _train_group(states, data: Dataset, last: int, device, bar: Progress) -> None:
    """Train ``states`` (one thread count) up to epoch ``last``, in segments by start epoch."""
    starts = sorted({s.start for s in states if s.start < last})
    for i, begin in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else last
        active = [s for s in states if s.start <= begin]
        _train_epochs(active, data, begin, end, device, bar, report=i + 1 == len(starts))


def _train_epochs(states, data: Dataset, begin: int, end: int, device, bar, report) -> None:
    stack = _Stack(states)
    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    test_x, test_y = data.test_x.to(device), data.test_y.to(device)
    n, batch = len(train_y), states[0].member.train.batch_size
    configs = [s.member.train for s in states]
    params = stack.params()
    for epoch in range(begin, end):
        t0 = time.perf_counter()
        schedules = [(c.schedule.lr_at(epoch), c.schedule.momentum_at(epoch)) for c in configs]
        steps = [
            ((1.0 - m) * lr if c.scale_step else lr, m)
            for (lr, m), c in zip(schedules, configs, strict=True)
        ]
        orders = {}
        for c in configs:
            if c.seed not in orders:
                g = torch.Generator().manual_seed(shuffle_seed(c.seed, epoch))
                orders[c.seed] = torch.randperm(n, generator=g).to(device)
        order = torch.stack([orders[c.seed] for c in configs])
        generators = [torch.Generator().manual_seed(mask_seed(c.seed, epoch)) for c in configs]
        losses, wrongs = [], []
        for start in range(0, n, batch):
            index = order[:, start : start + batch]
            size = index.shape[1]
            xs, ys = train_x[index], train_y[index]
            logits = stack.forward(xs, training=True, generators=generators)
            member_losses = [
                F.cross_entropy(lk, yk, reduction="sum") / size
                for lk, yk in zip(logits.unbind(0), ys.unbind(0), strict=True)
            ]
            for p in params:
                if p.grad is not None:
                    p.grad.zero_()
            loss = torch.stack(member_losses)
            loss.sum().backward()
            losses.append(loss.detach())
            wrongs.append((logits.detach().argmax(2) != ys).sum(1))
            with torch.no_grad():
                for a, b, (step, m) in _runs(steps):
                    for p in params:
                        v = stack.velocity[id(p)][a:b]
                        v.mul_(m).add_(p.grad[a:b], alpha=-step)
                        p[a:b].add_(v)
                for a, b, c in _runs([c.max_norm for c in configs]):
                    if c is None:
                        continue
                    for w in stack.weights[:-1]:
                        apply_max_norm([w[a:b].view(-1, w.shape[2])], c)
        loss_rows = torch.stack(losses).tolist()  # (steps, K), float32 values as Python floats
        wrong_rows = torch.stack(wrongs).tolist()
        sizes = [min(batch, n - start) for start in range(0, n, batch)]
        evaluate = [(epoch + 1) % c.eval_every == 0 or epoch + 1 == c.epochs for c in configs]
        errors = _evaluate_stack(stack, test_x, test_y) if any(evaluate) else None
        seconds = (time.perf_counter() - t0) / len(states)
        for k, s in enumerate(states):
            loss_sum, wrong = 0.0, 0
            for row, wrow, size in zip(loss_rows, wrong_rows, sizes, strict=True):
                loss_sum += float(row[k]) * size
                wrong += int(wrow[k])
            if not math.isfinite(loss_sum):
                raise FloatingPointError(
                    f"{s.member.name or 'member'}: training diverged in epoch {epoch + 1} (loss "
                    f"{loss_sum}); lower the learning rate or add a max-norm constraint"
                )
            lr, m = schedules[k]
            record = {
                "epoch": epoch,
                "lr": lr,
                "momentum": m,
                "train_loss": loss_sum / n,
                "train_error": wrong / n,
                "test_error": None,
            }
            if evaluate[k]:
                record["test_error"] = errors[k] / len(test_y)
                s.last_errors, s.last_errors_epoch = errors[k], epoch
            record["seconds"] = seconds
            s.history.append(record)
        if any(s.checkpoint is not None for s in states):
            stack.write_back()
            for s, (lr, m) in zip(states, schedules, strict=True):
                if s.checkpoint is None:
                    continue
                for group in s.optimizer.param_groups:
                    group["lr"], group["momentum"] = lr, m
                _save_atomic(
                    {
                        "format": CHECKPOINT_FORMAT,
                        "epoch": epoch + 1,
                        "fingerprint": s.fingerprint,
                        "model": s.model.state_dict(),
                        "optimizer": s.optimizer.state_dict(),
                        "history": s.history,
                        "threads": torch.get_num_threads(),
                    },
                    s.checkpoint,
                )
        if report:
            bar.update(states[0].history[-1])
    stack.write_back()
    for s in states:
        s.start = max(s.start, end)


@torch.no_grad()
def _evaluate_stack(stack: _Stack, x: torch.Tensor, y: torch.Tensor) -> list[int]:
    wrong = torch.zeros(len(stack.states), dtype=torch.int64, device=x.device)
    for start in range(0, len(y), _EVAL_BATCH):
        xb = x[start : start + _EVAL_BATCH]
        xs = xb.unsqueeze(0).expand(len(stack.states), *xb.shape).contiguous()
        logits = stack.forward(xs, training=False)
        wrong += (logits.argmax(2) != y[start : start + _EVAL_BATCH]).sum(1)
    return [int(w) for w in wrong.tolist()]
