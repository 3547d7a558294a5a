"""Process-wide switches read by every stochastic op.

They live at the bottom of the package so that the ops can read them without importing the tools
that set them (:mod:`dropkit.mc`). Plain module globals, not thread-locals: ``torch.compile``
guards on them, so a compiled model recompiles when Monte-Carlo inference is switched on or off.

Two switches:

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
"""

from __future__ import annotations

from dataclasses import dataclass

_stochastic_inference_depth = 0


def stochastic_inference_depth() -> int:
    """How many Monte-Carlo inference contexts are active."""
    return _stochastic_inference_depth


def enter_stochastic_inference() -> None:
    global _stochastic_inference_depth
    _stochastic_inference_depth += 1


def exit_stochastic_inference() -> None:
    global _stochastic_inference_depth
    _stochastic_inference_depth = max(_stochastic_inference_depth - 1, 0)


def is_stochastic(training: bool) -> bool:
    """Whether a stochastic op samples: in training, or inside a Monte-Carlo inference context."""
    return bool(training) or _stochastic_inference_depth > 0


@dataclass
class SampleStream:
    """Seeds for the stochastic calls of one forward pass; see the module docstring."""

    base_seed: int
    replica: int = 0
    replicas: int = 1
    calls: int = 0


_sample_stream: SampleStream | None = None


def sample_stream() -> SampleStream | None:
    return _sample_stream


def set_sample_stream(stream: SampleStream | None) -> SampleStream | None:
    """Install ``stream`` (or clear with None); returns the previous one for restoring."""
    global _sample_stream
    previous, _sample_stream = _sample_stream, stream
    return previous
