"""The CPU backend's build and cache under real conditions, in subprocesses: first use by four
processes at once, damaged cache files, a build-lock holder that dies, a partial rebuild followed
by later processes (benchmarks/repro_cache.sh), forked children and DataLoader workers, and no
compiler at all. No process may crash or return a different result."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Each child computes dropout, Gaussian noise and bias-dropout-add with the default backend and
# with the reference, and prints one JSON line: whether they agree, and what the backend did.
CHILD = r"""
import json, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import torch
    import dropkit
    from dropkit import kernels, rng
    from dropkit.kernels import cpu
    x = torch.randn(3001, generator=torch.Generator().manual_seed(0))
    t = rng.keep_threshold(0.3)

    def run():
        return [
            kernels.apply_keep_mask(x, 5, 3, t, 1 / 0.7),
            kernels.normal((77,), 9, 2),
            kernels.bias_dropout_add(
                x[:3000].view(3, 1000), x[:1000], x[1:3001].view(3, 1000), 1, 2, t, 2.0
            ),
        ]

    fast = run()
    fast += run()  # a second call: still one warning at most
    dropkit.set_backend("reference")
    want = run() * 2
print(json.dumps({
    "equal": all(torch.equal(a, b) for a, b in zip(fast, want)),
    "loaded": cpu._state.lib is not None,
    "built": cpu._state.built,
    "warnings": [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)],
}))
"""


def child_env(cache: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["DROPKIT_CACHE_DIR"] = str(cache)
    env.pop("DROPKIT_BACKEND", None)
    env.update(extra)
    return env


def start(cache: Path, **extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD],
        env=child_env(cache, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen, timeout: float = 600) -> dict:
    stdout, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, f"rc={process.returncode}\n{stderr}"
    return json.loads(stdout.strip().splitlines()[-1])


def library(cache: Path) -> Path:
    (folder,) = cache.glob("cpu-*")
    return folder / "libdropkit_cpu.so"


@pytest.fixture(scope="module")
def first_use(tmp_path_factory):
    """Four processes use dropkit at once on an empty cache: their results and the cache."""
    cache = tmp_path_factory.mktemp("four-at-once")
    processes = [start(cache) for _ in range(4)]
    return [finish(process) for process in processes], cache


@pytest.mark.slow
def test_four_processes_at_once_build_once_and_agree(first_use):
    results, cache = first_use
    assert all(r["equal"] and r["loaded"] and not r["warnings"] for r in results), results
    assert sum(r["built"] for r in results) == 1  # one built under the lock, three waited
    assert not list(library(cache).parent.glob("build-*"))  # no build folder left behind


def damage_checksum(lib: Path) -> None:
    checksum = lib.with_name(lib.name + ".sha256")
    checksum.write_bytes(checksum.read_bytes()[:10])


def delete_library(lib: Path) -> None:
    lib.unlink()


@pytest.mark.slow
@pytest.mark.parametrize("damage", [damage_checksum, delete_library])
def test_damaged_cache_is_named_and_rebuilt(first_use, tmp_path, damage):
    cache = tmp_path / "cache"
    shutil.copytree(first_use[1], cache)
    damage(library(cache))
    result = finish(start(cache))
    assert result["equal"] and result["loaded"] and result["built"]
    (warning,) = result["warnings"]
    assert str(library(cache)) in warning and "rebuilding it" in warning
    again = finish(start(cache))  # the rebuilt library is loaded as it is
    assert again["equal"] and again["loaded"] and not again["built"] and not again["warnings"]


HOLDER = r"""
import fcntl, os, signal, sys, time
handle = open(sys.argv[1], "a+b")
fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
os.kill(os.getpid(), signal.SIGKILL)  # dies holding the lock, as a killed build would
"""


@pytest.mark.slow
def test_a_build_lock_holder_that_dies_blocks_nobody(first_use, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(first_use[1], cache)
    lib = library(cache)
    lib.unlink()  # so the next process must build, under the lock
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lib.parent / "build.lock"), "3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    began = time.monotonic()
    worker = start(cache)
    assert holder.wait(timeout=60) == -signal.SIGKILL
    result = finish(worker)
    assert result["equal"] and result["loaded"] and result["built"]
    assert time.monotonic() - began >= 2  # it waited for the holder, then went on


@pytest.mark.slow
def test_repro_script_partial_rebuild_then_later_processes():
    env = child_env(Path("/nonexistent"), PY=sys.executable)
    env.pop("DROPKIT_CACHE_DIR")
    run = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "repro_cache.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=True,
    )
    lines = run.stdout.splitlines()
    assert [line.strip() for line in lines if "rc=" in line] == ["rc=0"] * 6, run.stdout
    results = [line.split() for line in lines if "same-as-reference" in line]
    assert [r[0] for r in results] == ["same-as-reference=True"] * 6, run.stdout
    built = [True, True, False, False, True, False]
    assert [r[1] for r in results] == [f"built={b}" for b in built], run.stdout
    assert sum("rebuilding it" in line for line in lines) == 2


@pytest.mark.parametrize("compiler", ["/nonexistent/dropkit-c++", "false"])
def test_no_compiler_falls_back_to_the_reference_with_one_warning(tmp_path, compiler):
    result = finish(start(tmp_path / "cache", CXX=compiler))
    assert result["equal"] and not result["loaded"] and not result["built"]
    (warning,) = result["warnings"]
    assert "reference backend" in warning and compiler in warning and "CXX" in warning


FORK = r"""
import hashlib
import multiprocessing as mp
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
import dropkit
from dropkit import functional as DF

