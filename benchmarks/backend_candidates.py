"""The CPU backend candidates of issue 12, side by side in one process: per-call time of the
keep-mask kernel (float32, out of place) at several sizes and thread counts.

Candidates: torch's own eager dropout (the yardstick), dropkit's plain-torch reference, the
reference compiled by Inductor (``torch.compile``), dropkit's C++ kernels
(:mod:`dropkit.kernels.cpu`) and, when ``--numba-module`` names the numba kernel file of an older
dropkit (e.g. ``src/dropkit/kernels/numba_cpu.py`` of commit 757a4e7, extracted with
``git archive 757a4e7 src | tar -x -C /tmp/old``) and numba is installed, that kernel. Results go
to ``docs/design/backends.md``; first-use (compile) times are measured there with separate
processes.

    python benchmarks/backend_candidates.py \
        [--numba-module /tmp/old/src/dropkit/kernels/numba_cpu.py]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from collections.abc import Callable

import torch

from dropkit import rng
from dropkit.kernels import cpu, reference

P = 0.5
THRESHOLD = rng.keep_threshold(P)
SCALE = 1 / (1 - P)


def load_numba(path: str):
    spec = importlib.util.spec_from_file_location("old_numba_cpu", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def candidates(numba_path: str | None) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    compiled = torch.compile(
        lambda t, seed: reference.apply_keep_mask(t, seed, 0, THRESHOLD, SCALE), dynamic=False
    )
    found: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "torch eager dropout": lambda t: torch.nn.functional.dropout(t, P, True),
        "reference": lambda t: reference.apply_keep_mask(t, 1, 0, THRESHOLD, SCALE),
        "reference + Inductor": lambda t: compiled(t, 1),
        "C++ at::parallel_for": lambda t: cpu.apply_keep_mask(t, 1, 0, THRESHOLD, SCALE),
    }
    if numba_path:
        numba_cpu = load_numba(numba_path)
        found["numba (old)"] = lambda t: numba_cpu.apply_keep_mask(t, 1, 0, THRESHOLD, SCALE)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--numba-module", default=None, help="path of an old numba_cpu.py")
    parser.add_argument("--sizes", default="10,16,20,24", help="comma-separated log2 sizes")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds (>= 1)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    variants = candidates(args.numba_module)
    names = list(variants)
    print("median ms per call (float32, out of place, p=0.5); ratio = torch eager / candidate")
    print(f"{'size':>6} {'thr':>3}  " + "  ".join(f"{n:>22}" for n in names))
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        for log2 in (int(s) for s in args.sizes.split(",")):
            x = torch.randn(1 << log2)
            repeats = args.repeats if log2 >= 20 else 20 * args.repeats
            for fn in variants.values():  # warm up: compile, caches, page faults
                fn(x)
                fn(x)
            times: dict[str, list[float]] = {n: [] for n in names}
            for _ in range(repeats):  # interleaved, so machine noise hits every variant alike
                for name, fn in variants.items():
                    start = time.perf_counter()
                    fn(x)
                    times[name].append(time.perf_counter() - start)
            med = {n: statistics.median(v) for n, v in times.items()}
            base = med["torch eager dropout"]
            cells = [f"{med[n] * 1e3:9.3f} ({base / med[n]:5.1f}x)" for n in names]
            print(f"  2^{log2:<3} {threads:>3}  " + "  ".join(f"{c:>22}" for c in cells))


if __name__ == "__main__":
    main()
