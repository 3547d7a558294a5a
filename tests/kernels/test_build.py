"""dropkit.kernels._build under real conditions, in subprocesses with timeouts: first use by four
processes at once, a damaged cache (truncated with a matching manifest, a FIFO, a symlink to
/dev/zero, deleted files, stale lock files of torch's builder), a stopped lock holder, a killed or
interrupted build, no compiler, a failed compile remembered, an unwritable cache, forks, and one
real torch operator. Sources are tiny (one compiles in about a second) except the operator's."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dropkit.kernels import _build

ROOT = Path(__file__).resolve().parents[2]

# A library with no torch code: its constructor sets an environment variable the child reads back.
TINY = """
#include <stdlib.h>
__attribute__((constructor)) static void loaded() {{ setenv("DROPKIT_TINY", "{tag}", 1); }}
extern "C" int dropkit_tiny() {{ return {tag}; }}
"""

# Loads a library and prints one JSON line: the path, whether the constructor ran, the warnings.
CHILD = r"""
import ctypes, json, signal, sys, time, warnings
signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
from pathlib import Path
began = time.perf_counter()
from dropkit.kernels import _build
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    started = time.perf_counter()
    path = _build.load_library(sys.argv[1], [Path(p) for p in sys.argv[2].split(",")],
                               extra_cflags=json.loads(sys.argv[3]))
    seconds = time.perf_counter() - started
    again = _build.load_library(sys.argv[1], [Path(p) for p in sys.argv[2].split(",")],
                                extra_cflags=json.loads(sys.argv[3]))
getenv = ctypes.CDLL(None).getenv
getenv.restype = ctypes.c_char_p
print(json.dumps({
    "path": None if path is None else str(path),
    "same": again == path,
    "loaded": (getenv(b"DROPKIT_TINY") or b"").decode(),
    "seconds": seconds,
    "warnings": [str(w.message) for w in caught],
}))
"""


def env_for(cache: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["DROPKIT_CACHE_DIR"] = str(cache)
    # Importing dropkit loads (and on an empty cache builds) its own kernels: these children test
    # the builder on their own library only.
    env["DROPKIT_BACKEND"] = "reference"
    env.update(extra)
    return env


def start(cache: Path, source: Path, cflags=("-O1",), prefix=(), **extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*prefix, sys.executable, "-c", CHILD, "tiny", str(source), json.dumps(list(cflags))],
        env=env_for(cache, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen, timeout: float = 120) -> dict:
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert process.returncode == 0, f"rc={process.returncode}\n{stderr}"
    result = json.loads(stdout.strip().splitlines()[-1])
    result["stderr"] = [line for line in stderr.splitlines() if line.strip()]
    result["built"] = any(line.startswith("dropkit: building") for line in result["stderr"])
    return result


def run(cache: Path, source: Path, timeout: float = 120, **options) -> dict:
    return finish(start(cache, source, **options), timeout)


def tiny(folder: Path, tag: int = 7) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "tiny.cpp"
    source.write_text(TINY.format(tag=tag))
    return source


def entry(cache: Path) -> Path:
    (folder,) = cache.glob("tiny-*")
    return folder


@pytest.fixture(scope="module")
def first_use(tmp_path_factory):
    """Four processes load the same library at once on an empty cache (torch's builder has a
    stale lock of its own in its default folder, which must not matter)."""
    base = tmp_path_factory.mktemp("first-use")
    source = tiny(base / "src")
    stale = base / "torch_extensions" / "tiny"
    stale.mkdir(parents=True)
    (stale / "lock").touch()
    cache = base / "cache"
    processes = [
        start(cache, source, TORCH_EXTENSIONS_DIR=str(base / "torch_extensions")) for _ in range(4)
    ]
    return [finish(p) for p in processes], cache, source


def test_four_processes_at_once_build_once(first_use):
    results, cache, _ = first_use
    assert all(r["path"] and r["loaded"] == "7" and r["same"] for r in results), results
    assert all(not r["warnings"] for r in results), results
    builders = [r for r in results if r["built"]]
    assert len(builders) == 1, results
    # The first build prints one line to stderr (what, why, how long); the others print nothing.
    (line,) = builders[0]["stderr"]
    assert re.fullmatch(
        r"dropkit: building the C\+\+ library tiny \(first use with torch \S+; .+\) \.\.\. "
        r"done in \d+\.\d s",
        line,
    ), line
    assert all(not r["stderr"] for r in results if not r["built"]), results
    folder = entry(cache)
    assert sorted(p.name for p in folder.iterdir()) == ["build.lock", "manifest.json", "tiny.so"]


def test_a_cached_library_loads_without_building(first_use):
    _, cache, source = first_use
    result = run(cache, source)
    assert result["path"] and result["loaded"] == "7" and not result["built"]
    assert not result["warnings"] and not result["stderr"]


def damaged_copy(first_use, tmp_path) -> tuple[Path, Path, Path]:
    cache = tmp_path / "cache"
    shutil.copytree(first_use[1], cache)
    folder = entry(cache)
    return cache, folder, folder / "tiny.so"


def truncate_with_matching_manifest(library: Path, fraction: float) -> None:
    data = library.read_bytes()[: int(library.stat().st_size * fraction)]
    library.write_bytes(data)
    manifest = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    library.with_name("manifest.json").write_text(json.dumps(manifest))
    # A checksum file beside it, updated too, as the audit did: it must not be trusted either.
    library.with_name("tiny.so.sha256").write_text(manifest["sha256"] + "\n")


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.8])
def test_truncated_library_is_rebuilt_not_loaded(first_use, tmp_path, fraction):
    cache, folder, library = damaged_copy(first_use, tmp_path)
    truncate_with_matching_manifest(library, fraction)
    result = run(cache, first_use[2])  # rc 0: no SIGBUS inside dlopen
    assert result["path"] and result["loaded"] == "7" and result["built"]
    (warning,) = result["warnings"]
    assert str(library) in warning and "truncated" in warning and "rebuilding it" in warning
    again = run(cache, first_use[2])
    assert again["path"] and not again["built"] and not again["warnings"]


def fifo(library: Path) -> None:
    library.unlink()
    os.mkfifo(library)


def symlink_to_dev_zero(library: Path) -> None:
    library.unlink()
    library.symlink_to("/dev/zero")


def delete_library(library: Path) -> None:
    library.unlink()
    # A build folder left by a killed build, with a stale lock of torch's builder in it.
    (library.parent / "build-killed").mkdir()
    (library.parent / "build-killed" / "lock").touch()


def delete_manifest(library: Path) -> None:
    library.with_name("manifest.json").unlink()


def flip_a_byte(library: Path) -> None:
    data = bytearray(library.read_bytes())
    data[len(data) // 2] ^= 0xFF
    library.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (fifo, "not a regular file"),
        (symlink_to_dev_zero, "symbolic link"),
        (delete_library, "missing"),
        (delete_manifest, "manifest"),
        (flip_a_byte, "SHA-256"),
    ],
)
def test_damaged_cache_is_named_and_rebuilt(first_use, tmp_path, damage, said):
    cache, folder, library = damaged_copy(first_use, tmp_path)
    damage(library)
    result = run(cache, first_use[2], timeout=60)  # a FIFO must not block the reader
    assert result["path"] and result["loaded"] == "7" and result["built"]
    (warning,) = result["warnings"]
    assert str(library) in warning and said in warning and "rebuilding it" in warning, warning
    assert stat.S_ISREG(os.lstat(library).st_mode)
    assert not list(folder.glob("build-*"))


HOLDER = r"""
import fcntl, json, os, signal, socket, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
with open(f"/proc/{os.getpid()}/stat") as f:
    start = int(f.read().rsplit(")", 1)[1].split()[19])
