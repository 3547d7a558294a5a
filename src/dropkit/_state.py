"""The switches read by every stochastic op, scoped to the calling thread / asyncio context.

They live at the bottom of the package so that the ops can read them without importing the tools
that set them (:mod:`dropkit.mc`). Two switches:

- *stochastic inference* (a depth counter): while positive, every dropkit stochastic op samples
  even when its ``training`` flag is False (Monte-Carlo dropout), without touching module modes.
- *sample stream*: while set, ops that were not given an explicit ``seed``/``generator`` take
  their seeds from a deterministic sequence (the ``k``-th stochastic call of a forward pass gets
  ``derive_seed(base_seed, k)``) and shift their stream offset by
  ``replica * mask_numel / replicas``, where ``replicas`` is how many copies of the batch the pass
  carries along dim 0. The ``t``-th forward pass of a looped Monte-Carlo run (``replica=t``,
  ``replicas=1``) then draws exactly the masks that the ``t``-th block of a batch replicated along
  dim 0 draws in one pass (``replica`` = the first replica of that pass), because that block starts
  at element ``t * mask_numel_of_one_replica`` of the stream.

Scope. Both switches are :class:`contextvars.ContextVar` values: a switch set in one thread (or
asyncio task) is not seen by another, so a thread serving ``model.eval()`` predictions is not made
stochastic by a Monte-Carlo run in a second thread, and does not consume that run's seeds. A new
thread starts with both switches off (Python does not copy the context into new threads).

``torch.compile`` cannot read a context variable (Dynamo does not trace ``ContextVar.get``), so
compiled code reads process-wide mirrors instead: the number of active stochastic-inference
contexts over all threads, and the sample stream installed last by any thread. Dynamo guards on
these plain globals, so a compiled model recompiles when Monte-Carlo inference is switched on or
off — but a compiled model run in one thread while another thread is inside
:func:`dropkit.mc.stochastic` samples too. Run compiled Monte-Carlo inference from one thread.
"""

from __future__ import annotations

import contextvars
import threading
from dataclasses import dataclass

import torch

_depth: contextvars.ContextVar[int] = contextvars.ContextVar("dropkit_stochastic_depth", default=0)
# Process-wide mirrors, read only while torch.compile traces (see the module docstring).
_lock = threading.Lock()
_active_contexts = 0


def stochastic_inference_depth() -> int:
    """How many Monte-Carlo inference contexts are active in the calling thread/context."""
    return _depth.get()


def enter_stochastic_inference() -> None:
    """Switch stochastic inference on in the calling thread/context (nests; pair with exit)."""
    global _active_contexts
    _depth.set(_depth.get() + 1)
    with _lock:
        _active_contexts += 1


def exit_stochastic_inference() -> None:
    """Undo one :func:`enter_stochastic_inference` of the calling thread/context."""
    global _active_contexts
    depth = _depth.get()
    if depth == 0:
        return
    _depth.set(depth - 1)
    with _lock:
        _active_contexts = max(_active_contexts - 1, 0)


def is_stochastic(training: bool) -> bool:
    """Whether a stochastic op samples: in training, or inside a Monte-Carlo inference context
    of the calling thread/context (process-wide while ``torch.compile`` traces)."""
    if training:
        return True
    if torch.compiler.is_compiling():
        return _active_contexts > 0
    return _depth.get() > 0


@dataclass
class SampleStream:
    """Seeds for the stochastic calls of one forward pass; see the module docstring."""

    base_seed: int
    replica: int = 0
    replicas: int = 1
    calls: int = 0


_stream: contextvars.ContextVar[SampleStream | None] = contextvars.ContextVar(
    "dropkit_sample_stream", default=None
)
_last_stream: SampleStream | None = None  # process-wide mirror for torch.compile
# How many threads/contexts have a sample stream installed: while 0, no call needs to look one up
# (the functionals' common path reads this plain int instead of the context variable).
active_streams = 0


def sample_stream() -> SampleStream | None:
    """The sample stream of the calling thread/context (process-wide while compiling)."""
    if torch.compiler.is_compiling():
        return _last_stream
    return _stream.get()


def set_sample_stream(stream: SampleStream | None) -> SampleStream | None:
    """Install ``stream`` (or clear with None) in the calling thread/context; returns the previous
    one for restoring."""
    global _last_stream, active_streams
    previous = _stream.get()
    _stream.set(stream)
    _last_stream = stream
    if (previous is None) != (stream is None):
        with _lock:
            active_streams += 1 if previous is None else -1
    return previous
