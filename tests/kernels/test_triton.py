"""The Triton backend matches the reference bit for bit, run on CPU tensors by Triton's interpreter.

There is no GPU in CI, so every kernel runs under ``TRITON_INTERPRET=1``. Triton reads that setting
when ``@triton.jit`` decorates a function (its own ``tl.philox`` & co. when ``triton`` is first
imported); :mod:`dropkit.kernels.triton_gpu` decorates its kernels on first use and again whenever
the setting changed, so the module fixture below may set it although other tests imported Triton
earlier. Compiled code is checked too, without a GPU: the kernels are compiled for sm_90 and the PTX
and SASS are read (no fused multiply-add, vectorised accesses).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

triton = pytest.importorskip("triton", reason="triton is not installed (pip install triton)")
tl = pytest.importorskip("triton.language")

from dropkit import rng  # noqa: E402
from dropkit.kernels import reference  # noqa: E402
from dropkit.kernels import triton_gpu as tg  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# The interpreter computes with numpy, which warns when Inf/NaN/overflowing inputs (tested on
# purpose) meet a multiply or a narrowing cast.
pytestmark = pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
# (numel, offset): single elements, odd sizes and offsets, exactly one program (1024 elements),
# one element past it, a counter index crossing 2**32 (its high word changes inside the tensor),
# and the end of the int64 stream.
CASES = [
    (1, 0),
    (13, 3),
    (1024, 0),
    (1025, 1),
    (3001, 6),
    (2050, 4 * (2**32 - 1) - 5),
    (777, 2**63 - 1 - 777),
]


@pytest.fixture(autouse=True, scope="module")
def _interpret():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRITON_INTERPRET", "1")
        yield


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def assert_same_bits(got: torch.Tensor, want: torch.Tensor) -> None:
    """Identical bits, except that NaN payloads are the hardware's choice (numpy's here, torch's
    vectorised code in the reference): a NaN must stay a NaN in the same place."""
    assert got.dtype == want.dtype and got.shape == want.shape
    nan = torch.isnan(want)
    assert torch.equal(torch.isnan(got), nan)
    assert torch.equal(bits(got)[~nan], bits(want)[~nan])


def special_values(x: torch.Tensor) -> torch.Tensor:
    """``x`` with NaN, +-Inf, +-0, a subnormal and the largest finite value of its dtype."""
    x = x.clone()
    info = torch.finfo(x.dtype)
    values = [math.nan, math.inf, -math.inf, 0.0, -0.0, info.smallest_normal / 4, info.max, -1.5]
    for k, v in enumerate(values[: x.numel()]):
        x.view(-1)[(7 * k) % x.numel()] = v
    return x


# ------------------------------------------------------------------------------------------------
# The stream: Random123 known answers, random (counter, key) pairs, stream_words.
# ------------------------------------------------------------------------------------------------

KAT = [  # Random123 kat_vectors, philox4x32 with 10 rounds: counter, key -> output
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


def _philox_test_kernel(c_ptr, k_ptr, out_ptr, N: tl.constexpr):
    row = tl.arange(0, N)
    words = [tl.load(c_ptr + 4 * row + lane) for lane in tl.static_range(4)]
    k0 = tl.load(k_ptr + 2 * row)
    k1 = tl.load(k_ptr + 2 * row + 1)
    w0, w1, w2, w3 = philox(words[0], words[1], words[2], words[3], k0, k1)
    tl.store(out_ptr + 4 * row, w0.to(tl.int64))
    tl.store(out_ptr + 4 * row + 1, w1.to(tl.int64))
    tl.store(out_ptr + 4 * row + 2, w2.to(tl.int64))
    tl.store(out_ptr + 4 * row + 3, w3.to(tl.int64))


def triton_philox(counters: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """The backend's Philox helper on arbitrary counters (n, 4) and keys (n, 2), n a power of 2."""
    global philox
    philox = tg._load()["_philox"]  # the kernel below finds the helper as a global, as Triton does
    kernel = triton.jit(_philox_test_kernel)
    n = counters.shape[0]
    out = torch.empty(n, 4, dtype=torch.int64)
    c = torch.from_numpy(counters.astype(np.uint32).view(np.int32).copy())
    k = torch.from_numpy(keys.astype(np.uint32).view(np.int32).copy())
    kernel[(1,)](c.view(torch.uint32), k.view(torch.uint32), out, N=n)
    return out.numpy().astype(np.uint32)


def test_philox_known_answers():
    counters = np.array([c for c, _, _ in KAT] + [(0, 0, 0, 0)], dtype=np.uint32)
    keys = np.array([k for _, k, _ in KAT] + [(0, 0)], dtype=np.uint32)
    got = triton_philox(counters, keys)
    for row, (_, _, want) in enumerate(KAT):
        assert tuple(int(w) for w in got[row]) == want