record = {"pid": os.getpid(), "start": start, "host": socket.gethostname()}
os.ftruncate(fd, 0)
os.pwrite(fd, json.dumps(record).encode(), 0)
if sys.argv[2] == "stop":
    print("locked", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)
else:  # exit, leaving the lock held by a forked child (which inherited the descriptor)
    if os.fork() == 0:
        os.setsid()
        signal.pause()
    print("locked", flush=True)
"""


@pytest.mark.parametrize("how", ["stop", "exit"])
def test_a_stuck_lock_holder_is_reported_within_seconds(first_use, tmp_path, how):
    cache, folder, library = damaged_copy(first_use, tmp_path)
    library.unlink()
    (folder / "manifest.json").unlink()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder / "build.lock"), how],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        pid = holder.pid
        began = time.monotonic()
        result = run(cache, first_use[2], timeout=60)
        assert time.monotonic() - began < 30
        assert result["path"] and result["loaded"] == "7" and result["built"]
        (warning,) = result["warnings"]
        assert f"process {pid}" in warning and "privately" in warning, warning
        assert ("kill -CONT" in warning) if how == "stop" else ("has exited" in warning)
        assert not library.exists()  # a private build does not touch the shared entry
    finally:
        if how == "stop":
            holder.kill()
            holder.wait()
        else:
            holder.wait()
            _kill_orphans_holding(folder / "build.lock")


def _kill_orphans_holding(lock: Path) -> None:
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            targets = [os.readlink(fd) for fd in fd_dir.iterdir()]
        except OSError:
            continue
        if str(lock) in targets:
            os.kill(int(fd_dir.parent.name), signal.SIGKILL)


# A source whose compile keeps cc1plus busy (a long constant evaluation) while spin.h says so.
SLOW = """
#include "spin.h"
constexpr long spin() { long s = 0; for (long i = 0; i < SPIN; ++i) s += i % 7; return s; }
static_assert(spin() >= 0);
extern "C" int dropkit_tiny() { return 1; }
"""


def compilers_of(source: Path) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes()
        except OSError:
            continue
        if b"cc1plus" in text and str(source).encode() in text:
            found.append(int(cmdline.parent.name))
    return found


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT])
def test_a_killed_build_leaves_no_compiler_and_the_next_process_builds(tmp_path, signum):
    source = tmp_path / "src" / "tiny.cpp"
    source.parent.mkdir()
    source.write_text(SLOW)
    (source.parent / "spin.h").write_text("#define SPIN 100000000L\n")  # minutes
    cache = tmp_path / "cache"
    flags = ["-fconstexpr-ops-limit=4000000000", "-fconstexpr-loop-limit=2000000000"]
    process = start(cache, source, cflags=flags)
    deadline = time.monotonic() + 60
    while not compilers_of(source):
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signum)
    process.communicate(timeout=30)
    assert process.returncode != 0
    deadline = time.monotonic() + 5
    while compilers_of(source) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not compilers_of(source), "a compiler outlived the killed build"
    (source.parent / "spin.h").write_text("#define SPIN 1L\n")  # not in the key: same entry
    result = run(cache, source, cflags=flags)  # the lock is free and the folder usable
    assert result["path"] and result["built"] and not result["warnings"]


def test_no_compiler_gives_none_and_one_warning(tmp_path):
    source = tiny(tmp_path / "src")
    result = run(tmp_path / "cache", source, CXX="/nonexistent/c++")
    assert result["path"] is None and result["same"] and not result["loaded"]
    (warning,) = result["warnings"]
    assert "no C++ compiler found" in warning and "/nonexistent/c++" in warning
    bare = tmp_path / "bin"
    bare.mkdir()
    result = run(tmp_path / "cache", source, PATH=str(bare), CXX="")
    (warning,) = result["warnings"]
    assert result["path"] is None and "no C++ compiler found ('c++' is not on PATH" in warning


def test_a_failed_compile_is_remembered_and_a_change_retries(tmp_path):
    source = tmp_path / "src" / "tiny.cpp"
    source.parent.mkdir()
    source.write_text("int broken( {\n")
    calls = tmp_path / "calls"
    wrapper = tmp_path / "c++"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec g++ "$@"\n')
    wrapper.chmod(0o755)
    cache = tmp_path / "cache"

    def compiles() -> int:
        return sum("-c" in line.split() for line in calls.read_text().splitlines())

    first = run(cache, source, CXX=str(wrapper))
    (warning,) = first["warnings"]
    assert first["path"] is None and first["built"] and compiles() == 1
    import torch

    assert "error" in warning and "tiny.cpp:1" in warning and torch.__version__ in warning
    assert "failed to compile" in warning
    second = run(cache, source, CXX=str(wrapper))
    (remembered,) = second["warnings"]
    assert second["path"] is None and not second["built"] and compiles() == 1  # no new compile
    assert "remembered in" in remembered and "tiny.cpp:1" in remembered
    source.write_text(TINY.format(tag=3))  # a fixed source is another key: built at once
    third = run(cache, source, CXX=str(wrapper))
    assert third["path"] and third["loaded"] == "3" and compiles() == 2


def test_a_changed_header_beside_the_sources_is_another_key(tmp_path):
    # The sources include "philox.h" from their folder: its bytes are part of the key.
    source = tmp_path / "tiny.cpp"
    source.write_text('#include "shared.h"\n')
    header = tmp_path / "shared.h"
    header.write_text("int a = 1;\n")
    compiler = _build._find_compiler()
    first = _build._key("tiny", [source], [], compiler)
    assert _build._key("tiny", [source], [], compiler) == first
    header.write_text("int a = 2;\n")
    assert _build._key("tiny", [source], [], compiler) != first


def unshare_works() -> bool:
    try:
        return subprocess.run(["unshare", "-U", "true"], timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.skipif(not unshare_works(), reason="needs `unshare -U` to drop write permission")
def test_an_unwritable_damaged_cache_is_built_once_in_a_private_fallback(first_use, tmp_path):
    # In a new user namespace even root is refused writes the folder's mode forbids.
    cache, folder, library = damaged_copy(first_use, tmp_path)
    truncate_with_matching_manifest(library, 0.5)
    for path in (folder, cache):
        path.chmod(0o555)
    temp = tmp_path / "tmp"
    temp.mkdir()
    try:
        options = {"prefix": ["unshare", "-U"], "TMPDIR": str(temp)}
        first = run(cache, first_use[2], **options)
        second = run(cache, first_use[2], **options)
    finally:
        for path in (folder, cache):
            path.chmod(0o755)
    assert first["path"] and first["loaded"] == "7" and first["built"]
    assert second["path"] and second["loaded"] == "7" and not second["built"]  # paid once
    for result in (first, second):
        (warning,) = result["warnings"]
        assert str(folder) in warning and "Permission denied" in warning, warning
        assert str(temp) in warning


FORK = r"""
import json, os, sys, threading, time
from pathlib import Path
from dropkit.kernels import _build

