"""A bf16 training step of a 12-layer residual MLP stack: no dropout, torch's, dropkit's, fused.

Each layer is a pre-norm transformer MLP block, ``x = x + drop(W2 gelu(W1 LN(x)) + b2)`` (hidden
1024, expansion 4, p = 0.1), over 16k tokens (``(16, 1024, 1024)``), in bfloat16. Variants:

- ``none``: no dropout (``x + (W2 h + b2)``);
- ``torch``: ``x + torch.nn.functional.dropout(W2 h + b2)`` (torch's CUDA dropout keeps a 1-byte
  mask per element for backward);
- ``dropkit``: ``x + dropkit.functional.dropout(W2 h + b2)`` (the mask is regenerated from the
  seed in backward: nothing kept);
- ``dropkit_bda``: ``dropkit.functional.bias_dropout_add(W2 h, b2, x)`` (one fused pass).

A step is forward, backward and an SGD update; the step time is the median of ``--steps`` steps
after ``--warmup`` (CUDA events), the variants interleaved round by round. Peak memory is
``torch.cuda.max_memory_allocated`` over one step of each variant alone (stats reset first).
Targets (issue 18): dropkit's peak below torch's by about the masks' size (12 x 16M bytes), its
step time at most 1.02x torch's.

    python benchmarks/gpu_mlp_stack.py --json out.json
    python benchmarks/gpu_mlp_stack.py --cpu-check   # tiny sizes on the CPU: the script's logic
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
from torch import nn

VARIANTS = ("none", "torch", "dropkit", "dropkit_bda")
P = 0.1


class Block(nn.Module):
    def __init__(self, hidden: int, expansion: int, variant: str) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.up = nn.Linear(hidden, expansion * hidden)
        self.down = nn.Linear(expansion * hidden, hidden, bias=False)
        self.bias = nn.Parameter(torch.zeros(hidden))
        self.variant = variant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import dropkit.functional as dkf

        h = self.down(nn.functional.gelu(self.up(self.norm(x))))
        if self.variant == "none":
            return x + (h + self.bias)
        if self.variant == "torch":
            return x + nn.functional.dropout(h + self.bias, P, self.training)
        if self.variant == "dropkit":
            return x + dkf.dropout(h + self.bias, P, self.training)
        return dkf.bias_dropout_add(h, self.bias, x, P, self.training)


def make_model(variant: str, layers: int, hidden: int, expansion: int, device, dtype):
    torch.manual_seed(0)  # the same weights for every variant
    blocks = [Block(hidden, expansion, variant) for _ in range(layers)]
    return nn.Sequential(*blocks).to(device=device, dtype=dtype).train()


class Timer:
    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda

    def __call__(self, fn) -> float:
        if self.cuda:
            start = torch.cuda.Event(enable_timing=True)
            stop = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            stop.record()
            stop.synchronize()
            return start.elapsed_time(stop) / 1e3
        begin = time.perf_counter()
        fn()
        return time.perf_counter() - begin


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--expansion", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=16 * 1024)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write every figure to this JSON file")
    parser.add_argument(
        "--cpu-check", action="store_true", help="tiny sizes on the CPU (tests the script)"
    )
    args = parser.parse_args()
    if args.cpu_check:
        args.layers, args.hidden, args.expansion, args.tokens = 2, 32, 2, 64
        args.steps, args.warmup = 2, 1
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        print("gpu_mlp_stack.py: no CUDA device; use --cpu-check on the CPU", file=sys.stderr)
        return 2
    import dropkit

    dtype = torch.bfloat16
    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name() if cuda else "CPU (--cpu-check)"
    tokens = args.tokens
    batch = max(1, tokens // 1024)
    shape = (batch, tokens // batch, args.hidden)
    print(
        f"{name}; torch {torch.__version__}, dropkit {dropkit.__version__}; {args.layers} layers, "
        f"hidden {args.hidden} x{args.expansion}, {tokens} tokens {shape}, bf16, p={P}; "
        f"median of {args.steps} steps after {args.warmup}"
    )
    gen = torch.Generator(device=device).manual_seed(1)
    x = torch.randn(shape, generator=gen, device=device, dtype=dtype)
    target = torch.randn(shape, generator=gen, device=device, dtype=dtype)
    timer = Timer(cuda)

    models, optimizers = {}, {}
    for v in VARIANTS:
        models[v] = make_model(v, args.layers, args.hidden, args.expansion, device, dtype)
        optimizers[v] = torch.optim.SGD(models[v].parameters(), lr=1e-4)

    def step(v: str) -> None:
        model, opt = models[v], optimizers[v]
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(model(x), target)
        loss.backward()
        opt.step()

    # What the autograd graph keeps for backward: the bytes of the distinct storages that
    # saved_tensors_hooks see during one forward (the definition of "kept for backward").
    kept = {}
    for v in VARIANTS:
        storages: dict[int, int] = {}

        def pack(t, storages=storages):
            storage = t.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = nn.functional.mse_loss(models[v](x), target)
        del loss
        kept[v] = sum(storages.values())

    # Peak memory of one step of each variant alone: the weights of all four variants resident,
    # no gradients (every variant's are freed first, or the variants measured later would carry
    # the earlier ones' gradients, 2 bytes per weight each, into their peak).
    peaks = {}
    for v in VARIANTS:
        step(v)  # warm: kernels compiled
        for optimizer in optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            step(v)
            torch.cuda.synchronize()
            peaks[v] = {
                "max_memory_allocated": torch.cuda.max_memory_allocated(),
                "above_resident": torch.cuda.max_memory_allocated() - base,
            }
        else:
            step(v)
            peaks[v] = {"max_memory_allocated": None, "above_resident": None}

    for _ in range(args.warmup):
        for v in VARIANTS:
            step(v)
    if cuda:
        torch.cuda.synchronize()
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(args.steps):
        for v in VARIANTS:
            times[v].append(timer(lambda v=v: step(v)))
    medians = {v: statistics.median(t) for v, t in times.items()}

    mask_bytes = args.layers * tokens * args.hidden  # torch's 1-byte masks
    print(f"{'variant':>12} {'step ms':>9} {'/torch':>7} {'peak MiB':>9} {'peak-torch MiB':>15} "
          f"{'kept MiB':>9} {'kept-torch MiB':>15}")  # fmt: skip
    for v in VARIANTS:
        peak = peaks[v]["max_memory_allocated"]
        torch_peak = peaks["torch"]["max_memory_allocated"]
        mib = f"{peak / 2**20:9.1f}" if peak is not None else f"{'-':>9}"
        diff = f"{(peak - torch_peak) / 2**20:15.1f}" if peak is not None else f"{'-':>15}"
        ratio = medians[v] / medians["torch"]
        print(f"{v:>12} {medians[v] * 1e3:9.3f} {ratio:6.3f}x {mib} {diff} "
              f"{kept[v] / 2**20:9.1f} {(kept[v] - kept['torch']) / 2**20:15.1f}")  # fmt: skip
    verdicts = []
    for v in ("dropkit", "dropkit_bda"):
        ratio = medians[v] / medians["torch"]
        line = f"{v}: step {ratio:.3f}x torch's (target <= 1.02x)"
        if cuda:
            above = peaks[v]["max_memory_allocated"] - peaks["torch"]["max_memory_allocated"]
            masks = mask_bytes / 2**20
            line += (f", peak {above / 2**20:+.1f} MiB vs torch's, kept for backward "
                     f"{(kept[v] - kept['torch']) / 2**20:+.1f} MiB vs torch's (torch's masks: "
                     f"{masks:.1f} MiB)")  # fmt: skip
        verdicts.append(line)
    print("\n".join(verdicts))
    if args.json:
        results = {
            "device": name,
            "torch": torch.__version__,
            "dropkit": dropkit.__version__,
            "layers": args.layers,
            "hidden": args.hidden,
            "expansion": args.expansion,
            "tokens": tokens,
            "shape": list(shape),
            "dtype": "bfloat16",
            "p": P,
            "steps": args.steps,
            "warmup": args.warmup,
            "median_step_s": medians,
            "step_s": times,
            "memory": peaks,
            "kept_for_backward_bytes": kept,
            "torch_mask_bytes": mask_bytes,
            "verdicts": verdicts,
            "cpu_check": args.cpu_check,
        }
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
