"""Argument checks and seed resolution shared by every functional op."""

from __future__ import annotations

import itertools
import numbers

import torch

from dropkit import _state, rng
from dropkit.kernels import ops

MODES = ("inverted", "classic")
# A fresh constant for every draw_seed traced by a compiler, so no two draws can be merged.
_trace_sites = itertools.count()


def check_probability(p: float, name: str = "p") -> float:
    """``p`` as a float in [0, 1]; ValueError naming ``name`` otherwise (torch's wording)."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"{name} must be a real number in [0, 1], got {type(p).__name__}")
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    return p


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


def check_floating(input: torch.Tensor, op: str) -> None:
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"{op}: input must be a torch.Tensor, got {type(input).__name__}")
    if not input.dtype.is_floating_point:
        raise TypeError(f"{op}: input must have a floating dtype, got {input.dtype}")


def check_offset(offset: int) -> int:
    if isinstance(offset, bool) or not isinstance(offset, numbers.Integral) or offset < 0:
        raise ValueError(f"offset must be an integer >= 0, got {offset!r}")
    return int(offset)


def resolve_stream(
    input: torch.Tensor,
    generator: torch.Generator | None,
    seed: int | torch.Tensor | None,
    offset: int,
    mask_numel: int,
) -> tuple[torch.Tensor, int]:
    """The ``(seed, offset)`` of one call: the seed as a 0-d int64 CPU tensor, the stream offset.

    An explicit ``seed`` wins; otherwise one is drawn from ``generator``; otherwise, inside a
    Monte-Carlo sample stream (:mod:`dropkit._state`), the next seed of that stream, with the
    offset shifted by ``replica * mask_numel / replicas`` (``mask_numel``: the number of stream
    elements this call consumes, for all the replicas the pass carries); otherwise from the default
    CPU generator through the ``dropkit::draw_seed`` op (opaque to compilers, so compiled and eager
    runs draw the same seeds after the same ``torch.manual_seed``).
    """
    offset = check_offset(offset)
    if seed is not None:
        if generator is not None:
            raise ValueError("pass either seed or generator, not both")
        return ops.seed_tensor(seed), offset
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        return rng.draw_seed_tensor(generator), offset
    stream = _state.sample_stream()
    if stream is not None:
        call_seed = rng.derive_seed(stream.base_seed, stream.calls)
        stream.calls += 1
        per_replica = mask_numel // stream.replicas
        return ops.seed_tensor(call_seed), offset + stream.replica * per_replica
    if torch.compiler.is_compiling():
        return torch.ops.dropkit.draw_seed(input, next(_trace_sites)), offset
    # Eager: the same draw as the op performs, without the dispatcher's overhead.
    return rng.draw_seed_tensor(), offset