args = ("tiny", [Path(sys.argv[1])])

def child(expect_fast):
    pid = os.fork()
    if pid == 0:
        signal_began = time.monotonic()
        path = _build.load_library(*args)
        os._exit(0 if path is not None and (not expect_fast or time.monotonic() - signal_began < 5)
                 else 1)
    return os.waitpid(pid, 0)[1]

statuses = [child(False)]  # a fork before any load: the child builds or waits, and loads
builder = threading.Thread(target=_build.load_library, args=args)
builder.start()
time.sleep(0.5)  # the thread now holds the in-process lock (and perhaps the build lock)
statuses.append(child(False))
builder.join()
statuses.append(child(True))  # after the load: the cached library, at once
print(json.dumps(statuses))
"""


def test_forked_children_never_deadlock(tmp_path):
    source = tiny(tmp_path / "src", tag=5)
    process = subprocess.run(
        [sys.executable, "-c", FORK, str(source)],
        env=env_for(tmp_path / "cache"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 0, process.stderr
    assert json.loads(process.stdout.strip().splitlines()[-1]) == [0, 0, 0]


OPERATOR = """
#include <ATen/ATen.h>
#include <torch/library.h>
at::Tensor twice(const at::Tensor& x) { return x * 2; }
TORCH_LIBRARY(dropkit_buildtest, m) { m.def("twice(Tensor x) -> Tensor"); }
TORCH_LIBRARY_IMPL(dropkit_buildtest, CPU, m) { m.impl("twice", &twice); }
"""

USE_OPERATOR = r"""
import json, sys, time
from pathlib import Path
import torch
from dropkit.kernels import _build
began = time.perf_counter()
path = _build.load_library("dropkit_buildtest", [Path(sys.argv[1])],
                           extra_cflags=["-O3", "-ffp-contract=off", "-fno-fast-math", "-fopenmp"])