def plain_philox(counter: tuple[int, ...], key: tuple[int, int]) -> tuple[int, ...]:
    """Philox4x32-10 in plain Python ints: a second, independent implementation."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for _ in range(10):
        p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = (
            (p1 >> 32) ^ c1 ^ k0,
            p1 & 0xFFFFFFFF,
            (p0 >> 32) ^ c3 ^ k1,
            p0 & 0xFFFFFFFF,
        )
        k0, k1 = (k0 + 0x9E3779B9) & 0xFFFFFFFF, (k1 + 0xBB67AE85) & 0xFFFFFFFF
    return c0, c1, c2, c3


def test_philox_random_pairs_match_an_independent_implementation():
    gen = np.random.default_rng(2026)
    counters = gen.integers(0, 2**32, size=(4096, 4), dtype=np.uint64).astype(np.uint32)
    keys = gen.integers(0, 2**32, size=(4096, 2), dtype=np.uint64).astype(np.uint32)
    got = triton_philox(counters, keys)
    for row in range(4096):
        want = plain_philox(tuple(int(c) for c in counters[row]), tuple(int(k) for k in keys[row]))
        assert tuple(int(w) for w in got[row]) == want, row


def test_stream_words_first_word_is_the_known_answer():
    assert int(tg.stream_words(1, 0, 0, "cpu")[0]) == 0x6627E8D5
    assert [int(w) for w in tg.stream_words(4, 0, 0, "cpu")] == list(KAT[0][2])


@pytest.mark.parametrize("numel,offset", CASES + [(0, 5)])
@pytest.mark.parametrize("seed", [0, -1, 2**40 + 7, -(2**63), 2**64 - 1])
def test_stream_words_match_reference(numel, offset, seed):
    got = tg.stream_words(numel, seed, offset, "cpu")
    assert got.dtype == torch.int64
    assert torch.equal(got, rng.stream_words(numel, seed, offset))


def test_same_philox_as_triton_itself():
    # tl.philox, Triton's own generator, gives the same words (it must be interpretable, so Triton
    # has to be imported with TRITON_INTERPRET=1 already set: a fresh process).
    script = """
import os, torch, triton, triton.language as tl
from dropkit import rng

@triton.jit
def k(out_ptr, seed, N: tl.constexpr):
    j = tl.arange(0, N).to(tl.int64) + (2**34 + 3)
    z = tl.full(j.shape, 0, tl.uint32)
    w0, w1, w2, w3 = tl.philox(seed, (j & 0xFFFFFFFF).to(tl.uint32), (j >> 32).to(tl.uint32), z, z)
    for lane, w in enumerate((w0, w1, w2, w3)):
        tl.store(out_ptr + 4 * tl.arange(0, N) + lane, w.to(tl.int64))

