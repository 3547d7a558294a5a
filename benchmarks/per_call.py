"""Per call, at the shapes real models use: dropkit beside the layer it replaces (torch, timm,
torchvision), forward and forward+backward, with one thread and with two.

Each row times the peer and dropkit in pairs: a round runs the peer then dropkit (the order
alternating from round to round), each for ``--calls`` calls, and the row reports the median of
the per-round ratios dropkit/peer (< 1: dropkit is faster), with the medians of the per-call times.
A round's two timings share the machine's state, so a busy neighbour slows both; the ratio of
each pair is what the target (dropkit <= 1.0x the peer on every row) is checked on.

    python benchmarks/per_call.py                 # every row, 1 and 2 threads
    python benchmarks/per_call.py --rounds 5      # quicker, noisier
    python benchmarks/per_call.py --markdown      # a table for the docs
    python benchmarks/per_call.py --only drop_block  # the rows whose method contains a word
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from family import _peer  # noqa: E402  (the peers' plain-Python layer files)

from dropkit import functional as DF  # noqa: E402
from dropkit.compat import timm as dk_timm  # noqa: E402
from dropkit.compat import torchvision as dk_tv  # noqa: E402


def rows() -> list[tuple[str, str, tuple[int, ...], Callable, Callable]]:
    """(name, peer, shape, peer's call, dropkit's call)."""
    tnf = torch.nn.functional
    timm = _peer("timm", "layers/drop.py", "drop")
    tv = _peer("torchvision", "ops/stochastic_depth.py", "stochastic_depth")
    return [
        ("dropout", "torch", (100, 800), lambda x: tnf.dropout(x, 0.5),
         lambda x: DF.dropout(x, 0.5)),
        ("dropout", "torch", (32, 197, 384), lambda x: tnf.dropout(x, 0.1),
         lambda x: DF.dropout(x, 0.1)),
        ("dropout2d", "torch", (32, 64, 16, 16), lambda x: tnf.dropout2d(x, 0.2),
         lambda x: DF.dropout2d(x, 0.2)),
        ("dropout3d", "torch", (8, 32, 8, 8, 8), lambda x: tnf.dropout3d(x, 0.2),
         lambda x: DF.dropout3d(x, 0.2)),
        ("alpha_dropout", "torch", (100, 800), lambda x: tnf.alpha_dropout(x, 0.2, True),
         lambda x: DF.alpha_dropout(x, 0.2, True)),
        ("drop_path", "timm", (32, 197, 192), lambda x: timm.drop_path(x, 0.1, True),
         lambda x: dk_timm.drop_path(x, 0.1, True)),
        ("drop_path", "timm", (8, 256, 14, 14), lambda x: timm.drop_path(x, 0.1, True),
         lambda x: dk_timm.drop_path(x, 0.1, True)),
        ("stochastic_depth row", "torchvision", (32, 197, 192),
         lambda x: tv.stochastic_depth(x, 0.1, "row", True),
         lambda x: dk_tv.stochastic_depth(x, 0.1, "row", True)),
        ("stochastic_depth row", "torchvision", (8, 256, 14, 14),
         lambda x: tv.stochastic_depth(x, 0.1, "row", True),
         lambda x: dk_tv.stochastic_depth(x, 0.1, "row", True)),
        # timm's ResNets: DropBlock of size 5 in stage 3, 3 in stage 4 (timm's drop_blocks()).
        ("drop_block2d k=5", "timm", (8, 256, 14, 14),
         lambda x: timm.drop_block_2d(x, 0.1, 5, 0.25),
         lambda x: dk_timm.drop_block_2d(x, 0.1, 5, 0.25)),
        ("drop_block2d k=3", "timm", (8, 512, 7, 7),
         lambda x: timm.drop_block_2d(x, 0.1, 3, 1.0),
         lambda x: dk_timm.drop_block_2d(x, 0.1, 3, 1.0)),
    ]  # fmt: skip


def _timed(fn: Callable, x: torch.Tensor, grad: torch.Tensor | None, calls: int) -> float:
    """Seconds per call of ``fn(x)`` (and its backward with ``grad``)."""
    start = time.perf_counter()
    if grad is None:
        with torch.no_grad():
            for _ in range(calls):
                fn(x)
    else:
        for _ in range(calls):
            fn(x).backward(grad)
    return (time.perf_counter() - start) / calls


def measure(peer: Callable, ours: Callable, shape, backward: bool, rounds: int, calls: int):
    """(peer seconds, dropkit seconds, median ratio dropkit/peer) over paired rounds."""
    x = torch.randn(shape, requires_grad=backward)
    grad = torch.randn(shape) if backward else None
    for fn in (peer, ours):  # warm up: first calls, caches, the allocator
        _timed(fn, x, grad, max(calls // 4, 2))
    peer_times, our_times, ratios = [], [], []
    for r in range(rounds):
        if r % 2:
            ours_t = _timed(ours, x, grad, calls)
            peer_t = _timed(peer, x, grad, calls)
        else:
            peer_t = _timed(peer, x, grad, calls)
            ours_t = _timed(ours, x, grad, calls)
        peer_times.append(peer_t)
        our_times.append(ours_t)
        ratios.append(ours_t / peer_t)
    return statistics.median(peer_times), statistics.median(our_times), statistics.median(ratios)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="paired rounds per row (15)")
    parser.add_argument("--calls", type=int, default=50, help="calls per timing (50)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--only", metavar="TEXT", default="",
                        help="only the rows whose method name contains TEXT")  # fmt: skip
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.calls < 1 or any(t < 1 for t in args.threads):
        parser.error("--rounds, --calls and --threads must be >= 1")
    header = ("method", "peer", "shape", "threads", "pass", "peer us", "dropkit us", "ratio")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
    else:
        print(f"{'method':22} {'peer':12} {'shape':18} thr pass   {'peer us':>9} "
              f"{'dropkit us':>10}  ratio")  # fmt: skip
    misses = 0
    torch.manual_seed(0)
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, peer_name, shape, peer, ours in rows():
            if args.only not in name:
                continue
            for backward in (False, True):
                peer_s, our_s, ratio = measure(peer, ours, shape, backward, args.rounds,
                                               args.calls)  # fmt: skip
                misses += ratio > 1.0
                cells = (name, peer_name, "x".join(map(str, shape)), str(threads),
                         "f+b" if backward else "fwd", f"{peer_s * 1e6:.1f}",
                         f"{our_s * 1e6:.1f}", f"{ratio:.2f}x")  # fmt: skip
                if args.markdown:
                    print("| " + " | ".join(cells) + " |")
                else:
                    print(f"{cells[0]:22} {cells[1]:12} {cells[2]:18} {cells[3]:>3} {cells[4]:4} "
                          f"{cells[5]:>9} {cells[6]:>10}  {cells[7]}")  # fmt: skip
                sys.stdout.flush()
    print(f"\nrows above 1.0x (dropkit slower than the peer): {misses}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
