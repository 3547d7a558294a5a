"""Dropout speed and memory: torch eager, torch.compile and dropkit, side by side in one run.

For each size it times, interleaved round by round so that machine noise hits every variant alike:
forward (no grad), forward+backward, forward in place (``inplace=True``, no new output), and a
same-size copy as the bandwidth yardstick, twice:
``copy_`` into an existing buffer, and ``clone`` (which, like every out-of-place op, also
allocates and first-touches a new output; for 64 MiB that page-faulting alone costs about as
much as the copy). It prints medians, the ratios torch/dropkit and dropkit/clone, and the bytes each
variant keeps for backward per element (measured with ``torch.autograd.graph.saved_tensors_hooks``).

    python benchmarks/dropout.py                 # 2^16, 2^20, 2^24 float32 and 2^24 bfloat16
    python benchmarks/dropout.py --quick         # fewer repeats
    python benchmarks/dropout.py --markdown      # tables as Markdown
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import dropkit
from dropkit.functional import dropout as dk_dropout

P = 0.5
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def saved_bytes_per_element(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> float:
    """Bytes autograd keeps for backward per input element (the input is a leaf, so a dropout
    whose input is not otherwise needed should keep nothing of its size)."""
    leaf = x.detach().requires_grad_()
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(leaf)
    return total / leaf.numel()


def make_variants(x: torch.Tensor) -> dict[str, dict[str, Callable[[], object]]]:
    out = torch.empty_like(x)
    leaf = x.detach().clone().requires_grad_()
    grad = torch.ones_like(x)
    compiled = torch.compile(lambda t: torch.nn.functional.dropout(t, P, True))

    def fwd(fn):
        def run():
            with torch.no_grad():
                fn(x)

        return run

    def fwd_bwd(fn):
        def run():
            leaf.grad = None
            fn(leaf).backward(grad)

        return run

    def in_place(fn):
        # Its own buffer: repeated in-place dropout zeroes or doubles its elements, which changes
        # no timing over the few rounds run here.
        work = x.clone()

        def run():
            with torch.no_grad():
                fn(work)

        return run

    torch_eager = lambda t: torch.nn.functional.dropout(t, P, True)  # noqa: E731
    dk = lambda t: dk_dropout(t, P, True)  # noqa: E731
    return {
        "copy_": {"fwd": lambda: out.copy_(x)},
        "clone": {"fwd": lambda: x.clone()},
        "torch eager": {
            "fwd": fwd(torch_eager),
            "fwd+bwd": fwd_bwd(torch_eager),
            "in place": in_place(lambda t: torch.nn.functional.dropout(t, P, True, inplace=True)),
        },
        "torch.compile": {"fwd": fwd(compiled), "fwd+bwd": fwd_bwd(compiled)},
        "dropkit": {
            "fwd": fwd(dk),
            "fwd+bwd": fwd_bwd(dk),
            "in place": in_place(lambda t: dk_dropout(t, P, True, inplace=True)),
        },
    }


def measure(x: torch.Tensor, repeats: int) -> dict[tuple[str, str], float]:
    variants = make_variants(x)
    runs = [(name, kind, fn) for name, kinds in variants.items() for kind, fn in kinds.items()]
    for _, _, fn in runs:  # warm up: compilation, caches, page faults
        fn()
        fn()
    times: dict[tuple[str, str], list[float]] = {(n, k): [] for n, k, _ in runs}
    for _ in range(repeats):
        for name, kind, fn in runs:
            start = time.perf_counter()
            fn()
            times[(name, kind)].append(time.perf_counter() - start)
    return {key: statistics.median(values) for key, values in times.items()}


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}" if seconds < 0.01 else f"{seconds * 1e3:.1f}"


def table(rows: list[list[str]], header: list[str], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes",
        default="16:float32,20:float32,24:float32,24:bfloat16",
        help="comma-separated log2(size):dtype pairs",
    )
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds per variant (>= 1)")
    parser.add_argument("--quick", action="store_true", help="5 rounds")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    repeats = 5 if args.quick else args.repeats
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    cases = []
    for item in args.sizes.split(","):
        log2, _, dtype_name = item.partition(":")
        if dtype_name not in DTYPES:
            parser.error(f"--sizes dtype must be one of {sorted(DTYPES)}, got {dtype_name!r}")
        cases.append((int(log2), dtype_name))

    print(
        f"torch {torch.__version__}, dropkit {dropkit.__version__}, threads "
        f"{torch.get_num_threads()}, p={P}, {repeats} rounds, medians in ms"
    )
    header = [
        "size",
        "dtype",
        "copy_",
        "clone",
        "torch fwd",
        "compile fwd",
        "dropkit fwd",
        "torch/dk fwd",
        "dk/copy_ fwd",
        "dk/clone fwd",
        "torch f+b",
        "compile f+b",
        "dropkit f+b",
        "torch/dk f+b",
        "compile/dk f+b",
        "saved B/elem torch",
        "saved B/elem dk",
        "torch in place",
        "dropkit in place",
        "dk in place/copy_",
    ]
    rows = []
    verdicts = []
    for log2, dtype_name in cases:
        x = torch.randn(1 << log2).to(DTYPES[dtype_name])
        t = measure(x, repeats)
        torch_saved = saved_bytes_per_element(lambda v: torch.nn.functional.dropout(v, P), x)
        dk_saved = saved_bytes_per_element(lambda v: dk_dropout(v, P), x)
        copy, clone = t[("copy_", "fwd")], t[("clone", "fwd")]
        dk_f, dk_fb = t[("dropkit", "fwd")], t[("dropkit", "fwd+bwd")]
        dk_in_place = t[("dropkit", "in place")]
        rows.append(
            [
                f"2^{log2}",
                dtype_name,
                fmt_ms(copy),
                fmt_ms(clone),
                fmt_ms(t[("torch eager", "fwd")]),
                fmt_ms(t[("torch.compile", "fwd")]),
                fmt_ms(dk_f),
                f"{t[('torch eager', 'fwd')] / dk_f:.1f}x",
                f"{dk_f / copy:.2f}x",
                f"{dk_f / clone:.2f}x",
                fmt_ms(t[("torch eager", "fwd+bwd")]),
                fmt_ms(t[("torch.compile", "fwd+bwd")]),
                fmt_ms(dk_fb),
                f"{t[('torch eager', 'fwd+bwd')] / dk_fb:.1f}x",
                f"{t[('torch.compile', 'fwd+bwd')] / dk_fb:.1f}x",
                f"{torch_saved:.2f}",
                f"{dk_saved:.2f}",
                fmt_ms(t[("torch eager", "in place")]),
                fmt_ms(dk_in_place),
                f"{dk_in_place / copy:.2f}x",
            ]
        )
        if log2 == 24 and dtype_name == "float32":
            verdicts = [
                ("forward, torch eager / dropkit", t[("torch eager", "fwd")] / dk_f, ">=", 12),
                ("forward, dropkit / copy_", dk_f / copy, "<=", 2),
                ("forward, dropkit / clone", dk_f / clone, "<=", 2),
                ("forward in place (inplace=True), dropkit / copy_", dk_in_place / copy, "<=", 2),
                ("fwd+bwd, torch eager / dropkit", t[("torch eager", "fwd+bwd")] / dk_fb, ">=", 6),
                (
                    "fwd+bwd, torch.compile / dropkit",
                    t[("torch.compile", "fwd+bwd")] / dk_fb,
                    ">=",
                    3,
                ),
                # Only the 8-byte seed tensor may be kept: nothing of the input's size.
                ("bytes saved for backward in all, dropkit", dk_saved * x.numel(), "<=", 8),
            ]
    print(table(rows, header, args.markdown))
    if verdicts:
        print("\nTargets at 2^24 float32:")
        for label, value, relation, target in verdicts:
            met = value >= target if relation == ">=" else value <= target
            verdict = "met" if met else "NOT met"
            print(f"  {label}: measured {value:.3g}, target {relation} {target} -> {verdict}")


if __name__ == "__main__":
    main()