out = torch.empty(64 * 4, dtype=torch.int64)
k[(1,)](out, -123456789012345, N=64)
assert torch.equal(out, rng.stream_words(256, -123456789012345, 4 * (2**34 + 3))), "differ"
print("same")
"""
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT / "src"))
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "same"


# ------------------------------------------------------------------------------------------------
# apply_keep_mask
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("numel,offset", CASES)
@pytest.mark.parametrize("in_place", [False, True])
def test_apply_keep_mask_bit_identical(dtype, numel, offset, in_place):
    x = special_values((torch.randn(numel) * 100).to(dtype))
    threshold = rng.keep_threshold(0.37)
    scale = 1 / 0.63  # not exact in float32: the multiplier is rounded once, as the reference does
    want = reference.apply_keep_mask(x, 12345, offset, threshold, scale)
    if in_place:
        work = x.clone()
        got = tg.apply_keep_mask(work, 12345, offset, threshold, scale, out=work)
        assert got is work
    else:
        got = tg.apply_keep_mask(x, 12345, offset, threshold, scale)
    assert_same_bits(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_apply_keep_mask_into_out_and_any_shape(dtype):
    x = (torch.randn(3, 5, 7) * 10).to(dtype)
    out = torch.empty_like(x)
    got = tg.apply_keep_mask(x, -5, 9, rng.keep_threshold(0.5), 2.0, out=out)
    assert got is out
    assert_same_bits(out, reference.apply_keep_mask(x, -5, 9, rng.keep_threshold(0.5), 2.0))


@pytest.mark.parametrize("p", [0.0, 1.0, 2**-33, 1 - 2**-33])
def test_apply_keep_mask_extreme_thresholds(p):
    x = torch.randn(2049, dtype=torch.float64)
    threshold = rng.keep_threshold(p)
    got = tg.apply_keep_mask(x, 7, 1, threshold, 1.0 / 0.7)
    assert_same_bits(got, reference.apply_keep_mask(x, 7, 1, threshold, 1.0 / 0.7))
    if p == 0.0:  # keeps everything (times the scale)
        assert torch.count_nonzero(got) == torch.count_nonzero(x)
    if p == 1.0:  # threshold 2**32: keeps nothing
        assert torch.count_nonzero(got) == 0


def test_float64_scale_is_not_rounded_to_float32():
    # A scale travelling as a float32 (Triton's default for a Python float) would change these.
    x = torch.ones(64, dtype=torch.float64)
    scale = 1 / 0.7
    got = tg.apply_keep_mask(x, 3, 0, 0, scale)
    assert torch.all(got == scale)
    assert float(torch.tensor(scale, dtype=torch.float32)) != scale


@settings(max_examples=12, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    numel=st.integers(0, 3000),
    offset=st.one_of(st.integers(0, 10_000), st.integers(2**32, 2**63 - 1 - 3000)),
    seed=st.integers(-(2**63), 2**64 - 1),
    threshold=st.integers(0, 2**32),
    scale=st.floats(0.5, 1e4),
)
def test_apply_keep_mask_property(dtype, numel, offset, seed, threshold, scale):
    x = (torch.randn(numel) * 50).to(dtype)
    want = reference.apply_keep_mask(x, seed, offset, threshold, scale)
    assert_same_bits(tg.apply_keep_mask(x, seed, offset, threshold, scale), want)


# ------------------------------------------------------------------------------------------------
# broadcast masks and alpha dropout's affine map
# ------------------------------------------------------------------------------------------------

MASKS = [
    ((4, 6, 5, 7), (4, 6, 1, 1)),  # channel dropout, channels first
    ((4, 5, 7, 6), (4, 1, 1, 6)),  # channels last
    ((9, 4, 6), (1, 4, 6)),  # locked dropout
    ((4, 3, 5, 6), (4, 1, 1, 1)),  # drop-path
    ((4, 3, 5, 6), (1, 1, 1, 1)),
    ((4, 5, 6, 7), (4, 1, 6, 1)),  # broadcast along two separate groups
    ((3, 4, 5), (3, 4, 5)),  # x's own shape
]
AFFINE = (1.3, 0.4, -0.7)  # a, kept_shift, dropped_value


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,mask_shape", MASKS)
@pytest.mark.parametrize("target", ["new", "out", "x"])
def test_broadcast_mask_bit_identical(dtype, shape, mask_shape, target):
    x = special_values((torch.randn(shape) * 100).to(dtype))
    threshold = rng.keep_threshold(0.37)
    for offset in (0, 5, 2**63 - 1 - math.prod(mask_shape)):
        want = reference.apply_keep_mask(x, 99, offset, threshold, 1 / 0.63, None, mask_shape)
        want_affine = reference.apply_keep_affine(x, 99, offset, threshold, *AFFINE, None,
                                                  mask_shape)  # fmt: skip
        for fn, args, expected in [
            (tg.apply_keep_mask, (threshold, 1 / 0.63), want),
            (tg.apply_keep_affine, (threshold, *AFFINE), want_affine),
        ]:
            work = x.clone()
            out = {"new": None, "out": torch.empty_like(x), "x": work}[target]
            got = fn(work, 99, offset, *args, out, mask_shape)
            assert out is None or got is out
            assert_same_bits(got, expected)


@pytest.mark.parametrize("threshold", [0, 2**32])
def test_affine_map_extreme_thresholds(threshold):
    x = special_values(torch.randn(6, 5))
    for mask_shape in (None, (6, 1)):
        want = reference.apply_keep_affine(x, 3, 0, threshold, *AFFINE, None, mask_shape)
        assert_same_bits(tg.apply_keep_affine(x, 3, 0, threshold, *AFFINE, None, mask_shape), want)


@settings(max_examples=12, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    data=st.data(),
    seed=st.integers(-(2**63), 2**64 - 1),
    threshold=st.integers(0, 2**32),
)
def test_broadcast_mask_property(dtype, shape, data, seed, threshold):
    broadcast = data.draw(st.lists(st.booleans(), min_size=len(shape), max_size=len(shape)))
    mask_shape = tuple(1 if b else size for size, b in zip(shape, broadcast))
    x = (torch.randn(shape) * 50).to(dtype)
    want = reference.apply_keep_mask(x, seed, 3, threshold, 2.5, None, mask_shape)
    assert_same_bits(tg.apply_keep_mask(x, seed, 3, threshold, 2.5, None, mask_shape), want)
    want = reference.apply_keep_affine(x, seed, 3, threshold, *AFFINE, None, mask_shape)
    assert_same_bits(tg.apply_keep_affine(x, seed, 3, threshold, *AFFINE, None, mask_shape), want)


@pytest.mark.parametrize(
    "shape,mask_shape,pattern",
    [
        ((8, 16, 7, 7), (8, 16, 1, 1), (128, 49, 1)),  # channel dropout, channels first
        ((8, 7, 7, 16), (8, 1, 1, 16), (8, 49, 16)),  # channels last
        ((8, 3, 5, 6), (8, 1, 1, 1), (8, 90, 1)),  # drop-path
        ((9, 4, 6), (1, 4, 6), (1, 9, 24)),  # locked dropout (T, N, C)
        ((4, 9, 6), (4, 1, 6), (4, 9, 6)),  # locked dropout, batch first
        ((4, 1, 5, 6), (4, 1, 1, 6), (4, 5, 6)),  # size-1 dimensions belong to either kind
        ((3, 4, 5), (3, 4, 5), (60, 1, 1)),  # x's own shape
        ((3, 4, 5), (1, 1, 1), (1, 60, 1)),
        ((1, 1), (1, 1), (1, 1, 1)),
        ((4, 5, 6, 7), (4, 1, 6, 1), None),  # two broadcast groups: no one-pass kernel
    ],
)
def test_broadcast_pattern(shape, mask_shape, pattern):
    assert tg.broadcast_pattern(shape, mask_shape) == pattern


@pytest.mark.parametrize("a,b,c", [(1, 1, 1), (128, 49, 1), (8, 49, 16), (1, 9, 24), (2, 5000, 1),
                                   (3, 2, 300), (10**6, 3, 1), (1, 2, 10**6)])  # fmt: skip
def test_broadcast_blocks_are_powers_of_two_within_the_tile(a, b, c):
    bi, bj, bk = tg.broadcast_blocks(a, b, c)
    for block, size in ((bi, a), (bj, b), (bk, c)):
        assert block & (block - 1) == 0 and 1 <= block <= max(1, 2 * size - 1)
    assert bi * bj * bk <= tg._BROADCAST_TILE and bk <= tg._BROADCAST_K


def _launched(monkeypatch) -> list[str]:
    names: list[str] = []
    original = tg._launch

    def spy(kernel_name, *args, **kwargs):
        names.append(kernel_name)
        return original(kernel_name, *args, **kwargs)

    monkeypatch.setattr(tg, "_launch", spy)
    return names


@pytest.mark.parametrize("shape,mask_shape", MASKS)
@pytest.mark.parametrize("affine", [False, True])
def test_broadcast_mask_is_one_kernel_launch(shape, mask_shape, affine, monkeypatch):
    # One pass over x: a single launch, and no torch operation finishing the job.
    x = torch.randn(shape)
    names = _launched(monkeypatch)
    one_pass = tg.broadcast_pattern(shape, mask_shape) is not None
    if one_pass:
        monkeypatch.setattr(reference, "affine_from_words", None)  # would raise if called
    if affine:
        tg.apply_keep_affine(x, 1, 3, rng.keep_threshold(0.3), *AFFINE, None, mask_shape)
    else:
        tg.apply_keep_mask(x, 1, 3, rng.keep_threshold(0.3), 2.0, None, mask_shape)
    if not one_pass:  # two broadcast groups: the mask from a kernel, torch finishes
        assert names == ["_words_kernel" if affine else "_keep_mask_kernel"]
    elif tuple(mask_shape) == tuple(shape):
        assert names == ["_keep_affine_kernel" if affine else "_keep_mask_kernel"]
    else:
        assert names == ["_broadcast_kernel"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape,mask_shape",
    [
        ((2, 5000), (2, 1)),  # drop-path: broadcast rows longer than the tile
        ((3, 2, 300), (3, 1, 300)),  # a trailing group wider than BLOCK_K
        ((300, 3), (300, 1)),  # many short rows per program (channel dropout, 1 x 3 maps)
        ((5, 3, 2, 7), (5, 1, 1, 7)),  # channels last, odd channel count
        ((7, 3, 5), (1, 3, 5)),  # locked, c = 15
    ],
)
@pytest.mark.parametrize("offset", [0, 1, 2, 3, 4 * (2**32 - 1) - 2])
def test_broadcast_kernel_tiles_and_offsets(dtype, shape, mask_shape, offset):
    x = special_values((torch.randn(shape) * 100).to(dtype))
    threshold = rng.keep_threshold(0.5)
    want = reference.apply_keep_mask(x, -7, offset, threshold, 1 / 0.5, None, mask_shape)
    assert_same_bits(tg.apply_keep_mask(x, -7, offset, threshold, 1 / 0.5, None, mask_shape), want)
    want = reference.apply_keep_affine(x, -7, offset, threshold, *AFFINE, None, mask_shape)
    got = tg.apply_keep_affine(x, -7, offset, threshold, *AFFINE, None, mask_shape)
    assert_same_bits(got, want)


def test_broadcast_kernel_with_64_bit_indices(monkeypatch):
    # Launches over 2**31 elements index in 64 bits (WIDE); same bits, forced on a small tensor.
    original = tg._launch

    def wide(kernel_name, *args, **kwargs):
        kwargs["WIDE"] = True
        return original(kernel_name, *args, **kwargs)

    monkeypatch.setattr(tg, "_launch", wide)
    x = special_values(torch.randn(3, 5, 7, 6))
    for mask_shape in ((3, 5, 1, 1), (3, 1, 1, 6), (1, 5, 7, 6)):
        want = reference.apply_keep_mask(x, 2, 7, rng.keep_threshold(0.4), 2.5, None, mask_shape)
        got = tg.apply_keep_mask(x, 2, 7, rng.keep_threshold(0.4), 2.5, None, mask_shape)
        assert_same_bits(got, want)
        want = reference.apply_keep_affine(x, 2, 7, rng.keep_threshold(0.4), *AFFINE, None,
                                           mask_shape)  # fmt: skip
        got = tg.apply_keep_affine(x, 2, 7, rng.keep_threshold(0.4), *AFFINE, None, mask_shape)
        assert_same_bits(got, want)


@pytest.mark.parametrize("threshold", [0, 2**32])
@pytest.mark.parametrize("shape,mask_shape", MASKS)
def test_broadcast_extreme_thresholds(threshold, shape, mask_shape):
    x = special_values(torch.randn(shape, dtype=torch.float32))
    for dtype in (torch.float32, torch.bfloat16):
        x = x.to(dtype)
        want = reference.apply_keep_mask(x, 5, 2, threshold, 1.25, None, mask_shape)
        assert_same_bits(tg.apply_keep_mask(x, 5, 2, threshold, 1.25, None, mask_shape), want)
        want = reference.apply_keep_affine(x, 5, 2, threshold, *AFFINE, None, mask_shape)
        got = tg.apply_keep_affine(x, 5, 2, threshold, *AFFINE, None, mask_shape)
        assert_same_bits(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("numel,offset", CASES)
@pytest.mark.parametrize("in_place", [False, True])
def test_apply_keep_affine_bit_identical(dtype, numel, offset, in_place):
    x = special_values((torch.randn(numel) * 100).to(dtype))
    threshold = rng.keep_threshold(0.37)
    want = reference.apply_keep_affine(x, 12345, offset, threshold, *AFFINE)
    if in_place:
        work = x.clone()
        got = tg.apply_keep_affine(work, 12345, offset, threshold, *AFFINE, work)
        assert got is work
    else:
        got = tg.apply_keep_affine(x, 12345, offset, threshold, *AFFINE)
    assert_same_bits(got, want)


def test_affine_map_keeps_two_roundings():
    # Inputs where a fused x * a + b (one rounding) differs from the reference's two.
    x = torch.randn(4096) * 1000
    a, kept, dropped = 1.0507009873554805, 0.1 + 2**-20, -1.7580993408473766
    exact = (x.double() * torch.tensor(a, dtype=torch.float32).double()) + torch.tensor(
        kept, dtype=torch.float32
    ).double()
    separate = x * torch.tensor(a, dtype=torch.float32) + torch.tensor(kept, dtype=torch.float32)
    assert torch.any(bits(exact.float()) != bits(separate))  # a fused map would be visible
    for mask_shape in (None, (4096,), (1,)):
        want = reference.apply_keep_affine(x, 8, 0, 0, a, kept, dropped, None, mask_shape)
        got = tg.apply_keep_affine(x, 8, 0, 0, a, kept, dropped, None, mask_shape)
        assert torch.equal(bits(got), bits(want))


# ------------------------------------------------------------------------------------------------
# normal
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,offset", [((1,), 0), ((5, 7), 11), ((513,), 2), ((0, 3), 1)])
def test_normal_bit_identical(dtype, shape, offset):
    got = tg.normal(shape, 99, offset, "cpu", dtype)
    want = rng.normal(shape, 99, offset, "cpu", dtype)
    assert got.shape == want.shape
    assert torch.equal(bits(got), bits(want))


@settings(max_examples=10, deadline=None)
@given(
    numel=st.integers(0, 2000),
    offset=st.one_of(st.integers(0, 1000), st.integers(2**40, 2**61)),
    seed=st.integers(-(2**63), 2**63 - 1),
)
def test_normal_property(numel, offset, seed):
    got = tg.normal((numel,), seed, offset, "cpu", torch.float64)
    assert torch.equal(bits(got), bits(rng.normal((numel,), seed, offset, "cpu", torch.float64)))


# ------------------------------------------------------------------------------------------------
# bias_dropout_add
# ------------------------------------------------------------------------------------------------


def _fused_multiply_add_differs(x, bias, residual, seed, offset, threshold, scale) -> bool:
    """Whether a contracted ``residual + t * m`` (one rounding) would differ from the reference for
    these float32 inputs somewhere (else a test with them could not see a fused multiply-add)."""
    acc = torch.float32
    t = x.to(acc) + bias.to(acc)
    m = reference.keep_multiplier(x.shape, seed, offset, threshold, scale, acc)
    exact = residual.double() + t.double() * m.double()  # t * m is exact in float64
    fused = exact.to(acc)
    separate = residual.to(acc) + t * m
    return bool(torch.any(bits(fused) != bits(separate)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape,bias_shape,offset",
    [((4, 7), (7,), 0), ((3, 5, 33), (33,), 3), ((2, 3, 5), (3, 5), 1), ((257, 8), (1, 8), 6)],
)
def test_bias_dropout_add_bit_identical(dtype, shape, bias_shape, offset):
    x = special_values((torch.randn(shape) * 100).to(dtype))
    bias = (torch.randn(bias_shape) * 10).to(dtype)
    residual = (torch.randn(shape) * 100).to(dtype)
    threshold, scale = rng.keep_threshold(0.1), 1 / 0.9
    want = reference.bias_dropout_add(x, bias, residual, 77, offset, threshold, scale)
    got = tg.bias_dropout_add(x, bias, residual, 77, offset, threshold, scale)
    assert_same_bits(got, want)


def test_bias_dropout_add_keeps_three_roundings():
    x = torch.randn(256, 64) * 1000
    bias = torch.randn(64)
    residual = torch.randn(256, 64) * 1e-3
    threshold, scale = rng.keep_threshold(0.1), 1 / 0.9
    assert _fused_multiply_add_differs(x, bias, residual, 5, 0, threshold, scale)
    want = reference.bias_dropout_add(x, bias, residual, 5, 0, threshold, scale)
    assert torch.equal(
        bits(tg.bias_dropout_add(x, bias, residual, 5, 0, threshold, scale)), bits(want)
    )


@pytest.mark.parametrize("target", ["x", "residual", "out"])
def test_bias_dropout_add_in_place(target):
    x = torch.randn(6, 129)
    bias = torch.randn(129)
    residual = torch.randn(6, 129)
    want = reference.bias_dropout_add(x, bias, residual, 1, 2, rng.keep_threshold(0.3), 1 / 0.7)
    out = {"x": x, "residual": residual, "out": torch.empty_like(x)}[target]
    got = tg.bias_dropout_add(x, bias, residual, 1, 2, rng.keep_threshold(0.3), 1 / 0.7, out=out)
    assert got is out
    assert torch.equal(bits(out), bits(want))


def test_bias_dropout_add_mixed_dtypes_and_broadcasts():
    # bias and residual in other dtypes are rounded to the accumulation dtype first; a bias that
    # is not x's trailing shape (a column) and a broadcast residual take the expanded path.
    x = torch.randn(9, 6, dtype=torch.bfloat16)
    for bias, residual in [
        (torch.randn(6, dtype=torch.float64), torch.randn(9, 6, dtype=torch.float16)),
        (torch.randn(9, 1), torch.randn(6, dtype=torch.float64)),
        (torch.randn(()), torch.randn(1, 6)),
    ]:
        want = reference.bias_dropout_add(x, bias, residual, 4, 1, rng.keep_threshold(0.5), 2.0)
        got = tg.bias_dropout_add(x, bias, residual, 4, 1, rng.keep_threshold(0.5), 2.0)
        assert_same_bits(got, want)


@settings(max_examples=10, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    rows=st.integers(1, 40),
    hidden=st.integers(1, 70),
    offset=st.one_of(st.integers(0, 1000), st.integers(2**33, 2**62)),
    seed=st.integers(-(2**63), 2**63 - 1),
    threshold=st.integers(0, 2**32),
)
def test_bias_dropout_add_property(dtype, rows, hidden, offset, seed, threshold):
    x = (torch.randn(rows, hidden) * 30).to(dtype)
    bias = torch.randn(hidden).to(dtype)
    residual = torch.randn(rows, hidden).to(dtype)
    want = reference.bias_dropout_add(x, bias, residual, seed, offset, threshold, 1.25)
    assert_same_bits(tg.bias_dropout_add(x, bias, residual, seed, offset, threshold, 1.25), want)


# ------------------------------------------------------------------------------------------------
# Bad inputs and availability
# ------------------------------------------------------------------------------------------------


def test_bad_inputs_are_named():
    x = torch.randn(8, 4)
    t = rng.keep_threshold(0.5)
    with pytest.raises(ValueError, match="contiguous"):
        tg.apply_keep_mask(x.t(), 1, 0, t, 2.0)
    with pytest.raises(ValueError, match="out must match x"):
        tg.apply_keep_mask(x, 1, 0, t, 2.0, out=torch.empty(32))
    with pytest.raises(ValueError, match="out must be contiguous"):
        tg.apply_keep_mask(x, 1, 0, t, 2.0, out=torch.empty(4, 8).t())
    with pytest.raises(ValueError, match="offset must be an integer >= 0, got -1"):
        tg.apply_keep_mask(x, 1, -1, t, 2.0)
    with pytest.raises(ValueError, match=r"offset \+ numel must be <= 2\*\*63 - 1"):
        tg.apply_keep_mask(x, 1, 2**63 - 31, t, 2.0)
    with pytest.raises(ValueError, match=r"threshold must lie in \[0, 2\*\*32\], got 4294967297"):
        tg.apply_keep_mask(x, 1, 0, 2**32 + 1, 2.0)
    with pytest.raises(TypeError, match="x must have a dtype in"):
        tg.apply_keep_mask(torch.ones(4, dtype=torch.int32), 1, 0, t, 2.0)
    with pytest.raises(ValueError, match="apply_keep_affine: x must be contiguous"):
        tg.apply_keep_affine(x.t(), 1, 0, t, *AFFINE)
    with pytest.raises(ValueError, match="out must match x"):
        tg.apply_keep_affine(x, 1, 0, t, *AFFINE, torch.empty(32))
    with pytest.raises(ValueError, match=r"offset \+ numel must be <= 2\*\*63 - 1"):
        tg.apply_keep_affine(x, 1, 2**63 - 8, t, *AFFINE, None, (8, 1))  # the mask's 8 words
    with pytest.raises(TypeError, match="x must have a dtype in"):
        tg.apply_keep_affine(torch.ones(4, dtype=torch.int32), 1, 0, t, *AFFINE)
    with pytest.raises(ValueError, match="numel must be an integer >= 0, got -2"):
        tg.stream_words(-2, 1, 0, "cpu")
    with pytest.raises(ValueError, match=r"2 \* \(offset \+ numel\) must be <= 2\*\*63 - 1"):
        tg.normal((4,), 1, 2**62 - 3, "cpu")
    with pytest.raises(ValueError, match="bias of shape \\(3,\\) does not broadcast"):
        tg.bias_dropout_add(x, torch.randn(3), x, 1, 0, t, 2.0)
    with pytest.raises(ValueError, match="residual of shape \\(8, 5\\) does not broadcast"):
        tg.bias_dropout_add(x, torch.randn(4), torch.randn(8, 5), 1, 0, t, 2.0)


def test_cpu_tensors_need_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(ValueError, match="x must be a CUDA tensor .* got device cpu"):
        tg.apply_keep_mask(torch.ones(4), 1, 0, 0, 1.0)
    with pytest.raises(ValueError, match="device must be a CUDA device .* got cpu"):
        tg.stream_words(4, 1, 0, "cpu")


def test_available(monkeypatch):
    assert tg.available()  # the interpreter is on
    monkeypatch.delenv("TRITON_INTERPRET")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not tg.available()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert tg.available()


def test_dropkit_works_without_triton():
    # A process where importing triton fails: dropkit imports, the backend says it is unavailable
    # and a call says what is missing.
    script = """