# The children run no parallel torch operator of their own: with GNU OpenMP (torch's CPU wheels)
# those hang in a child forked after the parent used its thread team, unless the child calls
# torch.set_num_threads(1) (as DataLoader workers do). dropkit's kernels run there regardless.
torch.set_num_threads(2)

def work(seed):
    x = torch.from_numpy(np.ones(1 << 18, dtype=np.float32))
    maps = torch.from_numpy(np.ones((16, 64, 16, 16), dtype=np.float32))
    # Elementwise, broadcast (channel) and affine masks: each one kernel call, serial in a child.
    ys = [DF.dropout(x, 0.5, seed=seed), DF.dropout2d(maps, 0.5, seed=seed),
          DF.feature_alpha_dropout(maps, 0.5, True, seed=seed)]
    # With a gradient: the C++ op dropkit_cpu::keep and its autograd node, serial in a child too.
    leaf = torch.from_numpy(np.ones(1 << 18, dtype=np.float32)).requires_grad_()
    y = DF.dropout(leaf, 0.5, seed=seed)
    y.backward(torch.from_numpy(np.full(1 << 18, 3.0, dtype=np.float32)))
    ys += [y.detach(), leaf.grad]
    return torch.get_num_threads(), [hashlib.sha256(y.numpy().tobytes()).hexdigest() for y in ys]

class Noisy(Dataset):
    def __len__(self):
        return 4
    def __getitem__(self, i):
        return DF.dropout(torch.from_numpy(np.ones(1 << 16, dtype=np.float32)), 0.3, seed=i)

if __name__ == "__main__":
    parent = [work(seed) for seed in range(4)]  # the parent uses the kernels (2 threads) first
    with mp.get_context("fork").Pool(2) as pool:
        children = pool.map(work, range(4))
    loader = DataLoader(Noisy(), batch_size=2, num_workers=2, multiprocessing_context="fork")
    batches = torch.cat(list(loader))
    dropkit.set_backend("reference")
    want = torch.stack([DF.dropout(torch.ones(1 << 16), 0.3, seed=i) for i in range(4)])
    assert children == parent, (children, parent)
    assert torch.equal(batches, want)
    print("ok")
"""


def test_forked_children_and_dataloader_workers_use_dropkit_after_the_parent(tmp_path):
    script = tmp_path / "fork_check.py"
    script.write_text(FORK)
    env = child_env(tmp_path / "unused")
    env.pop("DROPKIT_CACHE_DIR")  # the user's cache, as a real program would
    run = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


INTERRUPTED = r"""
import torch
from dropkit.kernels import cpu
print("ready", flush=True)
cpu.available()
print("finished", flush=True)
"""


@pytest.mark.slow
def test_ctrl_c_during_the_first_build_leaves_nothing_half_done(tmp_path):
    cache = tmp_path / "cache"
    child = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED],
        env=child_env(cache),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "ready"
    time.sleep(0.5)  # inside the compile (it takes seconds)
    child.send_signal(signal.SIGINT)
    stdout, stderr = child.communicate(timeout=300)
    if "finished" not in stdout:  # interrupted, as intended: by KeyboardInterrupt, not a crash
        # (Python exits by re-raising SIGINT: returncode -2.)
        assert child.returncode == -signal.SIGINT and "KeyboardInterrupt" in stderr, stderr
    assert not list(cache.glob("cpu-*/build-*"))  # the build folder was removed
    result = finish(start(cache))
    assert result["equal"] and result["loaded"] and not result["warnings"]
