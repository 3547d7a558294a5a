"""The training loop: deterministic, resumable, optionally data-parallel.

Determinism. Everything random in epoch ``e`` comes from seeds derived from ``(seed, e)`` with
:func:`dropkit.rng.derive_seed`: the shuffle of the training set (same on every rank) and the
default-generator state from which the dropout layers draw their mask seeds (different on every
rank: ``derive_seed(epoch_seed, 1 + rank)``). The caller's global RNG state is left untouched
(``torch.random.fork_rng``). So the same seed gives the same final weights bit for bit, and an
epoch can be replayed from a checkpoint without any saved RNG state.

Checkpoints. After every epoch the weights, optimizer velocities, BatchNorm buffers and history
are written to a unique temporary file and renamed onto ``checkpoint`` (``os.replace``: atomic), so
a run killed at any moment finds either the previous or the new complete checkpoint, and resumes
to exactly the result of an uninterrupted run. A checkpoint holds only tensors and plain data and is
read with ``torch.load(weights_only=True)``: a planted pickle cannot run code. One that cannot be
read or belongs to another configuration raises :class:`CheckpointError`.

Data parallel. Inside ``torch.distributed`` (e.g. launched by ``torchrun``; see
:mod:`dropkit_lab.engine.launch`), each global mini-batch is split into ``world_size`` contiguous
shards, each rank computes the summed loss of its shard divided by the global batch size, and the
gradients are summed with ``all_reduce``: the update is the single-process update of the whole
batch, with independent masks per rank. BatchNorm statistics are per rank and rank 0's buffers
are broadcast after every epoch. Rank 0 writes the checkpoint.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from dropkit import rng
from dropkit.mc import stochastic
from dropkit_lab.data.dataset import Dataset
from dropkit_lab.engine.jsonio import atomic_open
from dropkit_lab.engine.model import MLP, MLPConfig, build_mlp
from dropkit_lab.engine.optim import HintonSGD, Schedule, apply_max_norm
from dropkit_lab.engine.progress import Progress, make_progress

__all__ = [
    "CheckpointError",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "mask_seed",
    "mc_errors",
    "train",
]

_POSITIVE = (1 << 63) - 1
CHECKPOINT_FORMAT = 1
_CHECKPOINT_KEYS = ("format", "epoch", "fingerprint", "model", "optimizer", "history")


class CheckpointError(ValueError):
    """A checkpoint exists but cannot be resumed from: ``path`` and ``reason`` say why."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"checkpoint {path}: {reason}")
        self.path = Path(path)
        self.reason = reason


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation recipe. ``max_norm`` is the bound c on the L2 norm of each hidden unit's
    incoming weights (Hinton et al. 2012 cap the *squared* norm at 15: c = sqrt(15))."""

    epochs: int
    schedule: Schedule
    batch_size: int = 100
    max_norm: float | None = None
    scale_step: bool = True
    seed: int = 0
    eval_every: int = 1

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_norm is not None and not self.max_norm > 0:
            raise ValueError(f"max_norm must be > 0 or None, got {self.max_norm}")
        if self.eval_every < 1:
            raise ValueError(f"eval_every must be >= 1, got {self.eval_every}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    model: MLP
    history: list[dict]
    test_error: float
    test_errors: int
    n_test: int
    seconds: float
    resumed_from: int = 0
    finished: bool = True
    #: torch threads the run trained with (a resumed run: those its checkpoint recorded)
    threads: int = 1
    extra: dict = field(default_factory=dict)


def _epoch_seed(seed: int, epoch: int) -> int:
    return rng.derive_seed(seed, epoch)


def mask_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The default-generator seed from which rank ``rank`` draws its masks in epoch ``epoch``."""
    return rng.derive_seed(_epoch_seed(seed, epoch), 1 + rank) & _POSITIVE


def shuffle_seed(seed: int, epoch: int) -> int:
    return rng.derive_seed(_epoch_seed(seed, epoch), 0) & _POSITIVE


