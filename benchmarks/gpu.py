"""GPU dropout: dropkit's Triton kernels against torch's CUDA dropout, side by side in one run.

For each size it times, interleaved round by round (CUDA events, medians):

- ``torch``: ``torch.nn.functional.dropout`` (CUDA's fused dropout, which keeps a 1-byte mask);
- ``dropkit``: the public API, ``dropkit.functional.dropout`` (CUDA tensors reach the Triton
  backend once ``dropkit.kernels`` routes them there; the script prints whether this run did);
- ``kernel``: :func:`dropkit.kernels.triton_gpu.apply_keep_mask` called directly, with a backward
  that regenerates the mask from the seed (what the op layer does, without its dispatch);
- ``copy_``: a same-size copy, the bandwidth yardstick;

forward (no grad) and forward+backward, the bytes each keeps for backward per element (measured
with ``torch.autograd.graph.saved_tensors_hooks``), the fused ``bias_dropout_add`` against
torch's ``residual + dropout(x + bias)``, and the forward of the one-pass broadcast and affine
kernels through the public API: channel dropout (``dropout1d`` on ``(N, 16, 64)``) and alpha
dropout, each against torch's. Targets (issue 12): forward and forward+backward at least
as fast as torch's CUDA dropout (ratio torch/dropkit >= 1), 0 bytes kept. Before timing, the
Triton result is checked bit for bit against the reference on the same device.

    python benchmarks/gpu.py                    # 2^20, 2^21, ..., 2^28: float32, then bfloat16
    python benchmarks/gpu.py --sizes 24:float32 --repeats 50
    python benchmarks/gpu.py --check            # the script's logic on CPU tensors, tiny sizes,
                                                # under TRITON_INTERPRET=1 (no GPU needed)
    python benchmarks/gpu.py --json out.json    # also every figure (and the checks) as JSON

Without a CUDA device (and without ``--check``) it says so and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch

P = 0.1
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEFAULT_SIZES = ",".join(f"{e}:{d}" for d in ("float32", "bfloat16") for e in range(20, 29))
CHECK_SIZES = "10:float32,11:bfloat16"
NO_CUDA_STATUS = 2


class Timer:
    """Seconds of one call: CUDA events on a GPU, ``perf_counter`` in ``--check`` mode."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda

    def __call__(self, fn: Callable[[], object]) -> float:
        if self.cuda:
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            stop.record()
            stop.synchronize()
            return start.elapsed_time(stop) / 1e3
        begin = time.perf_counter()
        fn()
        return time.perf_counter() - begin


