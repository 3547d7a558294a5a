"""The dropkit random stream: Philox4x32-10, counter-based, one definition for every backend.

Every mask dropkit draws is a pure function of ``(seed, offset, element index)``; this module is the
normative, plain-torch definition of that function (Philox4x32-10 from Salmon et al., SC'11,
"Parallel random numbers: as easy as 1, 2, 3", as in Random123, cuRAND and Triton).

Layout. A call uses one 64-bit ``seed``; ``key = (seed & 0xffffffff, seed >> 32)``. Element ``i`` of
the flattened (logical, row-major) tensor with stream offset ``o`` reads word ``j % 4`` of
``philox4x32(counter=(j // 4 & 0xffffffff, j // 4 >> 32, 0, 0), key)`` where ``j = i + o``.

- keep decision for drop probability ``p``: ``u >= keep_threshold(p)`` with
  ``keep_threshold(p) = round(p * 2**32)`` (round half to even), so ``P(keep) = 1 - p`` to within
  ``2**-33``; ``p = 0`` keeps every element and ``p = 1`` keeps none.
- uniform floats in ``[0, 1)``: ``(u >> 8) * 2**-24`` (exact in float32).
- standard normals: Box-Muller on the word pair ``(2k, 2k + 1)`` of the stream for variate ``k``:
  ``z = sqrt(-2 ln(u1)) * cos(2 pi u2)`` with ``u1 = ((w[2k] >> 8) + 1) * 2**-24`` in ``(0, 1]``
  and ``u2 = (w[2k + 1] >> 8) * 2**-24``.

Seeds are drawn per call from a torch generator (the ``generator=`` argument or the default CPU
generator), so ``torch.manual_seed`` makes every dropkit op reproducible.
"""

from __future__ import annotations

import functools
import math
import numbers
import threading

import numpy as np
import torch

__all__ = [
    "PHILOX_M0",
    "PHILOX_M1",
    "PHILOX_W0",
    "PHILOX_W1",
    "PHILOX_ROUNDS",
    "philox4x32",
    "philox4x32_torch",
    "stream_words",
    "stream_words_at",
    "keep_threshold",
    "keep_mask",
    "uniform",
    "normal",
    "derive_seed",
    "draw_seed",
    "draw_seed_tensor",
    "split_seed",
    "check_seed",
    "SEED_MIN",
    "SEED_END",
]

PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
PHILOX_ROUNDS = 10

_MASK32 = 0xFFFFFFFF
_SEED_BITS = 64


SEED_MIN = -(1 << 63)
SEED_END = 1 << _SEED_BITS  # seeds lie in [SEED_MIN, SEED_END): int64 and uint64 values


def check_seed_tensor(seed: torch.Tensor, name: str = "seed") -> torch.Tensor:
    """``seed`` itself, after checking that it is a one-element integer (not bool) tensor; its value
    is not read, so a traced seed stays in the graph."""
    if (
        seed.numel() != 1
        or seed.dtype == torch.bool
        or seed.is_floating_point()
        or seed.is_complex()
    ):
        raise TypeError(
            f"{name} must be an integer or a one-element integer tensor, got a {seed.dtype} "
            f"tensor of shape {tuple(seed.shape)}"
        )
    return seed


def check_seed(seed: int | np.integer | torch.Tensor, name: str = "seed") -> int:
    """``seed`` as a Python int, after checking that it is an integer in ``[-2**63, 2**64)``.

    Accepts Python and NumPy integers and one-element integer tensors; refuses bools (and bool
    tensors), floats (no truncation) and values outside the 64-bit range (no wrapping). A negative
    seed ``s`` and ``s + 2**64`` are the same 64-bit pattern and give the same stream.
    """
    if type(seed) is int and SEED_MIN <= seed < SEED_END:  # the common case, without the ABC check
        return seed
    if isinstance(seed, torch.Tensor):
        value = int(check_seed_tensor(seed, name).item())
    elif isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            f"{name} must be an integer in [-2**63, 2**64), got {type(seed).__name__} {seed!r}"
        )
    else:
        value = int(seed)
    if not SEED_MIN <= value < SEED_END:
        raise ValueError(f"{name} must be an integer in [-2**63, 2**64), got {value}")
    return value


