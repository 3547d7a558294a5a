"""Forked children (multiprocessing "fork", DataLoader workers, nested forks): every dropkit kernel
finishes there and draws the parent's bits, whether the parent had called dropkit before the fork
or not. The C++ kernels are loaded when dropkit is imported, so their fork handler (run the
kernels on the calling thread in a child) is in place before any fork a user makes.

Ops that run torch's own parallel operators (Gaussian noise, DropBlock, Cutout, the generic
layouts) behave as torch does in a child forked after the parent used its thread team: with GNU
OpenMP they hang unless the child calls ``torch.set_num_threads(1)`` first (as DataLoader workers
do). The children below do that before those ops, and only before those.

Each scenario runs in a subprocess with a timeout: a hang fails the test instead of the suite.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = r"""
import hashlib, os, sys, time
import numpy as np
import torch
import dropkit
from dropkit import functional as DF

torch.set_num_threads(2)
WHEN, DEPTH = sys.argv[1], int(sys.argv[2])

def digest(t):
    # numpy reads any layout in logical order: no torch operator (a parallel copy) in the child
    return hashlib.sha256(t.detach().numpy().tobytes()).hexdigest()[:16]

# Inputs made here, in the parent: making them in a child would run torch's own (parallel)
# operators there.
X = torch.from_numpy(np.linspace(-1, 1, 1 << 18, dtype=np.float32))
GRAD = torch.from_numpy(np.full(1 << 18, 3.0, dtype=np.float32))
MAPS = torch.from_numpy(np.ones((16, 64, 16, 16), dtype=np.float32))
MAPS_CL = MAPS.contiguous(memory_format=torch.channels_last)
SMALL = torch.from_numpy(np.ones((8, 16, 24, 24), dtype=np.float32))

def owned(seed):
    # dropkit's own kernels: element-wise, broadcast, channels-last, affine, fused, with gradients.
    leaf = X.detach().requires_grad_()
    y = DF.dropout(leaf, 0.5, seed=seed)
    y.backward(GRAD)
    out = [DF.dropout(X, 0.5, seed=seed), DF.dropout2d(MAPS, 0.5, seed=seed),
           DF.dropout2d(MAPS_CL, 0.5, seed=seed),
           DF.feature_alpha_dropout(MAPS, 0.5, True, seed=seed),
           DF.drop_path(MAPS, 0.5, True, seed=seed),
           DF.bias_dropout_add(X.view(512, 512), X[:512], X.view(512, 512), 0.3, seed=seed),
           y, leaf.grad]
    return [digest(t) for t in out]

def torch_parallel(seed):
    # Methods written with torch's own operators: one thread in a child, as torch requires.
    maps = SMALL
    out = [DF.gaussian_dropout(maps, 0.3, True, seed=seed),
           DF.drop_block2d(maps, 0.2, 3, seed=seed), DF.cutout(maps, 5, seed=seed)]
    return [digest(t) for t in out]

def run_child(depth):
    # In the child: dropkit's kernels first (no thread-count change), then torch's operators
    # with one thread; then, for nested forks, a grandchild does the same.
    pid = os.fork()
    if pid == 0:
        try:
            result = owned(7)
            torch.set_num_threads(1)
            result += torch_parallel(7)
            if depth > 1:
                nested = run_child(depth - 1)
                assert nested == result, (nested, result)
            with open(f"child-{os.getpid()}.txt", "w") as f:
                f.write(" ".join(result))
            os._exit(0)
        except BaseException as error:
            print("child failed:", repr(error), file=sys.stderr, flush=True)
            os._exit(1)
    deadline = time.time() + 60
    while time.time() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0, status
            with open(f"child-{pid}.txt") as f:
                return f.read().split()
        time.sleep(0.05)
    os.kill(pid, 9)
    raise SystemExit(f"child {pid} hung")

(torch.randn(512, 512) @ torch.randn(512, 512)).sum()  # torch's thread team is now in use
if WHEN == "after":
    owned(1)  # the parent has run dropkit's kernels too
children = run_child(DEPTH)
parent = owned(7) + torch_parallel(7)
assert children == parent, (children, parent)
print("ok", dropkit.backend())
"""


@pytest.mark.parametrize(
    "when, depth",
    [("before", 1), ("after", 1), ("before", 2), ("after", 3)],
    ids=["fork-before-first-use", "fork-after-use", "nested-before", "nested-after"],
)
def test_forked_children_finish_with_the_parents_bits(tmp_path, when, depth):
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, when, str(depth)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0 and run.stdout.startswith("ok"), run.stderr[-3000:]


DATALOADER = r"""
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from dropkit import functional as DF

torch.set_num_threads(2)
(torch.randn(512, 512) @ torch.randn(512, 512)).sum()

class Noisy(Dataset):
    def __len__(self):
        return 4
    def __getitem__(self, i):
        x = torch.from_numpy(np.ones((8, 32, 8, 8), dtype=np.float32))
        return DF.dropout2d(x, 0.3, seed=i) + DF.drop_block2d(x, 0.2, 3, seed=i)

loader = DataLoader(Noisy(), batch_size=2, num_workers=2, multiprocessing_context="fork")
batches = torch.cat(list(loader))
assert torch.equal(batches, torch.stack([Noisy()[i] for i in range(4)]))
print("ok")
"""


def test_dataloader_workers_use_dropkit_before_the_parent_does(tmp_path):
    run = subprocess.run(
        [sys.executable, "-c", DATALOADER], cwd=tmp_path, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]
