"""dropkit's dropout family beside the mainstream implementations, on the same inputs, in one run.

For every method that torch, torchvision or timm also implements, it times forward and
forward+backward of both, interleaved round by round, and prints medians and the ratio
other/dropkit (> 1: dropkit is faster). torchvision's DropBlock and stochastic depth and timm's
drop-path are plain Python files; they are loaded from the installed packages' source files, since
``import torchvision`` fails beside torch 2.13 ("operator torchvision::nms does not exist") and
``timm.layers`` imports torchvision.

    python benchmarks/family.py            # default sizes
    python benchmarks/family.py --quick    # fewer rounds
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import statistics
import sys
import time
import types
from collections.abc import Callable

import torch

from dropkit import functional as DF


def _peer(package: str, relative: str, name: str):
    """The module at ``relative`` inside the installed ``package``, loaded on its own; its one
    import from torchvision (a usage logger) is stubbed."""
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise SystemExit(f"{package} is not installed: pip install --no-deps {package}")
    path = pathlib.Path(spec.submodule_search_locations[0], relative)
    root = "_bench_peer"
    for stub in (root, f"{root}.ops"):
        sys.modules.setdefault(stub, types.ModuleType(stub)).__path__ = []
    utils = sys.modules.setdefault(f"{root}.utils", types.ModuleType(f"{root}.utils"))
    utils._log_api_usage_once = lambda obj: None
    module_spec = importlib.util.spec_from_file_location(f"{root}.ops.{name}", path)
    module = importlib.util.module_from_spec(module_spec)
    module.__package__ = f"{root}.ops"
    module_spec.loader.exec_module(module)
    return module


def cases() -> list[tuple[str, str, tuple[int, ...], Callable, Callable]]:
    tnf = torch.nn.functional
    found = [
        ("dropout", "torch", (256, 4096), lambda x: tnf.dropout(x, 0.5),
         lambda x: DF.dropout(x, 0.5)),
        ("dropout1d", "torch", (64, 256, 256), lambda x: tnf.dropout1d(x, 0.5),
         lambda x: DF.dropout1d(x, 0.5)),
        ("dropout2d", "torch", (64, 64, 32, 32), lambda x: tnf.dropout2d(x, 0.5),
         lambda x: DF.dropout2d(x, 0.5)),
        ("dropout3d", "torch", (16, 32, 16, 16, 16), lambda x: tnf.dropout3d(x, 0.5),
         lambda x: DF.dropout3d(x, 0.5)),
        ("alpha_dropout", "torch", (256, 4096), lambda x: tnf.alpha_dropout(x, 0.2, True),
         lambda x: DF.alpha_dropout(x, 0.2, True)),
        ("feature_alpha_dropout", "torch", (64, 64, 32, 32),
         lambda x: tnf.feature_alpha_dropout(x, 0.2, True),
         lambda x: DF.feature_alpha_dropout(x, 0.2, True)),
    ]  # fmt: skip
    block = _peer("torchvision", "ops/drop_block.py", "drop_block")
    depth = _peer("torchvision", "ops/stochastic_depth.py", "stochastic_depth")
    timm = _peer("timm", "layers/drop.py", "timm_drop")
    found += [
        ("stochastic_depth", "torchvision", (256, 64, 16, 16),
         lambda x: depth.stochastic_depth(x, 0.2, "row"),
         lambda x: DF.stochastic_depth(x, 0.2, "row")),
        ("drop_block2d", "torchvision", (64, 64, 32, 32),
         lambda x: block.drop_block2d(x, 0.1, 5),
         lambda x: DF.drop_block2d(x, 0.1, 5, normalize="batch")),
        ("drop_block3d", "torchvision", (16, 32, 16, 16, 16),
         lambda x: block.drop_block3d(x, 0.1, 3),
         lambda x: DF.drop_block3d(x, 0.1, 3, normalize="batch")),
        ("drop_block_2d", "timm", (64, 64, 32, 32),
         lambda x: timm.drop_block_2d(x, 0.1, 5),
         lambda x: DF.drop_block2d(x, 0.1, 5, border="clip", per_channel=False,
                                   normalize="batch")),
        ("drop_path", "timm", (256, 64, 16, 16),
         lambda x: timm.drop_path(x, 0.2, True), lambda x: DF.drop_path(x, 0.2, True)),
    ]  # fmt: skip
    return found


def time_pair(shape, other, ours, rounds):
    x = torch.randn(shape)
    leaf = x.clone().requires_grad_()
    grad = torch.ones_like(x)

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

    runs = {
        ("other", "fwd"): fwd(other),
        ("dropkit", "fwd"): fwd(ours),
        ("other", "f+b"): fwd_bwd(other),
        ("dropkit", "f+b"): fwd_bwd(ours),
    }
    for fn in runs.values():
        fn()
    times = {key: [] for key in runs}
    for _ in range(rounds):
        for key, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    return {key: statistics.median(v) for key, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9, help="timed rounds (>= 1)")
    parser.add_argument("--quick", action="store_true", help="3 rounds")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    rounds = 3 if args.quick else args.rounds
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, medians of {rounds} (ms)")
    print("| method | library | shape | lib fwd | dropkit fwd | lib/dk fwd | lib f+b | dropkit f+b "
          "| lib/dk f+b |\n|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    slower = []
    for name, library, shape, other, ours in cases():
        t = time_pair(shape, other, ours, rounds)
        r_f = t[("other", "fwd")] / t[("dropkit", "fwd")]
        r_fb = t[("other", "f+b")] / t[("dropkit", "f+b")]
        print(
            f"| {name} | {library} | {'x'.join(map(str, shape))} | {t[('other', 'fwd')] * 1e3:.2f} "
            f"| {t[('dropkit', 'fwd')] * 1e3:.2f} | {r_f:.2f}x | {t[('other', 'f+b')] * 1e3:.2f} "
            f"| {t[('dropkit', 'f+b')] * 1e3:.2f} | {r_fb:.2f}x |"
        )
        if r_f < 1 or r_fb < 1:
            slower.append(name)
    print("\ndropkit slower than the library for: " + (", ".join(slower) if slower else "none"))


if __name__ == "__main__":
    main()