def saved_bytes_per_element(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> float:
    """Bytes autograd keeps for backward per input element (the input is a leaf, so a dropout
    should keep nothing of its size; torch keeps its mask)."""
    leaf = x.detach().requires_grad_()
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(leaf)
    return total / leaf.numel()


def kernel_dropout(triton_gpu, rng) -> Callable[[torch.Tensor], torch.Tensor]:
    """Dropout straight on the Triton kernel; its backward regenerates the mask from the seed."""

    threshold, scale = rng.keep_threshold(P), 1.0 / (1.0 - P)

    class KernelDropout(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, seed: int):
            ctx.seed = seed  # a Python int: no tensor is saved
            return triton_gpu.apply_keep_mask(x.contiguous(), seed, 0, threshold, scale)

        @staticmethod
        def backward(ctx, grad):
            return triton_gpu.apply_keep_mask(
                grad.contiguous(), ctx.seed, 0, threshold, scale
            ), None

    def run(x: torch.Tensor) -> torch.Tensor:
        return KernelDropout.apply(x, rng.draw_seed())

    return run


def routes_to_triton(dk_dropout, triton_gpu, x: torch.Tensor) -> bool:
    """Whether the public API sent this tensor through the Triton kernel (one spied call)."""
    calls = []
    original = triton_gpu.apply_keep_mask

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    triton_gpu.apply_keep_mask = spy
    try:
        with torch.no_grad():
            dk_dropout(x, P, True)
    finally:
        triton_gpu.apply_keep_mask = original
    return bool(calls)


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    ints = {2: torch.int16, 4: torch.int32, 8: torch.int64}
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return torch.equal(a.view(ints[a.element_size()]), b.view(ints[b.element_size()]))


def check_bits(
    triton_gpu, reference, rng, device: torch.device, cases: list[tuple[int, int]]
) -> list[str]:
    """Triton vs the reference on ``device`` for ``(numel, offset)`` cases: the failures, empty
    when every result is bit-identical."""
    failures = []
    threshold, scale = rng.keep_threshold(P), 1.0 / (1.0 - P)
    for numel, offset in cases:
        for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
            x = torch.randn(numel, device=device).to(dtype)
            got = triton_gpu.apply_keep_mask(x, 11, offset, threshold, scale)
            want = reference.apply_keep_mask(x, 11, offset, threshold, scale)
            if not same_bits(got, want):
                failures.append(f"apply_keep_mask {dtype} numel={numel} offset={offset}")
            bias, residual = torch.randn(numel, device=device).to(dtype), x.flip(0)
            got = triton_gpu.bias_dropout_add(x, bias, residual, 5, offset, threshold, scale)
            want = reference.bias_dropout_add(x, bias, residual, 5, offset, threshold, scale)
            if not same_bits(got, want):
                failures.append(f"bias_dropout_add {dtype} numel={numel} offset={offset}")
    alpha = (1.0507, 0.1, -1.7581)  # a, kept shift, dropped value
    for shape, mask_shape in [
        ((8, 16, 7, 7), (8, 16, 1, 1)),  # channel dropout, channels first
        ((8, 7, 7, 16), (8, 1, 1, 16)),  # channels last
        ((9, 4, 6), (1, 4, 6)),  # locked dropout
        ((8, 3, 5, 6), (8, 1, 1, 1)),  # drop-path
        ((3, 2, 700), (3, 2, 700)),  # x's own shape (the affine map's element-wise kernel)
    ]:
        # float64 for the element-wise map only: each dtype is one more compile per shape
        wide = (torch.float64,) if shape == mask_shape else ()
        for dtype in (torch.float32, torch.bfloat16, torch.float16, *wide):
            x = torch.randn(shape, device=device).to(dtype)
            for offset in (0, 3):
                for fn_name, args in (
                    ("apply_keep_mask", (threshold, scale)),
                    ("apply_keep_affine", (threshold, *alpha)),
                ):
                    got = getattr(triton_gpu, fn_name)(x, 9, offset, *args, None, mask_shape)
                    want = getattr(reference, fn_name)(x, 9, offset, *args, None, mask_shape)
                    if not same_bits(got, want):
                        failures.append(f"{fn_name} {dtype} {shape} mask {mask_shape} +{offset}")
    words = triton_gpu.stream_words(1001, -3, 2**40 + 1, device)
    if not torch.equal(words.cpu(), rng.stream_words(1001, -3, 2**40 + 1)):
        failures.append("stream_words")
    normals = triton_gpu.normal((333,), 8, 5, device, torch.float32)
    if not same_bits(normals, rng.normal((333,), 8, 5, device, torch.float32)):
        failures.append("normal")
    return failures


def measure(
    variants: dict[str, Callable[[], object]],
    timer: Timer,
    repeats: int,
    warmup: int,
    sync: Callable[[], None],
) -> dict[str, float]:
    for fn in variants.values():  # warm up: compilation, autotuning caches, allocator
        for _ in range(warmup):
            fn()
    sync()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            times[name].append(timer(fn))
    return {name: statistics.median(values) for name, values in times.items()}


def time_case(
    x: torch.Tensor,
    dropouts: dict[str, Callable[[torch.Tensor], torch.Tensor]],
    triton_gpu,
    rng,
    timer: Timer,
    repeats: int,
    warmup: int,
    extra: tuple[Callable[[torch.Tensor], torch.Tensor], ...],
) -> dict[str, float]:
    """Medians of every variant on ``x`` (see the module docstring), interleaved round by round;
    ``extra``: torch's and dropkit's channel dropout, then torch's and dropkit's alpha dropout."""
    hidden = min(1024, x.numel())
    x2 = x.view(-1, hidden)
    bias = torch.randn(hidden, device=x.device, dtype=x.dtype)
    residual = torch.randn_like(x2)
    out = torch.empty_like(x)
    leaf = x.detach().clone().requires_grad_()
    grad = torch.ones_like(x)
    threshold, scale = rng.keep_threshold(P), 1.0 / (1.0 - P)

    def fwd(fn):
        def run():
            with torch.no_grad():
                fn(x)

        return run

    def fwd_on(fn, t):
        def run():
            with torch.no_grad():
                fn(t)

        return run

    def fwd_bwd(fn):
        def run():
            leaf.grad = None
            fn(leaf).backward(grad)

        return run

    def torch_bda():
        with torch.no_grad():
            residual + torch.nn.functional.dropout(x2 + bias, P, True)

    def fused_bda():
        triton_gpu.bias_dropout_add(x2, bias, residual, 1, 0, threshold, scale)

    # The one-pass broadcast and affine kernels: channel dropout on (N, 16, L) (one mask word per
    # channel, broadcast over L) and alpha dropout, public API against torch's.
    x3 = x.view(-1, 16, 64) if x.numel() % 1024 == 0 else x.view(1, 1, -1)
    ch_torch, ch_dk, alpha_torch, alpha_dk = extra

    variants = {"copy_": lambda: out.copy_(x)}
    variants.update({f"{who} fwd": fwd(fn) for who, fn in dropouts.items()})
    variants.update({f"{who} f+b": fwd_bwd(fn) for who, fn in dropouts.items()})
    variants.update({"torch bda": torch_bda, "fused bda": fused_bda})
    variants.update(
        {
            "torch channel fwd": fwd_on(ch_torch, x3),
            "dropkit channel fwd": fwd_on(ch_dk, x3),
            "torch alpha fwd": fwd_on(alpha_torch, x),
            "dropkit alpha fwd": fwd_on(alpha_dk, x),
        }
    )
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    return measure(variants, timer, repeats, warmup, sync)


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def parse_sizes(text: str, parser: argparse.ArgumentParser) -> list[tuple[int, str]]:
    cases = []
    for item in text.split(","):
        log2, _, dtype_name = item.partition(":")
        if dtype_name not in DTYPES:
            parser.error(f"--sizes dtype must be one of {sorted(DTYPES)}, got {dtype_name!r}")
        if not log2.isdigit() or not 1 <= int(log2) <= 31:
            parser.error(f"--sizes log2(size) must be an integer in [1, 31], got {log2!r}")
        cases.append((int(log2), dtype_name))
    return cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=None, help="comma-separated log2(size):dtype pairs")
    parser.add_argument("--repeats", type=int, default=20, help="timed rounds per variant (>= 1)")
    parser.add_argument(
        "--check", action="store_true", help="run the logic on CPU tensors under TRITON_INTERPRET=1"
    )
    parser.add_argument("--json", default=None, help="also write every figure to this JSON file")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.check:
        os.environ["TRITON_INTERPRET"] = "1"  # dropkit's Triton kernels read it on first use
    elif not torch.cuda.is_available():
        print(
            "benchmarks/gpu.py: no CUDA device (torch.cuda.is_available() is False): nothing "
            "measured. Run it on a machine with an NVIDIA GPU, or use --check to test the script "
            "on the CPU under Triton's interpreter.",
            file=sys.stderr,
        )
        return NO_CUDA_STATUS

    import dropkit
    from dropkit import functional as dk_functional
    from dropkit import rng
    from dropkit.functional import dropout as dk_dropout
    from dropkit.kernels import reference, triton_gpu

    if not triton_gpu.available():
        print("benchmarks/gpu.py: triton is not installed (pip install triton)", file=sys.stderr)
        return NO_CUDA_STATUS
    device = torch.device("cpu" if args.check else "cuda")
    repeats = 1 if args.check else args.repeats
    cases = parse_sizes(args.sizes or (CHECK_SIZES if args.check else DEFAULT_SIZES), parser)
    timer = Timer(cuda=device.type == "cuda")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (--check, interpreter)"
    print(
        f"{name}; torch {torch.__version__}, dropkit {dropkit.__version__}, p={P}, "
        f"{repeats} rounds, medians in ms"
    )

    # Small and unaligned, then aligned (vector loads) and, on a GPU, many programs.
    bit_cases = [(4099, 3), (4096 if args.check else 1 << 20, 0)]
    failures = check_bits(triton_gpu, reference, rng, device, bit_cases)
    print("Triton vs reference on this device:", failures if failures else "bit-identical")
    probe = torch.randn(64, device=device)
    routed = routes_to_triton(dk_dropout, triton_gpu, probe)
    print(f"dropkit.functional.dropout on {device.type} tensors runs the Triton kernel: {routed}")

    kernel = kernel_dropout(triton_gpu, rng)
    torch_dropout = lambda t: torch.nn.functional.dropout(t, P, True)  # noqa: E731
    dropkit_dropout = lambda t: dk_dropout(t, P, True)  # noqa: E731
    extra = (
        lambda t: torch.nn.functional.dropout1d(t, P, True),
        lambda t: dk_functional.dropout1d(t, P, True),
        lambda t: torch.nn.functional.alpha_dropout(t, P, True),
        lambda t: dk_functional.alpha_dropout(t, P, True),
    )
    results: dict[str, object] = {
        "device": name,
        "torch": torch.__version__,
        "dropkit": dropkit.__version__,
        "p": P,
        "repeats": repeats,
        "check_mode": args.check,
        "bit_failures": failures,
        "public_api_runs_triton": routed,
        "cases": [],
    }
    header = [
        "size",
        "dtype",
        "copy_",
        "torch fwd",
        "dropkit fwd",
        "kernel fwd",
        "torch/dk fwd",
        "torch/kernel fwd",
        "torch f+b",
        "dropkit f+b",
        "kernel f+b",
        "torch/dk f+b",
        "torch/kernel f+b",
        "B/elem torch",
        "B/elem dk",
        "B/elem kernel",
        "torch bda",
        "fused bda",
        "torch/fused bda",
        "torch ch",
        "dk ch",
        "torch alpha",
        "dk alpha",
    ]
    rows, verdicts = [], []
    for log2, dtype_name in cases:
        dropouts = {"torch": torch_dropout, "dropkit": dropkit_dropout, "kernel": kernel}
        x = torch.randn(1 << log2, device=device, dtype=DTYPES[dtype_name])
        t = time_case(x, dropouts, triton_gpu, rng, timer, repeats, 1 if args.check else 2, extra)
        saved = {
            "torch": saved_bytes_per_element(torch_dropout, x),
            "dk": saved_bytes_per_element(dropkit_dropout, x),
            "kernel": saved_bytes_per_element(kernel, x),
        }
        del x
        ratio = {key: t[f"torch {key}"] / t[f"dropkit {key}"] for key in ("fwd", "f+b")}
        kernel_ratio = {key: t[f"torch {key}"] / t[f"kernel {key}"] for key in ("fwd", "f+b")}
        rows.append(
            [
                f"2^{log2}",
                dtype_name,
                fmt_ms(t["copy_"]),
                fmt_ms(t["torch fwd"]),
                fmt_ms(t["dropkit fwd"]),
                fmt_ms(t["kernel fwd"]),
                f"{ratio['fwd']:.2f}x",
                f"{kernel_ratio['fwd']:.2f}x",
                fmt_ms(t["torch f+b"]),
                fmt_ms(t["dropkit f+b"]),
                fmt_ms(t["kernel f+b"]),
                f"{ratio['f+b']:.2f}x",
                f"{kernel_ratio['f+b']:.2f}x",
                f"{saved['torch']:.2f}",
                f"{saved['dk']:.2f}",
                f"{saved['kernel']:.2f}",
                fmt_ms(t["torch bda"]),
                fmt_ms(t["fused bda"]),
                f"{t['torch bda'] / t['fused bda']:.2f}x",
                fmt_ms(t["torch channel fwd"]),
                fmt_ms(t["dropkit channel fwd"]),
                fmt_ms(t["torch alpha fwd"]),
                fmt_ms(t["dropkit alpha fwd"]),
            ]
        )
        results["cases"].append(
            {
                "log2_size": log2,
                "dtype": dtype_name,
                "median_s": t,
                "torch_over_dropkit": ratio,
                "torch_over_kernel": kernel_ratio,
                "saved_bytes_per_element": saved,
            }
        )
        for who, r, kept in (
            ("dropkit", ratio, saved["dk"]),
            ("kernel", kernel_ratio, saved["kernel"]),
        ):
            met = r["fwd"] >= 1.0 and r["f+b"] >= 1.0 and kept < 0.01
            verdicts.append(
                f"2^{log2} {dtype_name} {who}: fwd {r['fwd']:.2f}x, f+b {r['f+b']:.2f}x torch, "
                f"{kept:.2f} B/elem kept -> {'meets' if met else 'MISSES'} the target "
                "(>= 1x torch's CUDA dropout both ways, 0 bytes kept)"
            )
    print(table(rows, header))
    print("\n".join(verdicts))
    results["verdicts"] = verdicts
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
        print(f"figures written to {args.json}")
    if failures:
        print("FAILED: Triton results differ from the reference:", failures)
        return 1
    if args.check:
        kept = [float(row[header.index("B/elem kernel")]) for row in rows]
        if any(k >= 0.01 for k in kept):
            print("FAILED: the kernel route kept bytes for backward:", kept)
            return 1
        print("check passed (CPU, interpreter: the logic ran; these timings mean nothing)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
