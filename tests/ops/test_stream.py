"""Seeds of one call (``dropkit.ops.resolve_stream``): always a 0-d int64 CPU tensor, the
operators' form, eager or traced; the default draw advances torch's generator as ``random_``."""

from __future__ import annotations

import threading

import pytest
import torch

from dropkit import rng
from dropkit.ops import resolve_stream


def test_seeds_are_0d_int64_tensors_drawn_from_the_generator():
    seed, offset = resolve_stream(torch.Generator().manual_seed(5), None, 2, 3)
    assert seed.dtype == torch.int64 and seed.dim() == 0 and seed.device.type == "cpu"
    assert offset == 2
    assert int(seed) == rng.draw_seed(torch.Generator().manual_seed(5))
    torch.manual_seed(9)
    default, _ = resolve_stream(None, None, 0, 3)
    torch.manual_seed(9)
    assert int(default) == rng.draw_seed()


@pytest.mark.parametrize("seed", [7, 2**64 - 1, -(2**63)])
def test_explicit_seeds_keep_their_64_bits(seed):
    tensor, _ = resolve_stream(None, seed, 0, 3)
    assert int(tensor) % 2**64 == seed % 2**64
    given = torch.tensor(7)
    assert int(resolve_stream(None, given, 0, 3)[0]) == 7


def test_seed_and_generator_together_are_refused():
    with pytest.raises(ValueError, match="either seed or generator"):
        resolve_stream(torch.Generator(), 3, 0, 3)


def test_draw_seed_is_draw_seed_tensor_and_survives_inference_mode():
    generator, twin = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    with torch.inference_mode():
        first = rng.draw_seed(generator)  # a first draw here must not make the buffer unwritable
    assert first == int(rng.draw_seed_tensor(generator=twin))
    for _ in range(3):
        assert rng.draw_seed(generator) == int(rng.draw_seed_tensor(generator=twin))
    assert torch.equal(generator.get_state(), twin.get_state())


def test_threads_drawing_at_once_each_get_their_own_seed():
    expected = [
        int(rng.draw_seed_tensor(generator=torch.Generator().manual_seed(s))) for s in range(8)
    ]
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
        assert results[s] == [int(rng.draw_seed_tensor(generator=twin)) for _ in range(200)]
