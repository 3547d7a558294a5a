"""Seeds of one call (``dropkit.ops.resolve_stream``): a Python int on the eager route, a 0-d
int64 tensor wherever something traces or fakes the call, the same value either way."""

from __future__ import annotations

import threading

import pytest
import torch

from dropkit import rng
from dropkit.ops import resolve_stream


def _draw_both(generator_seed: int) -> tuple[int, torch.Tensor]:
    eager = resolve_stream(torch.ones(3), torch.Generator().manual_seed(generator_seed), None, 0, 3)
    traced = resolve_stream(
        torch.ones(3, device="meta"), torch.Generator().manual_seed(generator_seed), None, 0, 3
    )
    return eager[0], traced[0]


def test_eager_seeds_are_ints_traced_ones_tensors_of_the_same_value():
    eager, traced = _draw_both(5)
    assert type(eager) is int
    assert isinstance(traced, torch.Tensor) and traced.dtype == torch.int64 and traced.dim() == 0
    assert eager == int(traced)

    torch.manual_seed(9)
    default_eager, _ = resolve_stream(torch.ones(3), None, None, 0, 3)
    torch.manual_seed(9)
    default_traced, _ = resolve_stream(torch.ones(3, device="meta"), None, None, 0, 3)
    assert type(default_eager) is int and default_eager == int(default_traced)


@pytest.mark.parametrize("seed", [7, 2**64 - 1, -(2**63)])
def test_explicit_seeds_keep_their_value_on_both_routes(seed):
    eager, _ = resolve_stream(torch.ones(3), None, seed, 0, 3)
    traced, _ = resolve_stream(torch.ones(3, device="meta"), None, seed, 0, 3)
    assert eager == seed
    assert int(traced) % 2**64 == seed % 2**64  # the tensor holds the same 64 bits
    given = resolve_stream(torch.ones(3), None, torch.tensor(7), 0, 3)[0]
    assert isinstance(given, torch.Tensor) and int(given) == 7  # a tensor seed stays a tensor


def test_draw_seed_is_draw_seed_tensor_and_survives_inference_mode():
    generator, twin = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    with torch.inference_mode():
        first = rng.draw_seed(generator)  # a first draw here must not make the buffer unwritable
    assert first == int(rng.draw_seed_tensor(twin))
    for _ in range(3):
        assert rng.draw_seed(generator) == int(rng.draw_seed_tensor(twin))
    assert torch.equal(generator.get_state(), twin.get_state())


def test_threads_drawing_at_once_each_get_their_own_seed():
    expected = [int(rng.draw_seed_tensor(torch.Generator().manual_seed(s))) for s in range(8)]
    results: dict[int, list[int]] = {}
    barrier = threading.Barrier(8)

    def worker(s: int) -> None:
        generator = torch.Generator().manual_seed(s)
        barrier.wait()
        results[s] = [rng.draw_seed(generator) for _ in range(200)]

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[s][0] for s in range(8)] == expected
    for s in range(8):
        twin = torch.Generator().manual_seed(s)
        assert results[s] == [int(rng.draw_seed_tensor(twin)) for _ in range(200)]
