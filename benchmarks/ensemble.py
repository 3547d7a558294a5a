"""The ensemble trainer against today's worker processes: ``hinton2012-mnist --profile quick``.

The quick profile's 9 runs (3 configurations x 3 seeds, 784-800-800-10 on 2,000 MNIST images,
batches of 100), each cut to ``--epochs`` epochs (the full 100 take minutes per variant on 2
shared cores; an epoch's work is the same in every epoch, and the last epoch evaluates on the
10,000 test images as the profile does every 10th), trained three ways, interleaved round by round
so the machine's drifting load hits every variant alike:

- ``workers-2``: as ``dropkit run hinton2012-mnist --profile quick --workers 2`` trains them: two
  spawned worker processes with one torch thread each (the runner's choice on 2 cores), each
  training one run after another with :func:`~dropkit_lab.engine.trainer.train`;
- ``workers-1``: as the default ``--workers 1``: the runs one after another in one process with
  every core's thread;
- ``ensemble``: as ``--ensemble``: :func:`~dropkit_lab.engine.ensemble.train_ensemble`, all 9 as
  one stacked model in one process with every core's thread.

It prints each variant's median wall time, the ratios (paired per round, median) and checks that
the ensemble's weights (SHA-256 of every run's state dict) and histories equal those of the
variant trained with the same thread count (``workers-1``). The runs of ``workers-2`` differ from
both in their last bits where the thread count changes a matmul's summation order (one thread vs
two); that is the runner's recorded-threads semantics, not the ensemble's doing.

    python benchmarks/ensemble.py                        # 2 rounds of 5 epochs
    python benchmarks/ensemble.py --epochs 10 --rounds 3
    python benchmarks/ensemble.py --check-matmul         # bmm vs mm bit for bit, per shape

Run with ``PYTHONPATH=src`` from a checkout; MNIST from ``--data`` (default
``../shared/datasets``).
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _specs(epochs: int):
    from dropkit_lab.experiments.registry import get_experiment

    specs = get_experiment("hinton2012-mnist").runs("quick", 3)
    return [
        dataclasses.replace(s, train=dataclasses.replace(s.train, epochs=epochs)) for s in specs
    ]


def _data(root: str):
    from dropkit_lab.data import load_dataset

    spec = _specs(1)[0]
    return load_dataset("mnist", root).subset(spec.train_size, spec.test_size)


def _strip(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def _outcome(result):
    from dropkit_lab.engine.specs import weights_digest

    return weights_digest(result.model), _strip(result.history), result.test_errors


_WORKER = {}


def _init(threads: int, root: str) -> None:
    import torch

    torch.set_num_threads(threads)
    _WORKER["data"] = _data(root)


def _train_one(spec):
    from dropkit_lab.engine.trainer import train

    return _outcome(train(spec.model, spec.train, _WORKER["data"], progress="none"))


def workers(specs, n: int, threads: int, root: str):
    """The runner's worker processes: spawned, ``threads`` each, one run at a time, in order."""
    from dropkit_lab.engine.threads import passive_wait_environment

    passive_wait_environment()
    context = multiprocessing.get_context("spawn")
    with context.Pool(n, initializer=_init, initargs=(threads, root)) as pool:
        return pool.map(_train_one, specs, chunksize=1)


def serial(specs, threads: int, data):
    import torch

    from dropkit_lab.engine.trainer import train

    torch.set_num_threads(threads)
    return [_outcome(train(s.model, s.train, data, progress="none")) for s in specs]


def ensemble(specs, threads: int, data):
    import torch

    from dropkit_lab.engine.ensemble import Member, train_ensemble

    torch.set_num_threads(threads)
    members = [Member(s.model, s.train, name=s.run_id) for s in specs]
    return [_outcome(r) for r in train_ensemble(members, data, progress="none")]