import sys
sys.modules["triton"] = None  # import triton -> ImportError
import torch, dropkit
from dropkit.kernels import triton_gpu
assert not triton_gpu.available()
try:
    triton_gpu.stream_words(4, 1, 0, "cpu")
except RuntimeError as error:
    print(error)
"""
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT / "src"))
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "needs the 'triton' package" in result.stdout


# ------------------------------------------------------------------------------------------------
# Compiled code, without a GPU: compile for sm_90 and read the PTX and SASS.
# ------------------------------------------------------------------------------------------------


def _compile(
    name: str,
    pointer: str,
    acc,
    options: dict,
    monkeypatch,
    shift: int = 0,
    wide: bool = False,
    divisible: tuple[str, ...] = ("n",),
    **extra,
):
    """Compile one kernel as a launch would (annotated scalars, pointers and the sizes named in
    ``divisible`` 16-aligned); ``extra``: the values of the kernel's other compile-time
    constants."""
    from triton.backends.compiler import GPUTarget

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    kernel = tg._load()[name]
    constants = {"SHIFT": shift, "GROUPS": tg._GROUPS, "WIDE": wide, "ACC": acc, **extra}
    signature, constexprs, attrs = {}, {}, {}
    for index, param in enumerate(kernel.params):
        if param.is_constexpr:
            signature[param.name] = "constexpr"
            constexprs[param.name] = constants[param.name]
            continue
        signature[param.name] = param.annotation or pointer
        if not param.annotation or param.name in divisible:
            attrs[(index,)] = [["tt.divisibility", 16]]
    source = triton.compiler.ASTSource(kernel, signature, constexprs=constexprs, attrs=attrs)
    return triton.compile(source, target=GPUTarget("cuda", 90, 32), options=options)


def _sass(compiled, tmp_path) -> str:
    from triton import knobs

    cubin = tmp_path / "kernel.cubin"
    cubin.write_bytes(compiled.asm["cubin"])
    tool = knobs.nvidia.cuobjdump.path
    return subprocess.run([tool, "-sass", str(cubin)], capture_output=True, text=True).stdout


def _accesses(ptx: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"\b((?:ld|st)\.global(?:\.v\d)?\.b\d+)", ptx)}


@pytest.mark.parametrize(
    "name,pointer,acc,shift,wide",
    [
        ("_bias_dropout_add_kernel", "*fp32", "fp32", 0, False),
        ("_bias_dropout_add_kernel", "*fp64", "fp64", 0, False),
        ("_bias_dropout_add_kernel", "*bf16", "fp32", 0, False),
        ("_bias_dropout_add_kernel", "*fp32", "fp32", 3, True),  # 64-bit indices, shifted
        ("_keep_mask_kernel", "*fp32", "fp32", 0, False),
        ("_uniforms_kernel", "*fp64", None, 1, True),
    ],
)
def test_compiled_code_has_no_fused_multiply_add(
    name, pointer, acc, shift, wide, monkeypatch, tmp_path
):
    acc = {"fp32": tl.float32, "fp64": tl.float64, None: None}[acc]
    compiled = _compile(name, pointer, acc, tg.LAUNCH_OPTIONS, monkeypatch, shift, wide)
    ptx = compiled.asm["ptx"]
    assert not re.search(r"\bfma\.", ptx)
    # (ptxas zeroes registers with "HFMA2.MMA R, -RZ, RZ, 0, 0": not arithmetic on our values)
    assert not re.search(r"\b[FD]FMA\b", _sass(compiled, tmp_path))
    if name == "_bias_dropout_add_kernel":
        assert re.search(r"\badd\.rn\.f(32|64)", ptx) and re.search(r"\bmul\.rn\.f(32|64)", ptx)
    if shift == 0:  # the stream words reach their elements without a trip through shared memory
        assert compiled.metadata.shared == 0


BROADCAST_TILES = {  # (BLOCK_I, BLOCK_J, BLOCK_K) as broadcast_blocks picks them
    "channels first": tg.broadcast_blocks(128 * 256, 14 * 14, 1),
    "channels last": tg.broadcast_blocks(128, 14 * 14, 256),
    "drop-path": tg.broadcast_blocks(128, 197 * 768, 1),
}


@pytest.mark.parametrize(
    "name,pointer,acc,extra",
    [
        ("_keep_affine_kernel", "*fp32", "fp32", {}),
        ("_keep_affine_kernel", "*bf16", "fp32", {}),
        ("_keep_affine_kernel", "*fp64", "fp64", {}),
    ]
    + [
        ("_broadcast_kernel", pointer, "fp32", {"AFFINE": affine, "tile": tile})
        for tile in BROADCAST_TILES
        for affine in (False, True)
        for pointer in ("*fp32", "*bf16")
    ]
    + [("_broadcast_kernel", "*fp32", "fp32", {"AFFINE": True, "tile": "drop-path", "wide": True})],
)
def test_new_kernels_compile_without_fused_multiply_add(
    name, pointer, acc, extra, monkeypatch, tmp_path
):
    # Alpha dropout's x * M + B must stay two roundings on the GPU too.
    acc = {"fp32": tl.float32, "fp64": tl.float64}[acc]
    if "tile" in extra:
        block_i, block_j, block_k = BROADCAST_TILES[extra.pop("tile")]
        extra.update(BLOCK_I=block_i, BLOCK_J=block_j, BLOCK_K=block_k, UNIT_C=block_k == 1)
    compiled = _compile(name, pointer, acc, tg.LAUNCH_OPTIONS, monkeypatch, **extra)
    ptx = compiled.asm["ptx"]
    assert not re.search(r"\bfma\.", ptx)
    assert not re.search(r"\b[FD]FMA\b", _sass(compiled, tmp_path))
    if name == "_keep_affine_kernel" or extra.get("AFFINE"):
        assert re.search(r"\badd\.rn\.f(32|64)", ptx) and re.search(r"\bmul\.rn\.f(32|64)", ptx)


@pytest.mark.parametrize("tile", sorted(BROADCAST_TILES))
@pytest.mark.parametrize("pointer", ["*fp32", "*bf16"])
def test_broadcast_kernel_uses_vector_accesses(tile, pointer, monkeypatch):
    # Sizes divisible by 16 (Triton specialises on it at launch): 16-byte loads and stores for
    # every layer's form, no shared memory.
    block_i, block_j, block_k = BROADCAST_TILES[tile]
    compiled = _compile(
        "_broadcast_kernel", pointer, tl.float32, tg.LAUNCH_OPTIONS, monkeypatch,
        divisible=("a", "b", "c"), AFFINE=False, BLOCK_I=block_i, BLOCK_J=block_j,
        BLOCK_K=block_k, UNIT_C=block_k == 1,
    )  # fmt: skip
    loads_stores = _accesses(compiled.asm["ptx"])
    assert loads_stores == {"ld.global.v4.b32", "st.global.v4.b32"}, loads_stores
    assert compiled.metadata.shared == 0


def test_fma_check_sees_triton_default_fusion(monkeypatch, tmp_path):
    # The check above can fail: Triton's default (fusion on) contracts the same kernel.
    options = dict(tg.LAUNCH_OPTIONS, enable_fp_fusion=True)
    compiled = _compile("_bias_dropout_add_kernel", "*fp32", tl.float32, options, monkeypatch)
    assert re.search(r"\bfma\.rn\.f32", compiled.asm["ptx"])
    assert re.search(r"\bFFMA", _sass(compiled, tmp_path))


def test_aligned_stream_uses_vector_accesses(monkeypatch):
    compiled = _compile("_keep_mask_kernel", "*fp32", tl.float32, tg.LAUNCH_OPTIONS, monkeypatch)
    assert _accesses(compiled.asm["ptx"]) == {"ld.global.v4.b32", "st.global.v4.b32"}
    # offset % 4 != 0 is correct but unaligned: 4-byte accesses.
    shifted = _compile("_keep_mask_kernel", "*fp32", tl.float32, tg.LAUNCH_OPTIONS, monkeypatch, 1)
    assert _accesses(shifted.asm["ptx"]) == {"ld.global.b32", "st.global.b32"}


def test_per_call_scalars_are_not_specialised(monkeypatch):
    # Seeds, stream positions, thresholds and scale bits change every call: a compiled variant
    # per value class (divisible by 16, equal to 1) would recompile during training. Sizes stay
    # specialised (vector accesses).
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    kernels = tg._load()
    for name in ("_keep_mask_kernel", "_keep_affine_kernel", "_broadcast_kernel",
                 "_bias_dropout_add_kernel", "_words_kernel", "_uniforms_kernel"):  # fmt: skip
        flags = {p.name: p.do_not_specialize for p in kernels[name].params}
        assert flags["k0"] and flags["k1"], name
        for param in ("first_group", "offset", "threshold", "scale_bits", "mul_bits"):
            if param in flags:
                assert flags[param], (name, param)
        for param in ("n", "a", "b", "c", "bias_n"):
            if param in flags:
                assert not flags[param], (name, param)


def test_interpreter_again_after_compiling(monkeypatch):
    # Kernels decorated for the compiler are re-decorated when TRITON_INTERPRET comes back.
    _compile("_words_kernel", "*i64", None, tg.LAUNCH_OPTIONS, monkeypatch)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert torch.equal(tg.stream_words(9, 3, 1, "cpu"), rng.stream_words(9, 3, 1))


# ------------------------------------------------------------------------------------------------
# benchmarks/gpu.py
# ------------------------------------------------------------------------------------------------


def test_gpu_benchmark_check_mode():
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    env.pop("TRITON_INTERPRET", None)  # --check switches the interpreter on itself
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "check passed" in result.stdout


def test_gpu_benchmark_without_cuda_exits_2():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the benchmark would run")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "no CUDA device" in result.stderr
