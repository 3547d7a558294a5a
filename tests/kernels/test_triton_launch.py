"""The direct launch path of the Triton backend (:func:`dropkit.kernels.triton_gpu._launch`).

A GPU machine exercises it for real (``tests/cuda``); here a stand-in kernel records what is
launched, so the logic runs on the CPU: the first launch of a variant goes through Triton, later
ones call the compiled kernel's launcher with the arguments in the kernel's parameter order, a new
specialisation (alignment, integer width, constexpr) compiles through Triton again, and a launcher
that refuses its arguments switches every launch back to Triton's path with one warning.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed (pip install triton)")

from dropkit.kernels import triton_gpu  # noqa: E402


class FakeCompiled:
    def __init__(self, calls: list, fail: bool = False) -> None:
        self.calls, self.fail = calls, fail
        self.function, self.packed_metadata = "function", "metadata"

    def run(self, *args):
        if self.fail:
            raise TypeError("launcher takes other arguments")
        self.calls.append(("direct", args))


class FakeKernel:
    """``params`` as Triton's JITFunction has them: ``x``, ``n`` (specialised), ``k0`` (not),
    ``BLOCK`` (constexpr)."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list = []
        self.fail = fail
        self.fn = SimpleNamespace(__name__="fake_kernel")
        self.params = [
            SimpleNamespace(name="x", is_constexpr=False, do_not_specialize=False),
            SimpleNamespace(name="n", is_constexpr=False, do_not_specialize=False),
            SimpleNamespace(name="k0", is_constexpr=False, do_not_specialize=True),
            SimpleNamespace(name="BLOCK", is_constexpr=True, do_not_specialize=False),
        ]

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.calls.append(("triton", grid, args, kwargs))
            return FakeCompiled(self.calls, self.fail)

        return launch


@pytest.fixture
def fake(monkeypatch):
    kernel = FakeKernel()
    monkeypatch.setattr(triton_gpu, "_compiled", {})
    triton_gpu._require_triton()
    monkeypatch.setattr(triton_gpu, "_load", lambda: {"fake_kernel": kernel})
    monkeypatch.setattr(triton_gpu, "_interpreting", lambda: False)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch._C, "_cuda_getCurrentRawStream", lambda device: 1234, raising=False)
    return kernel


def kinds(kernel) -> list[str]:
    return [call[0] for call in kernel.calls]


def test_second_launch_calls_the_compiled_launcher_in_parameter_order(fake):
    x = torch.zeros(64)
    triton_gpu._launch("fake_kernel", (3,), x, 64, k0=7, BLOCK=128)
    triton_gpu._launch("fake_kernel", (5,), x, 64, k0=9, BLOCK=128)
    assert kinds(fake) == ["triton", "direct"]
    args = fake.calls[1][1]
    # grid (x, 1, 1), the stream, the compiled function, its metadata, no hooks, then the values
    assert args[:9] == (5, 1, 1, 1234, "function", "metadata", None, None, None)
    assert args[9] is x and args[10:] == (64, 9, 128)


def test_unspecialised_integers_share_a_variant(fake):
    x = torch.zeros(64)
    for k0 in (1, 16, 17, 2**31 - 1):  # k0 is do_not_specialize: only its width counts
        triton_gpu._launch("fake_kernel", (1,), x, 64, k0=k0, BLOCK=128)
    assert kinds(fake) == ["triton", "direct", "direct", "direct"]


@pytest.mark.parametrize(
    "change",
    [
        {"n": 63},  # no longer a multiple of 16
        {"n": 1},  # Triton specialises the value 1
        {"n": 2**40},  # i64 instead of i32
        {"k0": 2**40},  # an unspecialised integer changes width
        {"BLOCK": 256},  # a constexpr
        {"x": torch.zeros(64, dtype=torch.float64)},  # another pointer type
        {"x": torch.zeros(65)[1:]},  # not 16-byte aligned
    ],
    ids=["n%16", "n==1", "n-i64", "k0-i64", "constexpr", "dtype", "alignment"],
)
def test_a_new_specialisation_compiles_through_triton(fake, change):
    base = {"x": torch.zeros(64), "n": 64, "k0": 7, "BLOCK": 128}
    triton_gpu._launch("fake_kernel", (1,), base["x"], base["n"], k0=base["k0"],
                       BLOCK=base["BLOCK"])  # fmt: skip
    new = {**base, **change}
    triton_gpu._launch("fake_kernel", (1,), new["x"], new["n"], k0=new["k0"], BLOCK=new["BLOCK"])
    assert kinds(fake) == ["triton", "triton"]


def test_a_refusing_launcher_switches_back_to_triton_with_one_warning(fake):
    fake.fail = True
    x = torch.zeros(64)
    triton_gpu._launch("fake_kernel", (1,), x, 64, k0=7, BLOCK=128)
    with pytest.warns(RuntimeWarning, match="launching Triton kernels directly failed"):
        triton_gpu._launch("fake_kernel", (1,), x, 64, k0=7, BLOCK=128)
    triton_gpu._launch("fake_kernel", (1,), x, 64, k0=7, BLOCK=128)
    assert kinds(fake) == ["triton", "triton", "triton"]
    assert triton_gpu._compiled is None


def test_triton_before_3_3_keeps_its_own_path(fake, monkeypatch):
    # Its compiled kernels take the non-constexpr arguments only.
    monkeypatch.setattr(triton_gpu.triton, "__version__", "3.2.0")
    triton_gpu._direct_launch_api.cache_clear()
    try:
        x = torch.zeros(64)
        for _ in range(2):
            triton_gpu._launch("fake_kernel", (1,), x, 64, k0=7, BLOCK=128)
    finally:
        triton_gpu._direct_launch_api.cache_clear()
    assert kinds(fake) == ["triton", "triton"]


def test_launch_hooks_and_default_arguments_take_tritons_path(fake, monkeypatch):
    x = torch.zeros(64)
    runtime = triton_gpu.triton.knobs.runtime
    default = runtime.launch_enter_hook  # None, or an empty chain in newer Triton
    monkeypatch.setattr(runtime, "launch_enter_hook", lambda metadata: None)
    for _ in range(2):
        triton_gpu._launch("fake_kernel", (1,), x, 64, k0=7, BLOCK=128)
    monkeypatch.setattr(runtime, "launch_enter_hook", default)
    for _ in range(2):  # BLOCK left to its default: Triton binds it
        triton_gpu._launch("fake_kernel", (1,), x, 64, k0=7)
    assert kinds(fake) == ["triton"] * 4