def check_matmul() -> bool:
    """Whether ``baddbmm``/``bmm`` give each slice the bits of ``F.linear``'s forward and input
    gradient and of its weight gradient, at the lab's shapes, with 1 and 2 threads."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    shapes = [(100, 784, 800), (100, 800, 800), (100, 800, 10), (2000, 784, 800),
              (2000, 800, 10), (32, 64, 48), (32, 48, 10), (12, 48, 10), (4, 48, 10)]  # fmt: skip
    every = True
    print("threads (batch, in, out) K: forward, input grad, weight grad [bmm(x^T,g)^T, "
          "bmm(g^T,x), mm per member], bias grad")  # fmt: skip
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for b, i, o in shapes:
            for k in (1, 3, 9):
                x, w = torch.randn(k, b, i), torch.randn(k, o, i) * 0.05
                bias, g = torch.randn(k, o), torch.randn(k, b, o)
                ref = []
                for j in range(k):
                    xj, wj = x[j].clone().requires_grad_(), w[j].clone().requires_grad_()
                    bj = bias[j].clone().requires_grad_()
                    out = F.linear(xj, wj, bj)
                    out.backward(g[j])
                    ref.append((out.detach(), xj.grad, wj.grad, bj.grad))

                def same(stacked, n, ref=ref):
                    return all(torch.equal(r[n], s) for r, s in zip(ref, stacked, strict=True))

                fwd = torch.baddbmm(bias.unsqueeze(1), x, w.transpose(1, 2))
                gw_per = torch.stack([g[j].t().mm(x[j]) for j in range(k)])
                row = [
                    same(fwd, 0),
                    same(torch.bmm(g, w), 1),
                    same(torch.bmm(x.transpose(1, 2), g).transpose(1, 2), 2),
                    same(torch.bmm(g.transpose(1, 2), x), 2),
                    same(gw_per, 2),
                    same(g.sum(1), 3),
                ]
                every &= row[0] and row[1] and row[4] and row[5]
                print(threads, (b, i, o), k, row)
    print("the ensemble's formulation (forward, input grad, mm per member, bias) is exact:", every)
    return every


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "datasets"))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads of workers-1 and ensemble (default: every core)")  # fmt: skip
    parser.add_argument("--variants", nargs="+", default=["workers-2", "workers-1", "ensemble"])
    parser.add_argument("--check-matmul", action="store_true")
    args = parser.parse_args()
    from dropkit_lab.environment import passive_wait_environment

    passive_wait_environment()  # as the CLI: before torch starts its threads
    if args.check_matmul:
        return 0 if check_matmul() else 1
    specs = _specs(args.epochs)
    data = _data(args.data)
    print(f"{len(specs)} runs of hinton2012-mnist quick, {args.epochs} epochs each, "
          f"{args.rounds} rounds; {args.threads} threads; load {os.getloadavg()}")  # fmt: skip
    run = {
        "workers-2": lambda: workers(specs, 2, max(1, args.threads // 2), args.data),
        "workers-1": lambda: serial(specs, args.threads, data),
        "ensemble": lambda: ensemble(specs, args.threads, data),
    }
    times = {v: [] for v in args.variants}
    outcomes = {}
    for r in range(args.rounds):
        for v in args.variants:
            t0 = time.perf_counter()
            outcomes[v] = run[v]()
            times[v].append(time.perf_counter() - t0)
            print(f"round {r + 1} {v}: {times[v][-1]:.1f}s", flush=True)
    for v in args.variants:
        print(f"{v}: median {statistics.median(times[v]):.1f}s")
    ok = True
    if "ensemble" in times:
        for v in args.variants:
            if v == "ensemble":
                continue
            ratios = [a / b for a, b in zip(times[v], times["ensemble"], strict=True)]
            print(f"{v} / ensemble (paired, median): {statistics.median(ratios):.2f}x")
        if "workers-1" in outcomes:
            same = outcomes["ensemble"] == outcomes["workers-1"]
            print(f"ensemble == workers-1 (same threads), weights and histories: {same}")
            ok &= same
        if "workers-2" in outcomes:
            same = sum(a == b for a, b in zip(outcomes["ensemble"], outcomes["workers-2"]))
            print(f"ensemble == workers-2 ({max(1, args.threads // 2)} thread each): {same} of "
                  f"{len(specs)} runs bit for bit")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
