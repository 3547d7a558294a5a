"""How many threads a training process uses, and how they wait: chosen by the work and the load.

Two things make small nets thrash on a shared machine (measured in issue 10: ``dropkit run demo
--seeds 1`` took 7.1x its idle time beside one process spinning on the CPU):

- *thread count*: torch's default is one thread per core. A team of threads on a matmul of a
  few hundred thousand multiply-adds spends more time handing out work and meeting at the barrier
  than computing, and when another process holds one of the cores, every barrier waits for the
  thread that is not running. So the count follows the size of the largest matmul of one training
  step (:data:`SMALL_WORK`) and the cores the process may use (``os.sched_getaffinity``) less the
  load of the other processes (``os.getloadavg``), shared between the runner's workers;
- *waiting*: OpenMP threads spin at a barrier for a while before they sleep (``OMP_WAIT_POLICY``,
  GNU's ``GOMP_SPINCOUNT``, Intel's ``KMP_BLOCKTIME``), burning the core another process needs.
  :func:`passive_wait_environment` makes them sleep at once; it only acts on an OpenMP runtime
  started after it, so the CLI calls it before torch is imported and worker processes inherit it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from dropkit_lab.environment import WAIT_ENVIRONMENT, passive_wait_environment

__all__ = [
    "SMALL_WORK",
    "WAIT_ENVIRONMENT",
    "available_cores",
    "choose_threads",
    "passive_wait_environment",
    "step_work",
]

#: Below this many multiply-adds in the largest matmul of a training step one thread is used.
#: The demo's 32 x 256 x 256 (2.1 M) gains nothing from a second thread; MNIST's
#: 100 x 784 x 800 (63 M) does.
SMALL_WORK = 8_000_000


def available_cores() -> int:
    """The cores this process may run on (its affinity mask; ``os.cpu_count`` where unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _other_load(cores: int) -> float:
    """Runnable processes besides this one, from the 1-minute load average (0 where unknown)."""
    try:
        return min(float(cores), os.getloadavg()[0])
    except (AttributeError, OSError):
        return 0.0


def step_work(batch_size: int, layer_sizes: Iterable[tuple[int, int]]) -> int:
    """Multiply-adds of the largest matmul of one step: ``batch_size * in * out`` maximised."""
    return max((batch_size * i * o for i, o in layer_sizes), default=0)


def choose_threads(
    work: int,
    *,
    processes: int = 1,
    cores: int | None = None,
    load: float | None = None,
) -> int:
    """Threads for each of ``processes`` training processes whose largest matmul has ``work``
    multiply-adds, on ``cores`` cores (default: :func:`available_cores`) with ``load`` runnable
    processes already there (default: the 1-minute load average).

    One thread for small work; otherwise the cores left free by the load, shared out between the
    processes, at least one each.
    """
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    if work < 0:
        raise ValueError(f"work must be >= 0, got {work}")
    cores = available_cores() if cores is None else cores
    load = _other_load(cores) if load is None else load
    if work < SMALL_WORK:
        return 1
    free = max(1, cores - int(round(load)))
    return max(1, free // processes)
