"""Seeds and stream offsets of one call: explicit, from a generator, from a Monte-Carlo sample
stream, or drawn from the default generator (through an opaque op when a compiler traces)."""

from __future__ import annotations

import itertools

import torch

from dropkit import _state, rng
from dropkit.ops._route import plain_eager
from dropkit.ops.checks import check_generator, check_offset, check_seed, check_stream_end

__all__ = ["draw_seed", "resolve_stream", "seed_tensor"]

# A fresh constant for every draw_seed traced by a compiler, so no two draws can be merged.
_trace_sites = itertools.count()


def seed_tensor(seed: int | torch.Tensor) -> torch.Tensor:
    """``seed`` (checked by :func:`check_seed`) as a 0-d int64 CPU tensor; seeds in
    ``[2**63, 2**64)`` wrap to the int64 of the same 64 bits."""
    seed = check_seed(seed)
    if isinstance(seed, torch.Tensor):
        return seed.reshape(()).to(device="cpu", dtype=torch.int64)
    return torch.tensor(seed - 2**64 if seed >= 2**63 else seed, dtype=torch.int64)


@torch.library.custom_op(
    "dropkit::draw_seed", mutates_args=(), tags=(torch.Tag.nondeterministic_seeded,)
)
def draw_seed(like: torch.Tensor, site: int) -> torch.Tensor:
    """Draw a seed from the default CPU generator. ``like`` and ``site`` only keep the draws of one
    traced graph apart: the ``nondeterministic_seeded`` tag alone did not stop AOT autograd from
    merging two draws into one (two dropouts then shared a mask)."""
    return rng.draw_seed_tensor()


@draw_seed.register_fake
def _draw_seed_fake(like: torch.Tensor, site: int) -> torch.Tensor:
    return torch.empty((), dtype=torch.int64, device="cpu")


def resolve_stream(
    anchor: torch.Tensor,
    generator: torch.Generator | None,
    seed: int | torch.Tensor | None,
    offset: int,
    mask_numel: int,
    words: int | None = None,
) -> tuple[int | torch.Tensor, int]:
    """The ``(seed, offset)`` of one call: the seed (a Python int in plain eager mode, see
    :func:`~dropkit.ops.plain_eager` of ``anchor``; else a 0-d int64 CPU tensor, so that nothing
    traced reads its value) and the stream offset.

    An explicit ``seed`` wins (a seed given as a tensor stays a tensor); otherwise one is drawn
    from ``generator``; otherwise, inside a Monte-Carlo sample stream (:mod:`dropkit._state`), the
    next seed of that stream, with the offset shifted by ``replica * mask_numel / replicas``
    (``mask_numel``: the number of mask elements this call draws, for all the replicas the pass
    carries); otherwise from the default CPU generator (through the opaque ``dropkit::draw_seed``
    op under ``torch.compile``, so compiled and eager runs draw the same seeds after the same
    ``torch.manual_seed``; under ``torch.jit.trace`` the draw itself is recorded, so every call of
    the trace draws afresh). ``words`` (default ``mask_numel``): stream words the call reads from
    its offset; the last one must lie in the counter space.
    """
    offset = check_offset(offset)
    # int(): under torch.jit.trace, numel() is a traced tensor; the trace is shape-specialised
    mask_numel = int(mask_numel)
    words = mask_numel if words is None else int(words)
    # In plain eager mode the seed never becomes a tensor: a tensor round trip (torch.tensor,
    # then int() in the op) costs more than the rest of a small call.
    eager = plain_eager((anchor,))
    if seed is not None:
        if generator is not None:
            raise ValueError("pass either seed or generator, not both")
        check_stream_end(offset, words)
        if eager and not isinstance(seed, torch.Tensor):
            return check_seed(seed), offset
        return seed_tensor(seed), offset
    if check_generator(generator) is not None:
        if torch.jit.is_tracing():
            raise RuntimeError(
                "torch.jit.trace cannot record a draw from a generator= argument (the trace would "
                "replay one mask); trace without generator=, or use torch.compile / torch.export"
            )
        check_stream_end(offset, words)
        if eager:
            return rng.draw_seed(generator), offset
        return rng.draw_seed_tensor(generator), offset
    stream = _state.sample_stream()
    if stream is not None:
        call_seed = rng.derive_seed(stream.base_seed, stream.calls)
        stream.calls += 1
        offset += stream.replica * (mask_numel // stream.replicas)
        check_stream_end(offset, words)
        return (call_seed if eager else seed_tensor(call_seed)), offset
    check_stream_end(offset, words)
    if torch.compiler.is_compiling():
        return torch.ops.dropkit.draw_seed(anchor, next(_trace_sites)), offset
    if eager:
        return rng.draw_seed(), offset
    return rng.draw_seed_tensor(), offset
