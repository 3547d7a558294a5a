"""Whole training steps of timm models with timm's own dropout-family layers beside the same
models with dropkit's drop-ins swapped in (``dropkit.compat.timm`` for DropPath and DropBlock2d,
``dropkit.replace_dropout`` for ``nn.Dropout``): eager and ``torch.compile``-d, one thread.

Both models hold the same weights and see the same batch; a round times one step of each (the
order alternating from round to round) and the row reports the median of the per-round ratios
dropkit/timm (< 1: dropkit is faster). Compiled rows also report dynamo's graph count over the
timed steps (1: compiled once). ``import timm`` needs a torchvision that matches the installed
torch (PyPI's torchvision beside a CPU-only torch 2.13 fails to import), e.g. torch 2.14.1 with
torchvision 0.29.1.

    python benchmarks/timm_models.py                         # resnet18, resnet50, vit_tiny
    python benchmarks/timm_models.py --models resnet18 --rounds 5 --no-compile
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import torch

import dropkit
from dropkit.compat import timm as dk_timm

# (timm name, create_model keyword arguments, input shape)
MODELS = {
    "resnet18": ({"drop_rate": 0.2, "drop_path_rate": 0.1, "drop_block_rate": 0.1},
                 (8, 3, 160, 160)),
    "resnet50": ({"drop_rate": 0.2, "drop_path_rate": 0.1, "drop_block_rate": 0.1},
                 (4, 3, 160, 160)),
    "vit_tiny_patch16_224": ({"drop_rate": 0.1, "drop_path_rate": 0.1}, (8, 3, 224, 224)),
}  # fmt: skip


def swapped(model: torch.nn.Module) -> tuple[torch.nn.Module, int]:
    """A copy of ``model`` with timm's DropPath / DropBlock2d and torch's Dropout replaced by
    dropkit's drop-ins (same arguments), and how many layers were replaced."""
    import timm.layers

    model = copy.deepcopy(model)
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, timm.layers.DropPath):
                new = dk_timm.DropPath(child.drop_prob, scale_by_keep=child.scale_by_keep)
            elif isinstance(child, timm.layers.DropBlock2d):
                new = dk_timm.DropBlock2d(
                    child.drop_prob, child.block_size, child.gamma_scale,
                    with_noise=child.with_noise, inplace=child.inplace,
                )  # fmt: skip
            else:
                continue
            setattr(parent, name, new)
            count += 1
    before = sum(isinstance(m, torch.nn.Dropout) for m in model.modules())
    model = dropkit.replace_dropout(model)
    return model, count + before


def _step(model, x, target):
    model.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), target)
    loss.backward()


def _timed(model, x, target) -> float:
    start = time.perf_counter()
    _step(model, x, target)
    return time.perf_counter() - start


def run(name: str, rounds: int, compile_: bool) -> tuple[float, float, float, int | None]:
    """(timm seconds, dropkit seconds, median ratio, graphs of the dropkit model or None)."""
    import timm
    from torch._dynamo.utils import counters

    kwargs, shape = MODELS[name]
    torch.manual_seed(0)
    ref = timm.create_model(name, num_classes=100, **kwargs).train()
    ours, replaced = swapped(ref)
    if replaced == 0:
        raise SystemExit(f"{name}: no dropout-family layer to replace")
    x = torch.randn(shape)
    target = torch.randint(0, 100, (shape[0],))
    graphs = None
    if compile_:
        torch._dynamo.reset()
        ref = torch.compile(ref)
        ours = torch.compile(ours)
    for model in (ref, ours):  # warm up (and compile)
        for _ in range(2):
            _step(model, x, target)
    if compile_:
        counters.clear()
    ref_t, our_t, ratios = [], [], []
    for r in range(rounds):
        if r % 2:
            b = _timed(ours, x, target)
            a = _timed(ref, x, target)
        else:
            a = _timed(ref, x, target)
            b = _timed(ours, x, target)
        ref_t.append(a)
        our_t.append(b)
        ratios.append(b / a)
    if compile_:
        # Steps after warm-up: no new graph may appear (0 recompilations).
        graphs = counters["stats"].get("unique_graphs", 0)
    return statistics.median(ref_t), statistics.median(our_t), statistics.median(ratios), graphs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-compile", action="store_true", help="eager rows only")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, dropkit kernels: {dropkit.backend()}, "
          f"{args.threads} thread(s), {args.rounds} paired rounds")  # fmt: skip
    print(f"{'model':22} {'mode':9} {'timm ms':>9} {'dropkit ms':>10}  ratio  new graphs")
    for name in args.models:
        for compile_ in (False, True) if not args.no_compile else (False,):
            ref_s, our_s, ratio, graphs = run(name, args.rounds, compile_)
            extra = "" if graphs is None else f"  {graphs}"
            print(f"{name:22} {'compiled' if compile_ else 'eager':9} {ref_s * 1e3:9.1f} "
                  f"{our_s * 1e3:10.1f}  {ratio:.3f}x{extra}")  # fmt: skip
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