def split_seed(seed: int) -> tuple[int, int]:
    """Return the Philox key ``(k0, k1)`` of a 64-bit seed (negative int64 seeds wrap mod 2**64).

    ``seed`` must be an integer in ``[-2**63, 2**64)`` (:func:`check_seed`); anything else raises.
    """
    seed = check_seed(seed) % SEED_END
    return seed & _MASK32, seed >> 32


def philox4x32_torch(
    c0: torch.Tensor,
    c1: torch.Tensor,
    c2: torch.Tensor,
    c3: torch.Tensor,
    k0: int,
    k1: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Philox4x32-10 on int64 tensors whose values lie in ``[0, 2**32)``.

    The 32x32 -> 64-bit products are formed in int64; they may wrap past ``2**63`` but the low 64
    bits, which are all the algorithm reads, are exact in two's complement.
    """
    for round_index in range(PHILOX_ROUNDS):
        if round_index:
            k0 = (k0 + PHILOX_W0) & _MASK32
            k1 = (k1 + PHILOX_W1) & _MASK32
        prod0 = c0 * PHILOX_M0
        prod1 = c2 * PHILOX_M1
        hi0 = (prod0 >> 32) & _MASK32
        lo0 = prod0 & _MASK32
        hi1 = (prod1 >> 32) & _MASK32
        lo1 = prod1 & _MASK32
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def philox4x32(counters: np.ndarray, key: np.ndarray | tuple[int, int]) -> np.ndarray:
    """Philox4x32-10 of ``counters`` (shape ``(n, 4)``, uint32) under ``key`` (two uint32 words).

    Returns a ``(n, 4)`` uint32 array. Matches Random123's ``philox4x32`` with 10 rounds.
    """
    counters = np.asarray(counters)
    if counters.ndim != 2 or counters.shape[1] != 4:
        raise ValueError(f"counters must have shape (n, 4), got {counters.shape}")
    if counters.dtype != np.uint32:
        raise TypeError(f"counters must be uint32, got {counters.dtype}")
    key_words = np.asarray(key, dtype=np.uint64).reshape(-1)
    if key_words.shape != (2,):
        raise ValueError(f"key must hold two uint32 words, got shape {np.shape(key)}")
    words = torch.from_numpy(counters.astype(np.int64))
    out = philox4x32_torch(
        words[:, 0], words[:, 1], words[:, 2], words[:, 3], int(key_words[0]), int(key_words[1])
    )
    return torch.stack(out, dim=1).numpy().astype(np.uint32)


def stream_words(
    numel: int, seed: int, offset: int = 0, device: torch.device | str | None = None
) -> torch.Tensor:
    """The stream words ``u`` of elements ``0 .. numel-1`` at ``offset``, as int64 in [0, 2**32)."""
    if numel < 0:
        raise ValueError(f"numel must be >= 0, got {numel}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    device = torch.device("cpu") if device is None else torch.device(device)
    if numel == 0:
        return torch.empty(0, dtype=torch.int64, device=device)
    first_group = offset // 4
    last_group = (offset + numel - 1) // 4
    groups = torch.arange(first_group, last_group + 1, dtype=torch.int64, device=device)
    zeros = torch.zeros_like(groups)
    k0, k1 = split_seed(seed)
    words = torch.stack(philox4x32_torch(groups & _MASK32, groups >> 32, zeros, zeros, k0, k1), 1)
    start = offset - 4 * first_group
    return words.reshape(-1)[start : start + numel]


def stream_words_at(indices: torch.Tensor, seed: int, offset: int = 0) -> torch.Tensor:
    """The stream words of arbitrary element ``indices`` (any shape, int64, >= 0), int64 valued.

    Only the counters the indices need are evaluated, so a mask over a huge index space (e.g. the
    word types of a vocabulary) costs as much as the number of indices asked for."""
    j = indices.to(torch.int64) + offset
    groups = j >> 2
    zeros = torch.zeros_like(groups)
    k0, k1 = split_seed(seed)
    words = torch.stack(philox4x32_torch(groups & _MASK32, groups >> 32, zeros, zeros, k0, k1), -1)
    return words.gather(-1, (j & 3).unsqueeze(-1)).squeeze(-1)


def keep_threshold(p: float) -> int:
    """The keep threshold ``T = round(p * 2**32)`` for drop probability ``p`` in [0, 1]."""
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    return round(p * 2.0**32)


def keep_mask(
    shape: tuple[int, ...] | torch.Size,
    p: float,
    seed: int,
    offset: int = 0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Reference keep mask (bool) of ``shape``: element kept iff its stream word ``u >= T(p)``."""
    numel = math.prod(shape)
    words = stream_words(numel, seed, offset, device)
    return (words >= keep_threshold(p)).reshape(tuple(shape))


def uniform(
    shape: tuple[int, ...] | torch.Size,
    seed: int,
    offset: int = 0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Uniform float32 variates in ``[0, 1)``: ``(u >> 8) * 2**-24`` of each element's word."""
    numel = math.prod(shape)
    words = stream_words(numel, seed, offset, device)
    return ((words >> 8).to(torch.float32) * 2.0**-24).reshape(tuple(shape))


def normal(
    shape: tuple[int, ...] | torch.Size,
    seed: int,
    offset: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal variates by Box-Muller; variate ``k`` consumes stream words ``2k, 2k+1``.

    ``offset`` counts variates (so a shard starting at variate ``s`` passes ``offset=s``).
    Computed in float64 and rounded to ``dtype``.
    """
    numel = math.prod(shape)
    words = stream_words(2 * numel, seed, 2 * offset, device).reshape(-1, 2)
    u1 = ((words[:, 0] >> 8) + 1).to(torch.float64) * 2.0**-24
    u2 = (words[:, 1] >> 8).to(torch.float64) * 2.0**-24
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2.0 * math.pi) * u2)
    return z.to(dtype).reshape(tuple(shape))


#: ``draw_seed_tensor(generator=None)``: draw one 64-bit seed from ``generator`` (default: the
#: default CPU generator) as a new 0-d int64 CPU tensor (what a traced graph records); one draw
#: consumes the generator exactly as :func:`draw_seed` does. ``torch.randint`` draws as
#: ``empty(()).random_(low, high)`` does (same value, same generator step); bound with
#: ``functools.partial``, a C callable, so a functional's draw enters no Python function.
draw_seed_tensor = functools.partial(torch.randint, -(2**63), 2**63 - 1, (), dtype=torch.int64)


# One 0-d buffer per thread for draw_seed: a draw then allocates nothing (concurrent threads
# never share one, so none reads another's seed).
_draw_buffers = threading.local()


def draw_seed(generator: torch.Generator | None = None) -> int:
    """Draw one 64-bit seed (a signed int64 value) from ``generator`` or the default generator:
    the value :func:`draw_seed_tensor` would give, advancing the generator by the same step."""
    buffer = getattr(_draw_buffers, "seed", None)
    if buffer is None:
        # A normal tensor even when the first draw happens in inference mode: an inference
        # tensor could not be written by a later draw outside it.
        with torch.inference_mode(False):
            buffer = _draw_buffers.seed = torch.empty((), dtype=torch.int64)
    return buffer.random_(-(2**63), 2**63 - 1, generator=generator).item()


def derive_seed(base_seed: int, index: int) -> int:
    """The ``index``-th child seed of ``base_seed``: stream words ``2*index, 2*index+1`` as a signed
    int64 (low word first). Used for deterministic per-call seeds (Monte-Carlo sample streams)."""
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    low, high = (int(w) for w in stream_words(2, base_seed, 2 * index))
    value = low | (high << 32)
    return value - (1 << 64) if value >= (1 << 63) else value