def _dist():
    """(rank, world_size, module) when torch.distributed is initialised, else (0, 1, None)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size(), torch.distributed
    return 0, 1, None


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 2000) -> int:
    """Number of misclassified examples in evaluation mode (deterministic rules: weight scaling)."""
    was_training = model.training
    model.eval()
    wrong = 0
    for start in range(0, len(y), batch):
        logits = model(x[start : start + batch])
        wrong += int((logits.argmax(1) != y[start : start + batch]).sum())
    model.train(was_training)
    return wrong


@torch.no_grad()
def mc_errors(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    ks: list[int],
    seed: int,
    batch: int = 2000,
) -> dict[int, int]:
    """Errors of Monte-Carlo model averaging: mean softmax over ``k`` sampled networks, for each
    ``k`` in ``ks`` (one sequence of samples, so the estimate for k reuses the first k samples).

    Sampling uses :func:`dropkit.mc.stochastic`, so BatchNorm stays in evaluation mode.
    """
    was_training = model.training
    model.eval()
    kmax = max(ks)
    wanted = set(ks)
    out = dict.fromkeys(ks, 0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed & _POSITIVE)
        with stochastic():
            for start in range(0, len(y), batch):
                xb, yb = x[start : start + batch], y[start : start + batch]
                total = torch.zeros(len(yb), int(model(xb[:1]).shape[1]), dtype=torch.float64)
                for k in range(1, kmax + 1):
                    total += torch.softmax(model(xb).double(), dim=1).cpu()
                    if k in wanted:
                        out[k] += int((total.argmax(1) != yb.cpu()).sum())
    model.train(was_training)
    return out


def _fingerprint(model_config: MLPConfig, train_config: TrainConfig, n_train: int) -> dict:
    return {
        "model": model_config.to_dict(),
        "train": train_config.to_dict(),
        "n_train": n_train,
    }


def _save_atomic(obj: dict, path: Path) -> None:
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def _load_checkpoint(path: Path, device: torch.device, fingerprint: dict) -> dict:
    """The checkpoint at ``path`` if it is complete and made by this configuration."""
    if path.is_dir():
        raise CheckpointError(path, "is a folder, not a file")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # unpickling raises many types; every one means unreadable
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(path, f"cannot be read ({type(exc).__name__}: {reason})") from exc
    if not isinstance(state, dict) or any(k not in state for k in _CHECKPOINT_KEYS):
        raise CheckpointError(path, "is not a dropkit checkpoint (members missing)")
    if state["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(path, f"has format {state['format']!r}, not {CHECKPOINT_FORMAT}")
    if state["fingerprint"] != fingerprint:
        raise CheckpointError(path, "belongs to a different configuration")
    return state


def train(
    model_config: MLPConfig,
    train_config: TrainConfig,
    data: Dataset,
    *,
    checkpoint: str | os.PathLike | None = None,
    progress: str | Progress = "auto",
    desc: str = "train",
    stop_after: int | None = None,
    device: str | torch.device = "cpu",
) -> TrainResult:
    """Train an MLP with the recipe of ``train_config`` on ``data`` and evaluate on its test set.

    Args:
        checkpoint: file to resume from (when it exists) and to rewrite after every epoch;
            :class:`CheckpointError` when it exists but cannot be resumed from.
        progress: see :func:`dropkit_lab.engine.progress.make_progress`.
        stop_after: stop once this many epochs are done (a simulated kill, for tests); the result
            then has ``finished=False``.
        device: where to train (``"cuda"`` works; dropkit's masks are the same on every device).

    Threads: a run trains with the caller's ``torch.get_num_threads()``, which every checkpoint
    records; a resumed run trains on with the count its checkpoint recorded (float sums may
    depend on it), so it ends bit for bit where the uninterrupted run would have. The caller's
    count is restored on return.

    Returns:
        The trained model, per-epoch history (``epoch``, ``lr``, ``momentum``, ``train_loss``,
        ``train_error`` (with noise), ``test_error`` (every ``eval_every`` epochs and the last),
        ``seconds``), final test error.
    """
    saved = torch.get_num_threads()
    try:
        return _train(model_config, train_config, data, checkpoint=checkpoint, progress=progress,
                      desc=desc, stop_after=stop_after, device=device)  # fmt: skip
    finally:
        if torch.get_num_threads() != saved:
            torch.set_num_threads(saved)


def _train(
    model_config: MLPConfig,
    train_config: TrainConfig,
    data: Dataset,
    *,
    checkpoint: str | os.PathLike | None = None,
    progress: str | Progress = "auto",
    desc: str = "train",
    stop_after: int | None = None,
    device: str | torch.device = "cpu",
) -> TrainResult:
    rank, world, dist = _dist()
    device = torch.device(device)
    schedule = train_config.schedule
    model = build_mlp(model_config, train_config.seed).to(device)
    optimizer = HintonSGD(
        model.parameters(),
        lr=schedule.lr_at(0),
        momentum=schedule.momentum_at(0),
        scale_step=train_config.scale_step,
    )
    fingerprint = _fingerprint(model_config, train_config, len(data.train_y))
    history: list[dict] = []
    start_epoch = 0
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    if checkpoint is not None and checkpoint.exists():
        state = _load_checkpoint(checkpoint, device, fingerprint)
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(checkpoint, f"does not fit the model ({exc})") from exc
        history = list(state["history"])
        start_epoch = int(state["epoch"])
        threads = state.get("threads")
        if isinstance(threads, int) and threads >= 1 and threads != torch.get_num_threads():
            torch.set_num_threads(threads)
    resumed_from = start_epoch

    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    test_x, test_y = data.test_x.to(device), data.test_y.to(device)
    n, batch = len(train_y), train_config.batch_size
    bar = make_progress(progress if rank == 0 else "none")
    bar.start(train_config.epochs, start_epoch, desc)
    t_start = time.perf_counter()
    last = train_config.epochs if stop_after is None else min(stop_after, train_config.epochs)
    try:
        for epoch in range(start_epoch, last):
            t0 = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = schedule.lr_at(epoch)
                group["momentum"] = schedule.momentum_at(epoch)
            order = torch.randperm(
                n, generator=torch.Generator().manual_seed(shuffle_seed(train_config.seed, epoch))
            ).to(device)
            model.train()
            loss_sum, wrong = 0.0, 0
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(mask_seed(train_config.seed, epoch, rank))
                for start in range(0, n, batch):
                    index = order[start : start + batch]
                    global_size = len(index)
                    index = torch.tensor_split(index, world)[rank] if world > 1 else index
                    logits = model(train_x[index])
                    loss = F.cross_entropy(logits, train_y[index], reduction="sum") / global_size
                    optimizer.zero_grad(set_to_none=False)
                    loss.backward()
                    stats = torch.tensor(
                        [
                            float(loss.detach()) * global_size,
                            float((logits.detach().argmax(1) != train_y[index]).sum()),
                        ],
                        dtype=torch.float64,
                    )
                    if dist is not None:
                        for p in model.parameters():
                            dist.all_reduce(p.grad)
                        dist.all_reduce(stats)
                    optimizer.step()
                    if train_config.max_norm is not None:
                        apply_max_norm(model.hidden_weights(), train_config.max_norm)
                    loss_sum += float(stats[0])
                    wrong += int(stats[1])
            if not math.isfinite(loss_sum):
                raise FloatingPointError(
                    f"{desc}: training diverged in epoch {epoch + 1} (loss {loss_sum}); "
                    "lower the learning rate or add a max-norm constraint"
                )
            if dist is not None:
                for buffer in model.buffers():
                    dist.broadcast(buffer, 0)
            record = {
                "epoch": epoch,
                "lr": schedule.lr_at(epoch),
                "momentum": schedule.momentum_at(epoch),
                "train_loss": loss_sum / n,
                "train_error": wrong / n,
                "test_error": None,
            }
            if (epoch + 1) % train_config.eval_every == 0 or epoch + 1 == train_config.epochs:
                record["test_error"] = evaluate(model, test_x, test_y) / len(test_y)
            record["seconds"] = time.perf_counter() - t0
            history.append(record)
            if checkpoint is not None and rank == 0:
                checkpoint.parent.mkdir(parents=True, exist_ok=True)
                _save_atomic(
                    {
                        "format": CHECKPOINT_FORMAT,
                        "epoch": epoch + 1,
                        "fingerprint": fingerprint,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "history": history,
                        "threads": torch.get_num_threads(),
                    },
                    checkpoint,
                )
            if dist is not None:
                dist.barrier()
            bar.update(record)
    finally:
        bar.close()
    errors = evaluate(model, test_x, test_y)
    return TrainResult(
        model=model,
        history=history,
        test_error=errors / len(test_y),
        test_errors=errors,
        n_test=len(test_y),
        seconds=time.perf_counter() - t_start,
        resumed_from=resumed_from,
        finished=last == train_config.epochs,
        threads=torch.get_num_threads(),
    )