seconds = time.perf_counter() - began
y = torch.ops.dropkit_buildtest.twice(torch.arange(3.0))
print(json.dumps({"path": str(path), "y": y.tolist(), "seconds": seconds,
                  "torch": torch.__version__}))
"""


@pytest.mark.slow
def test_a_real_torch_operator_builds_registers_and_loads_from_the_cache(tmp_path):
    source = tmp_path / "operator.cpp"
    source.write_text(OPERATOR)
    results = []
    for _ in range(2):
        process = subprocess.run(
            [sys.executable, "-c", USE_OPERATOR, str(source)],
            env=env_for(tmp_path / "cache"),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert process.returncode == 0, process.stderr
        results.append((json.loads(process.stdout.strip().splitlines()[-1]), process.stderr))
    (first, first_err), (second, second_err) = results
    assert first["y"] == second["y"] == [0.0, 2.0, 4.0]
    assert first["path"] == second["path"]
    assert first_err.count("dropkit: building") == 1 and "dropkit" not in second_err
    assert second["seconds"] < first["seconds"] / 5
    print(f"torch {first['torch']}: first build {first['seconds']:.1f} s, "
          f"cached load {second['seconds'] * 1000:.0f} ms")  # fmt: skip


def test_elf_checks_refuse_truncation_and_non_elf():
    import torch

    library = (Path(torch.__file__).parent / "lib" / "libc10.so").read_bytes()
    assert _build.elf_problem(library) is None
    for fraction in (0.1, 0.5, 0.8, 0.99):
        assert "truncated" in _build.elf_problem(library[: int(len(library) * fraction)])
    assert _build.elf_problem(b"not an elf" * 10) == "it is not an ELF file"
    executable = Path("/bin/true").read_bytes()
    assert _build.elf_problem(executable) in (None, "it is not a shared library (ELF type 2)")


def test_first_error_line_finds_the_compilers_error():
    output = textwrap.dedent(
        """\
        Error building extension 'tiny': [1/2] c++ -MMD -c tiny.cpp -o tiny.o
        FAILED: tiny.o
        c++ -MMD -c tiny.cpp -o tiny.o
        In file included from tiny.cpp:1:
        /x/ATen.h:4:2: error: #error C++20 or later compatible compiler is required to use ATen.
        tiny.cpp:3:1: error: expected ';'
        ninja: build stopped: subcommand failed.
        """
    )
    assert _build.first_error_line(output).startswith("/x/ATen.h:4:2: error: #error C++20")


def test_bad_names_are_refused():
    with pytest.raises(ValueError, match="identifier"):
        _build.load_library("a-b", [Path("x.cpp")])
