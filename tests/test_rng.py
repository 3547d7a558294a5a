"""The random stream: Philox known answers, an independent cross-check, layout and statistics."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dropkit import rng

MASK = 0xFFFFFFFF


def philox_plain(counter, key):
    """Philox4x32-10 written independently from the package, in plain Python ints."""
    c = list(counter)
    k0, k1 = key
    for r in range(10):
        if r:
            k0 = (k0 + 0x9E3779B9) & MASK
            k1 = (k1 + 0xBB67AE85) & MASK
        p0 = 0xD2511F53 * c[0]
        p1 = 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k0, p1 & MASK, (p0 >> 32) ^ c[3] ^ k1, p0 & MASK]
    return c


KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((MASK,) * 4, (MASK, MASK), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize("counter,key,expected", KNOWN_ANSWERS)
def test_known_answer_vectors(counter, key, expected):
    out = rng.philox4x32(np.array([counter], dtype=np.uint32), np.array(key, dtype=np.uint32))
    assert tuple(int(v) for v in out[0]) == expected
    assert tuple(philox_plain(counter, key)) == expected


def test_cross_check_against_independent_implementation():
    gen = np.random.default_rng(1234)
    counters = gen.integers(0, 2**32, size=(3000, 4), dtype=np.uint64).astype(np.uint32)
    keys = gen.integers(0, 2**32, size=(3000, 2), dtype=np.uint64).astype(np.uint32)
    for counter, key in zip(counters[:3000:10], keys[:3000:10]):
        got = rng.philox4x32(counter[None], key)[0]
        want = philox_plain([int(c) for c in counter], [int(k) for k in key])
        assert [int(v) for v in got] == want
    # one key, many counters in one vectorised call
    key = keys[0]
    got = rng.philox4x32(counters, key)
    want = [philox_plain([int(c) for c in row], [int(k) for k in key]) for row in counters]
    np.testing.assert_array_equal(got, np.array(want, dtype=np.uint32))


def test_philox_argument_errors():
    with pytest.raises(ValueError, match="shape"):
        rng.philox4x32(np.zeros((3, 3), np.uint32), (0, 0))
    with pytest.raises(TypeError, match="uint32"):
        rng.philox4x32(np.zeros((3, 4), np.int64), (0, 0))
    with pytest.raises(ValueError, match="key"):
        rng.philox4x32(np.zeros((3, 4), np.uint32), (0, 0, 0))


@given(
    numel=st.integers(0, 300),
    offset=st.integers(0, 2**40),
    seed=st.integers(-(2**63), 2**63 - 1),
)
@settings(max_examples=60, deadline=None)
def test_stream_layout_matches_the_definition(numel, offset, seed):
    words = rng.stream_words(numel, seed, offset)
    k0, k1 = rng.split_seed(seed)
    for i in range(0, numel, max(1, numel // 7)):
        j = i + offset
        block = philox_plain((j // 4 & MASK, j // 4 >> 32, 0, 0), (k0, k1))
        assert int(words[i]) == block[j % 4]


def test_stream_is_consistent_under_sharding():
    whole = rng.stream_words(1001, seed=7)
    parts = [rng.stream_words(n, seed=7, offset=s) for s, n in [(0, 333), (333, 5), (338, 663)]]
    assert torch.equal(torch.cat(parts), whole)


def test_split_seed_wraps_negative_seeds():
    assert rng.split_seed(-1) == (MASK, MASK)
    assert rng.split_seed(2**32 + 5) == (5, 1)


@pytest.mark.parametrize(
    "p,expected", [(0.0, 0), (1.0, 2**32), (0.5, 2**31), (0.25, 2**30), (1e-12, 0)]
)
def test_keep_threshold(p, expected):
    assert rng.keep_threshold(p) == expected


@pytest.mark.parametrize("p", [-0.1, 1.5, math.nan])
def test_keep_threshold_rejects_out_of_range(p):
    with pytest.raises(ValueError, match="between 0 and 1"):
        rng.keep_threshold(p)


@pytest.mark.parametrize("p", [0.01, 0.1, 0.5, 0.8, 0.99])
def test_keep_rate_within_five_sigma(p):
    n = 1 << 20
    kept = int(rng.keep_mask((n,), p, seed=2024).sum())
    mean = n * (1 - p)
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(kept - mean) < 5 * sigma


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a = a.double() - a.double().mean()
    b = b.double() - b.double().mean()
    return float((a * b).sum() / torch.sqrt((a * a).sum() * (b * b).sum()))


def test_no_correlation_between_neighbours_seeds_and_calls():
    n = 1 << 18
    bound = 5 / math.sqrt(n)
    mask = rng.keep_mask((n,), 0.5, seed=11)
    assert abs(_correlation(mask[:-1], mask[1:])) < bound  # neighbouring elements
    assert abs(_correlation(mask[:-4], mask[4:])) < bound  # neighbouring counters
    other_seed = rng.keep_mask((n,), 0.5, seed=12)
    assert abs(_correlation(mask, other_seed)) < bound  # seeds s and s + 1
    torch.manual_seed(0)
    s1, s2 = rng.draw_seed(), rng.draw_seed()
    assert s1 != s2
    calls = [rng.keep_mask((n,), 0.5, seed=s) for s in (s1, s2)]
    assert abs(_correlation(*calls)) < bound  # consecutive calls


def test_uniform_range_and_moments():
    u = rng.uniform((1 << 18,), seed=3)
    assert u.dtype == torch.float32
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0
    assert abs(float(u.mean()) - 0.5) < 5 * math.sqrt(1 / 12 / u.numel())
    words = rng.stream_words(10, seed=3)
    assert torch.equal(u[:10], (words >> 8).float() * 2.0**-24)


def test_normal_moments_and_offsets():
    z = rng.normal((1 << 18,), seed=5, dtype=torch.float64)
    n = z.numel()
    assert abs(float(z.mean())) < 5 / math.sqrt(n)
    assert abs(float(z.var()) - 1.0) < 5 * math.sqrt(2 / n)
    assert torch.isfinite(z).all()
    tail = rng.normal((100,), seed=5, offset=1000, dtype=torch.float64)
    assert torch.equal(tail, z[1000:1100])


def test_draw_seed_follows_manual_seed_and_generators():
    torch.manual_seed(123)
    a = [rng.draw_seed() for _ in range(3)]
    torch.manual_seed(123)
    assert a == [rng.draw_seed() for _ in range(3)]
    g1 = torch.Generator().manual_seed(9)
    g2 = torch.Generator().manual_seed(9)
    assert rng.draw_seed(g1) == rng.draw_seed(g2)


def test_derive_seed_is_deterministic_and_distinct():
    seeds = [rng.derive_seed(42, k) for k in range(100)]
    assert seeds == [rng.derive_seed(42, k) for k in range(100)]
    assert len(set(seeds)) == 100
    assert all(-(2**63) <= s < 2**63 for s in seeds)
    with pytest.raises(ValueError, match="index"):
        rng.derive_seed(1, -1)


def test_stream_words_at_matches_stream():
    idx = torch.tensor([[0, 5, 1023], [7, 7, 3]])
    words = rng.stream_words(1024, seed=4, offset=9)
    assert torch.equal(rng.stream_words_at(idx, 4, 9), words[idx])


@pytest.mark.parametrize("seed", [2**64, 2**70, -(2**63) - 1, -(2**80)])
def test_split_seed_refuses_seeds_outside_64_bits(seed):
    with pytest.raises(ValueError) as error:
        rng.split_seed(seed)
    assert str(seed) in str(error.value) and "[-2**63, 2**64)" in str(error.value)


@pytest.mark.parametrize("seed", [1.0, 1.7, True, np.bool_(True), "5", torch.tensor(True),
                                  torch.tensor(2.0), torch.tensor([1, 2])])  # fmt: skip
def test_split_seed_refuses_non_integers(seed):
    with pytest.raises(TypeError, match="seed must be an integer"):
        rng.split_seed(seed)


def test_split_seed_takes_the_whole_64_bit_range_and_integer_types():
    assert rng.split_seed(2**64 - 1) == rng.split_seed(-1) == (MASK, MASK)
    assert rng.split_seed(-(2**63)) == rng.split_seed(2**63) == (0, 1 << 31)
    assert rng.split_seed(np.int64(7)) == rng.split_seed(torch.tensor(7)) == (7, 0)
    assert rng.check_seed(np.uint64(2**64 - 1)) == 2**64 - 1


def test_seed_draws_follow_the_generator_as_random_does():
    """A drawn seed is the int64 that ``random_(-2**63, 2**63 - 1)`` gives, and advances the
    generator by the same step: masks after ``torch.manual_seed`` stay those of earlier releases."""
    generator = torch.Generator().manual_seed(11)
    expected_gen = torch.Generator().manual_seed(11)
    for _ in range(3):
        drawn = rng.draw_seed_tensor(generator=generator)
        expected = torch.empty((), dtype=torch.int64).random_(
            -(2**63), 2**63 - 1, generator=expected_gen
        )
        assert drawn.dtype == torch.int64 and drawn.shape == () and int(drawn) == int(expected)
    assert torch.equal(generator.get_state(), expected_gen.get_state())
