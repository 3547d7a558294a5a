"""Seeds and stream offsets of one call: explicit, from a generator, from a Monte-Carlo sample
stream, or drawn from the default generator."""

from __future__ import annotations

import torch

from dropkit import _state, rng
from dropkit.kernels import seed_tensor
from dropkit.ops.checks import check_generator, check_offset, check_seed, check_stream_end

__all__ = ["resolve_stream"]


def resolve_stream(
    generator: torch.Generator | None,
    seed: int | torch.Tensor | None,
    offset: int,
    mask_numel: int,
    words: int | None = None,
) -> tuple[torch.Tensor, int]:
    """The ``(seed, offset)`` of one call: the seed as the operators take it (a 0-d int64 CPU
    tensor, which a compiler traces as data) and the stream offset.

    An explicit ``seed`` wins; otherwise one is drawn from ``generator``; otherwise, inside a
    Monte-Carlo sample stream (:mod:`dropkit._state`), the next seed of that stream, with the offset
    shifted by ``replica * mask_numel / replicas`` (``mask_numel``: the number of mask elements this
    call draws, for all the replicas the pass carries); otherwise from the default CPU generator.

    The default draw is ``torch.randint`` (:func:`dropkit.rng.draw_seed_tensor`): a random op that
    every tracer records as such, so a compiled model draws a fresh seed on every call without a
    guard on Python state (Inductor replaces the draw by its own generator, as it does for torch's
    dropout; ``torch._inductor.config.fallback_random = True`` makes compiled masks equal eager
    ones), and two draws of one graph are never merged. ``words`` (default ``mask_numel``): stream
    words the call reads from its offset; the last one must lie in the counter space.
    """
    # The common call: no seed, generator or offset, no Monte-Carlo sample stream anywhere.
    default = seed is None and generator is None and type(offset) is int and offset == 0
    if default and not _state.active_streams:
        return rng.draw_seed_tensor(), 0
    offset = check_offset(offset)
    # int(): under torch.jit.trace, numel() is a traced tensor; the trace is shape-specialised
    mask_numel = int(mask_numel)
    check_stream_end(offset, mask_numel if words is None else int(words))
    if seed is not None:
        if generator is not None:
            raise ValueError("pass either seed or generator, not both")
        return seed_tensor(check_seed(seed)), offset
    if check_generator(generator) is not None:
        if torch.jit.is_tracing():
            raise RuntimeError(
                "torch.jit.trace cannot record a draw from a generator= argument (the trace would "
                "replay one mask); trace without generator=, or use torch.compile / torch.export"
            )
        return rng.draw_seed_tensor(generator=generator), offset
    stream = _state.sample_stream()
    if stream is not None:
        call_seed = rng.derive_seed(stream.base_seed, stream.calls)
        stream.calls += 1
        offset += stream.replica * (mask_numel // stream.replicas)
        check_stream_end(offset, mask_numel if words is None else int(words))
        return seed_tensor(call_seed), offset
    return rng.draw_seed_tensor(), offset
