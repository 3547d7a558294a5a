"""Training progress: a tqdm bar on a terminal, plain lines in logs and workers, or nothing."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["PlainProgress", "Progress", "SilentProgress", "make_progress"]


def _postfix(record: dict) -> str:
    parts = [f"loss {record['train_loss']:.4f}"]
    if record.get("test_error") is not None:
        parts.append(f"test err {100 * record['test_error']:.2f}%")
    return ", ".join(parts)


class Progress:
    """Interface: ``start`` once, ``update`` after each epoch, ``close`` at the end."""

    def start(self, total: int, initial: int, desc: str) -> None: ...

    def update(self, record: dict) -> None: ...

    def close(self) -> None: ...


class SilentProgress(Progress):
    pass


class PlainProgress(Progress):
    """A line every ``every`` epochs and after the last, for logs and worker processes
    (``every=None``: about 20 lines per run)."""

    def __init__(self, stream: TextIO | None = None, every: int | None = None) -> None:
        self.stream = stream or sys.stderr
        self.every = every

    def start(self, total: int, initial: int, desc: str) -> None:
        self.total, self.desc, self.t0 = total, desc, time.perf_counter()
        if self.every is None:
            self.every = max(1, total // 20)
        if initial:
            print(f"{desc}: resuming after epoch {initial}/{total}", file=self.stream, flush=True)

    def update(self, record: dict) -> None:
        epoch = record["epoch"] + 1
        if epoch % self.every and epoch != self.total:
            return
        elapsed = time.perf_counter() - self.t0
        print(
            f"{self.desc}: epoch {epoch}/{self.total}, {_postfix(record)} ({elapsed:.1f}s)",
            file=self.stream,
            flush=True,
        )


class TqdmProgress(Progress):
    def __init__(self, position: int | None = None) -> None:
        self.position = position

    def start(self, total: int, initial: int, desc: str) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=total,
            initial=initial,
            desc=desc,
            unit="epoch",
            position=self.position,
            leave=True,
            dynamic_ncols=True,
        )

    def update(self, record: dict) -> None:
        self.bar.set_postfix_str(_postfix(record), refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def make_progress(kind: str | Progress = "auto") -> Progress:
    """``"auto"`` (tqdm on a terminal, else plain), ``"tqdm"``, ``"plain"``, ``"none"``, or a
    :class:`Progress` instance (returned as is)."""
    if isinstance(kind, Progress):
        return kind
    if kind == "none":
        return SilentProgress()
    if kind == "plain":
        return PlainProgress()
    if kind in ("auto", "tqdm"):
        if kind == "tqdm" or sys.stderr.isatty():
            return TqdmProgress()
        return PlainProgress()
    raise ValueError(f"progress must be 'auto', 'tqdm', 'plain' or 'none', got {kind!r}")
