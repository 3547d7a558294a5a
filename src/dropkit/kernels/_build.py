"""Compile dropkit's C++ operator library with torch's own extension builder and load it, through
a per-user cache that checks everything it reads.

:func:`load_library` returns the path of the library it loaded into this process (with
``torch.ops.load_library``, so its static ``TORCH_LIBRARY``/``TORCH_LIBRARY_IMPL`` registrations
run), or ``None`` after a warning that names the cause; the caller then uses its plain-torch
reference kernels.

Build. ``torch.utils.cpp_extension.load(..., is_python_module=False)`` compiles the sources in a
child process, into a fresh private folder, so the C++ standard, the ABI and the include and link
flags are always those of the installed torch. The child runs in its own session and dies with
its caller (parent-death signal and a watched pipe): it then kills every process below it (ninja
puts each compiler in a process group of its own, so the child is their subreaper and kills them
one by one) — a killed or interrupted build leaves no compiler running. The first build prints
one line to stderr: what, why and how long.

Cache. ``$DROPKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/dropkit``, else ``~/.cache/dropkit``; one
folder per key, a digest of everything that changes the binary (the bytes of the sources and of
the headers beside them, the flags, torch's version and install path, the compiler's path and file
identity, Python's tag, the CPU's instruction set). A library is loaded only if it is a regular
file (opened without following a symlink and without blocking), of the size its manifest records
and at most :data:`MAX_LIBRARY_BYTES`, whose SHA-256 *computed here* matches the manifest and
whose ELF structure lies within the file (a truncated library would otherwise fault inside
``dlopen``);
then the bytes that were checked are written to a private copy, which is loaded and unlinked.
Anything else is reported once and rebuilt.

Lock. One build per key at a time: an exclusive ``flock`` on ``build.lock`` (the kernel releases
it when its holder dies), which records the holder's pid and start time. A waiter that finds the
holder stopped (Ctrl-Z) or gone reports it within seconds and builds in a private folder; a live
holder is waited for at most :data:`LOCK_WAIT_S`.

Failures. A compile that fails is remembered in ``failed.json`` in the key's folder (the key
includes the torch version, the compiler and the sources), so later processes warn at once with
the compiler's first error line instead of compiling again; delete the file to retry. A cache that
cannot be written is replaced by a private one under the temporary folder (reused by later
processes), with a warning naming the error.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["CACHE_ENV", "LOCK_WAIT_S", "MAX_LIBRARY_BYTES", "cache_root", "load_library"]

CACHE_ENV = "DROPKIT_CACHE_DIR"
# How long a process waits for a live (running) holder of the build lock before it builds in a
# private folder instead. A stopped or vanished holder is reported within _STUCK_AFTER_S.
LOCK_WAIT_S = 300.0
# A build that takes longer than this is killed (and not remembered as failed).
BUILD_TIMEOUT_S = 1800.0
# A library larger than this is not read (nor loaded).
MAX_LIBRARY_BYTES = 256 << 20
_STUCK_AFTER_S = 1.0
_FORMAT = 1  # changes the key when this module changes how a library is built or laid out
_MANIFEST = "manifest.json"
_LOCK = "build.lock"
_FAILED = "failed.json"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class _Process:
    """What this process knows: the outcome per cache folder, and the descriptors a forked child
    must not keep (build locks, pipes to builders)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.outcomes: dict[tuple[str, str], Path | None] = {}
        self.child_fds: set[int] = set()


_process = _Process()


def _after_fork_in_child() -> None:
    # A fork while another thread held the lock (or was building) would leave the child's copy
    # held forever; the child's copies of the parent's lock and pipe descriptors would keep the
    # parent's build lock held and its builder alive after the parent's death.
    _process.lock = threading.Lock()
    for fd in _process.child_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    _process.child_fds = set()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _Unusable(Exception):
    """The cache holds no usable library; the message says why ("" when it is simply absent)."""


class _Failed(Exception):
    """The library cannot be had in this process; the message is the warning's cause."""


def cache_root() -> Path:
    """``$DROPKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/dropkit``, else ``~/.cache/dropkit``."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "dropkit"


def _fallback_root() -> Path:
    return Path(tempfile.gettempdir()) / f"dropkit-{os.getuid()}"


def _compiler() -> list[str]:
    """The compiler command torch's builder uses: ``$CXX``, else ``c++``."""
    return shlex.split(os.environ.get("CXX") or "c++") or ["c++"]


def _find_compiler() -> str:
    """The compiler's resolved path; raises :class:`_Failed` when there is none."""
    command = _compiler()[0]
    found = shutil.which(command)
    if found is None:
        named = f"CXX={command!r}" if os.environ.get("CXX") else repr(command)
        where = "does not exist" if os.sep in command else "is not on PATH"
        raise _Failed(
            f"no C++ compiler found ({named} {where}); install g++ or clang++, or set CXX to one"
        )
    return os.path.realpath(found)


def _cpu_identity() -> str:
    """The instruction set ``-march=native`` compiles for: the CPU's model and feature flags."""
    identity = [os.uname().machine]
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                key = line.split(":", 1)[0].strip()
                if key in ("flags", "Features", "model name", "CPU part"):
                    identity.append(line.strip())
                if not line.strip() and len(identity) > 1:
                    break  # the first processor describes the others
    except OSError:
        pass
    return "\n".join(identity)


def _key(name: str, sources: Sequence[Path], cflags: Sequence[str], compiler: str) -> str:
    try:
        info = os.stat(compiler)
    except OSError as error:
        raise _Failed(f"the C++ compiler {compiler} cannot be examined ({error})") from None
    parts = {
        "format": _FORMAT,
        "name": name,
        "sources": [hashlib.sha256(_read_source(path)).hexdigest() for path in sources],
        # The headers beside the sources, which they include ("philox.h"): a changed header is a
        # changed binary.
        "headers": [
            hashlib.sha256(_read_source(path)).hexdigest()
            for path in sorted({h for source in sources for h in source.parent.glob("*.h")})
        ],
        "cflags": list(cflags),
        "torch": torch.__version__,
        "torch_git": getattr(torch.version, "git_version", ""),
        "torch_path": os.path.dirname(torch.__file__),
        "cxx11_abi": int(torch._C._GLIBCXX_USE_CXX11_ABI),
        "python": sys.implementation.cache_tag,
        "compiler": [_compiler(), compiler, info.st_size, info.st_mtime_ns, info.st_ino],
        "cpu": _cpu_identity(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def _read_source(path: Path) -> bytes:
    try:
        return _read_regular(path, MAX_LIBRARY_BYTES)
    except (OSError, _Unusable) as error:
        raise _Failed(f"the source {path} cannot be read ({error})") from None


# --- reading what the cache holds, trusting nothing --------------------------------------------


def _read_regular(path: Path, limit: int) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes: never follows a
    symlink, never blocks on a FIFO or device, never reads more than ``limit + 1`` bytes."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise _Unusable("it is a symbolic link") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _Unusable(f"it is not a regular file (mode {stat.filemode(info.st_mode)})")
        if info.st_size > limit:
            raise _Unusable(f"it is {info.st_size} bytes, more than the limit {limit}")
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise _Unusable(f"it grew past the limit of {limit} bytes while read")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _host_machine() -> int | None:
    """The ELF machine code of this Python (so a library built for another CPU is refused)."""
    with contextlib.suppress(OSError, _Unusable, struct.error):
        with open("/proc/self/exe", "rb") as exe:
            head = exe.read(20)
        if head[:4] == b"\x7fELF":
            return struct.unpack_from("<H" if head[5] == 1 else ">H", head, 18)[0]
    return None


def elf_problem(data: bytes) -> str | None:
    """Why ``data`` is not a complete shared library for this machine, or None: the header, every
    program header's file range and every section's lie within the file (a library cut short
    otherwise faults the process with SIGBUS inside ``dlopen``)."""
    size = len(data)
    if size < 52 or data[:4] != b"\x7fELF" or data[4] not in (1, 2) or data[5] not in (1, 2):
        return "it is not an ELF file"
    end = "<" if data[5] == 1 else ">"
    wide = data[4] == 2
    try:
        if wide:
            (e_type, machine, _, _, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum, _) = (
                struct.unpack_from(end + "HHIQQQIHHHHHH", data, 16)
            )
        else:
            (e_type, machine, _, _, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum, _) = (
                struct.unpack_from(end + "HHIIIIIHHHHHH", data, 16)
            )
        if e_type != 3:
            return f"it is not a shared library (ELF type {e_type})"
        host = _host_machine()
        if host is not None and machine != host:
            return f"it is built for another machine (ELF machine {machine}, this one {host})"
        if phnum == 0 or phentsize < (56 if wide else 32) or phoff + phnum * phentsize > size:
            return "its program headers lie beyond the end of the file (truncated)"
        for index in range(phnum):
            at = phoff + index * phentsize
            if wide:
                p_type, _, offset, _, _, filesz, _, _ = struct.unpack_from(
                    end + "IIQQQQQQ", data, at
                )
            else:
                p_type, offset, _, _, filesz, _, _, _ = struct.unpack_from(
                    end + "IIIIIIII", data, at
                )
            if p_type != 0 and offset + filesz > size:
                return f"segment {index} lies beyond the end of the file (truncated)"
        if shnum == 0 or shentsize < (64 if wide else 40) or shoff + shnum * shentsize > size:
            return "its section headers lie beyond the end of the file (truncated)"
        for index in range(shnum):
            at = shoff + index * shentsize
            if wide:
                _, sh_type, _, _, offset, length = struct.unpack_from(end + "IIQQQQ", data, at)
            else:
                _, sh_type, _, _, offset, length = struct.unpack_from(end + "IIIIII", data, at)
            if sh_type != 8 and offset + length > size:  # 8: SHT_NOBITS (.bss) has no bytes
                return f"section {index} lies beyond the end of the file (truncated)"
    except struct.error:
        return "its headers are cut short (truncated)"
    return None


def _checked_library(folder: Path, name: str) -> bytes:
    """The cached library's bytes after every check; raises :class:`_Unusable` (empty message
    when there is no library at all)."""
    library = folder / f"{name}.so"
    try:
        manifest = json.loads(_read_regular(folder / _MANIFEST, 1 << 16))
        size, digest = int(manifest["size"]), str(manifest["sha256"])
    except FileNotFoundError:
        if not os.path.lexists(library):
            raise _Unusable("") from None
        raise _Unusable(f"its manifest {folder / _MANIFEST} is missing") from None
    except (OSError, ValueError, KeyError, TypeError, _Unusable) as error:
        raise _Unusable(f"its manifest {folder / _MANIFEST} is unusable ({error})") from None
    try:
        data = _read_regular(library, MAX_LIBRARY_BYTES)
    except FileNotFoundError:
        raise _Unusable("the library file is missing (its manifest is there)") from None
    except OSError as error:
        raise _Unusable(f"it cannot be read ({error})") from None
    if len(data) != size:
        raise _Unusable(f"it is {len(data)} bytes, its manifest says {size} (truncated?)")
    problem = elf_problem(data)
    if problem is not None:
        raise _Unusable(problem)
    if hashlib.sha256(data).hexdigest() != digest:
        raise _Unusable("its SHA-256 differs from the one recorded when it was built (corrupted)")
    return data


def _load_private_copy(data: bytes, folders: Sequence[Path]) -> None:
    """Load ``data`` from a private copy (written here, loaded, unlinked): nobody can change the
    bytes between the checks and ``dlopen``."""
    errors = []
    for folder in folders:
        try:
            fd, copy = tempfile.mkstemp(prefix=".load-", suffix=".so", dir=folder)
        except OSError as error:
            errors.append(f"{folder}: {error}")
            continue
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            torch.ops.load_library(copy)
            return
        except OSError as error:
            errors.append(f"{copy}: {error} ({error.__cause__ or ''})")
        finally:
            with contextlib.suppress(OSError):
                os.unlink(copy)
    raise _Failed("the library could not be loaded: " + "; ".join(errors))


# --- the build lock ----------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """``(state, start time)`` of process ``pid`` from ``/proc``, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read(4096).decode("ascii", "replace")
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def _holder(fd: int) -> dict:
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        record = json.JSONDecoder().raw_decode(text)[0]  # ignore what a shorter record left
        if isinstance(record, dict):
            return record
    return {}


def _holder_problem(record: dict) -> str | None:
    """Why the recorded holder will not release the lock (stopped, gone), or None."""
    pid = record.get("pid")
    if not isinstance(pid, int) or record.get("host") != socket.gethostname():
        return None  # unknown, or on another machine: wait for it
    now = _proc_stat(pid)
    if now is None or now[1] != record.get("start") or now[0] in ("Z", "X"):
        return (
            f"held by process {pid}, which has exited (another process still has the lock file "
            "open, e.g. a child it forked)"
        )
    if now[0] in ("T", "t"):
        return (
            f"held by process {pid}, which is stopped (Ctrl-Z?): resume it with `kill -CONT {pid}` "
            f"or end it with `kill {pid}`"
        )
    return None


def _lock(folder: Path) -> int | str:
    """An exclusive ``flock`` on ``folder/build.lock`` (its descriptor), or why it cannot be had
    soon: its holder is stopped or gone, or has held it more than :data:`LOCK_WAIT_S`."""
    import fcntl

    path = folder / _LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    _process.child_fds.add(fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        began = time.monotonic()
        seen: tuple[str, float] | None = None
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pass
            now = time.monotonic()
            problem = _holder_problem(_holder(fd))
            if problem is None:
                seen = None
            elif seen is None or seen[0] != problem:
                seen = (problem, now)
            elif now - seen[1] >= _STUCK_AFTER_S:  # the same for a while: not a handover
                _unlock(fd)
                return f"the build lock {path} is {problem}"
            if now - began > LOCK_WAIT_S:
                record = _holder(fd)
                _unlock(fd)
                return (
                    f"the build lock {path} has been held by process {record.get('pid', '?')} "
                    f"for more than {LOCK_WAIT_S:.0f} s"
                )
            time.sleep(0.1)
        own = _proc_stat(os.getpid())
        record = {"pid": os.getpid(), "start": own[1] if own else None,
                  "host": socket.gethostname(), "since": time.time()}  # fmt: skip
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        return fd
    except BaseException:
        _unlock(fd)
        raise


def _unlock(fd: int) -> None:
    _process.child_fds.discard(fd)
    with contextlib.suppress(OSError):
        os.close(fd)  # releases the flock


# --- the build, in a child process that dies with this one -------------------------------------


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    text = handle.read(4096).decode("ascii", "replace")
                ppid = int(text[text.rfind(")") + 2 :].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _end_build(*_: object) -> None:
    """Kill every process below this builder (ninja, the compilers in their own process groups,
    their children, reparented here as this process is their subreaper), then exit."""
    me = os.getpid()
    for _attempt in range(100):
        found = _descendants(me)
        if not found:
            break
        for pid in found:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        time.sleep(0.01)
    os._exit(70)


def _builder_main(spec_text: str) -> None:
    """The child process: compile with ``torch.utils.cpp_extension.load`` (which also loads the
    library once, in this fresh process), write ``result.json``, and die with the parent."""
    spec = json.loads(spec_text)
    signal.signal(signal.SIGTERM, _end_build)
    signal.signal(signal.SIGINT, _end_build)
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != spec["parent"]:
        _end_build()  # the parent died before the death signal was armed

    def watch() -> None:  # the parent holds the other end of stdin: EOF means it is gone
        with contextlib.suppress(OSError):
            sys.stdin.buffer.read()
        _end_build()

    threading.Thread(target=watch, daemon=True).start()
    # pip's ninja lives beside the interpreter, which need not be on PATH.
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    result = Path(spec["build_directory"]) / "result.json"
    try:
        from torch.utils import cpp_extension

        cpp_extension.load(
            spec["name"],
            spec["sources"],
            extra_cflags=spec["cflags"],
            build_directory=spec["build_directory"],
            is_python_module=False,
            verbose=False,
        )
    except Exception as error:  # reported to the parent, which decides what to remember
        text = str(error)
        compile_error = text.startswith("Error building extension")
        result.write_text(json.dumps({"ok": False, "error": text, "compile": compile_error}))
        sys.exit(3)
    result.write_text(json.dumps({"ok": True}))


_BOOT = (
    "import importlib.util as u, sys\n"
    "s = u.spec_from_file_location('_dropkit_builder', sys.argv[1])\n"
    "m = u.module_from_spec(s); s.loader.exec_module(m); m._builder_main(sys.argv[2])\n"
)


def first_error_line(output: str) -> str:
    """The compiler's first error line in a build's output (else its last line)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for pattern in (r"(^|: )(fatal )?error\b", r"\berror\b", r"undefined reference|cannot find"):
        for line in lines:
            skip = line.startswith(("FAILED:", "[", "Error building extension"))
            if not skip and re.search(pattern, line, re.IGNORECASE):
                return line[:500]
    return (lines[-1] if lines else "no output")[:500]


def _compiler_version() -> str:
    """``$CXX``'s name and version, e.g. ``c++ 12.2.0``."""
    name = os.path.basename(_compiler()[0])
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        run = subprocess.run(
            [*_compiler(), "-dumpfullversion", "-dumpversion"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if run.returncode == 0 and run.stdout.strip():
            return f"{name} {run.stdout.strip().splitlines()[0]}"
    return name


def _build(name: str, sources: Sequence[Path], cflags: Sequence[str], work: Path, why: str,
           compiler: str) -> bytes:  # fmt: skip
    """Compile into ``work`` in a child process; the library's checked bytes. Raises
    :class:`_Failed` with ``.compile_error`` set when the compiler rejected the sources."""
    described = _compiler_version()
    sys.stderr.write(f"dropkit: building the C++ library {name} ({why}; {described}) ...")
    sys.stderr.flush()
    began = time.monotonic()
    outcome = "failed"
    spec = {"parent": os.getpid(), "name": name, "sources": [str(s) for s in sources],
            "cflags": list(cflags), "build_directory": str(work)}  # fmt: skip
    env = dict(os.environ)
    env.pop("PYTHONSTARTUP", None)
    try:
        with tempfile.TemporaryFile() as log:
            process = subprocess.Popen(
                [sys.executable, "-c", _BOOT, __file__, json.dumps(spec)],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, cwd=work, env=env,
                start_new_session=True,
            )  # fmt: skip
            pipe = process.stdin.fileno()
            _process.child_fds.add(pipe)
            try:
                code = process.wait(timeout=BUILD_TIMEOUT_S)
            except BaseException:  # KeyboardInterrupt, a timeout: stop the build, then go on
                _stop(process)
                raise
            finally:
                _process.child_fds.discard(pipe)
                with contextlib.suppress(OSError):
                    process.stdin.close()
            try:
                result = json.loads((work / "result.json").read_text())
            except (OSError, ValueError):
                log.seek(0)
                tail = log.read()[-2000:].decode("utf-8", "replace")
                raise _Failed(
                    f"the build process ended with status {code} and no result: "
                    f"{first_error_line(tail)}"
                ) from None
        if not result["ok"]:
            if result.get("compile"):
                failure = _Failed(first_error_line(result["error"]))
                failure.compile_error = failure.args[0]  # type: ignore[attr-defined]
                failure.compiler = described  # type: ignore[attr-defined]
                raise failure
            raise _Failed(first_error_line(result["error"]))
        try:
            data = _read_regular(work / f"{name}.so", MAX_LIBRARY_BYTES)
        except (OSError, _Unusable) as error:
            raise _Failed(f"the library just built is unreadable ({error})") from None
        problem = elf_problem(data)
        if problem is not None:
            raise _Failed(f"the library just built is unusable: {problem}")
        outcome = f"done in {time.monotonic() - began:.1f} s"
        return data
    except subprocess.TimeoutExpired:
        raise _Failed(f"the build took more than {BUILD_TIMEOUT_S:.0f} s and was stopped") from None
    finally:
        sys.stderr.write(f" {outcome}\n")
        sys.stderr.flush()


def _stop(process: subprocess.Popen) -> None:
    """End a builder and everything below it: closing its stdin makes it kill its descendants;
    its process group is killed if it does not exit soon."""
    with contextlib.suppress(OSError):
        process.stdin.close()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _write_atomic(path: Path, data: bytes) -> None:
    fd, temporary = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _publish(folder: Path, name: str, data: bytes) -> None:
    """Put the library, then its manifest, in place (a reader that sees a new library with the old
    manifest finds a mismatch, takes the lock, which waits for this build, and reads again)."""
    _write_atomic(folder / f"{name}.so", data)
    manifest = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    _write_atomic(folder / _MANIFEST, json.dumps(manifest).encode())


def _remembered_failure(folder: Path) -> dict | None:
    try:
        record = json.loads(_read_regular(folder / _FAILED, 1 << 16))
    except (OSError, ValueError, _Unusable):
        return None
    return record if isinstance(record, dict) else None


# --- the whole procedure -----------------------------------------------------------------------


class _Attempt:
    """One process's attempt at one library: the warnings it owes (one per cause, normally one)."""

    def __init__(self, name: str, sources: list[Path], cflags: list[str], compiler: str,
                 key: str) -> None:  # fmt: skip
        self.name, self.sources, self.cflags = name, sources, cflags
        self.compiler, self.key = compiler, key

    def warn(self, text: str) -> None:
        warnings.warn(f"dropkit: {text}", RuntimeWarning, stacklevel=4)

    def run(self, root: Path, fallback: bool) -> Path:
        folder = root / f"{self.name}-{self.key}"
        with contextlib.suppress(_Unusable):
            data = _checked_library(folder, self.name)
            _load_private_copy(data, [folder, Path(tempfile.gettempdir())])
            return folder / f"{self.name}.so"
        remembered = _remembered_failure(folder)
        if remembered is not None:
            raise _Failed(self._failure_text(remembered, folder / _FAILED))
        try:
            if fallback:
                _private_root(root)
            folder.mkdir(parents=True, exist_ok=True)
            if not os.access(folder, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, "Permission denied", str(folder))
            held = _lock(folder)
        except OSError as error:
            if fallback:
                raise _Failed(f"no writable cache ({error})") from None
            self.warn(
                f"the cache folder {folder} cannot be written ({error}); {self.name} is cached in "
                f"{_fallback_root()} instead (set {CACHE_ENV} to a writable folder)"
            )
            return self.run(_fallback_root(), fallback=True)
        if isinstance(held, str):
            self.warn(f"{held}; building {self.name} privately for this process meanwhile.")
            return self._private_build(f"a private build, torch {torch.__version__}")
        try:
            try:
                data = _checked_library(folder, self.name)  # built while this process waited?
            except _Unusable as unusable:
                why = f"first use with torch {torch.__version__}"
                if str(unusable):
                    self.warn(
                        f"the cached C++ library {folder / (self.name + '.so')} is unusable: "
                        f"{unusable}; rebuilding it."
                    )
                    why = f"rebuilding a damaged cache entry, torch {torch.__version__}"
                remembered = _remembered_failure(folder)  # another process failed meanwhile
                if remembered is not None:
                    raise _Failed(self._failure_text(remembered, folder / _FAILED)) from None
                data = self._shared_build(folder, why)
            _load_private_copy(data, [folder, Path(tempfile.gettempdir())])
            return folder / f"{self.name}.so"
        finally:
            _unlock(held)

    def _shared_build(self, folder: Path, why: str) -> bytes:
        for stale in folder.glob("build-*"):  # left by killed builds (this process holds the lock)
            shutil.rmtree(stale, ignore_errors=True)
        for stale in (*folder.glob(".load-*"), *folder.glob(".tmp-*")):  # of killed processes
            with contextlib.suppress(OSError):
                if time.time() - stale.lstat().st_mtime > 3600:
                    stale.unlink()
        work = Path(tempfile.mkdtemp(prefix="build-", dir=folder))
        try:
            try:
                data = _build(self.name, self.sources, self.cflags, work, why, self.compiler)
            except _Failed as failure:
                first = getattr(failure, "compile_error", None)
                if first is not None:
                    record = {"error": first, "torch": torch.__version__,
                              "compiler": failure.compiler, "time": time.time()}  # type: ignore[attr-defined]  # fmt: skip
                    with contextlib.suppress(OSError):
                        _write_atomic(folder / _FAILED, json.dumps(record).encode())
                    raise _Failed(self._failure_text(record, folder / _FAILED)) from None
                raise
            try:
                _publish(folder, self.name, data)
            except OSError as error:
                self.warn(f"the library built could not be cached in {folder} ({error}).")
            return data
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _private_build(self, why: str) -> Path:
        work = Path(tempfile.mkdtemp(prefix=f"dropkit-{self.name}-"))
        atexit.register(shutil.rmtree, work, True)
        data = _build(self.name, self.sources, self.cflags, work, why, self.compiler)
        _load_private_copy(data, [work])
        return work / f"{self.name}.so"

    def _failure_text(self, record: dict, marker: Path) -> str:
        return (
            f"the C++ library {self.name} failed to compile with torch "
            f"{record.get('torch', '?')} and {record.get('compiler', '?')}: "
            f"{record.get('error', '?')} (remembered in {marker}: delete it to retry)"
        )


def _private_root(root: Path) -> None:
    """Create the fallback cache root as a private folder of this user, and refuse one that is
    not (a symlink, another owner, writable by others)."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(root, 0o700)
    info = os.lstat(root)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise PermissionError(errno.EACCES, "not a private folder of this user", str(root))


def load_library(
    name: str, sources: Sequence[Path], *, extra_cflags: Sequence[str] = ()
) -> Path | None:
    """Build (on first use) and load the C++ library ``name`` made of ``sources``.

    Returns the path of the cached library whose bytes were loaded into this process (through
    ``torch.ops.load_library``, so its operator registrations ran), or ``None`` after one
    ``RuntimeWarning`` naming the cause (no compiler, the compiler's first error line with the
    torch version, a permission error, a stuck build lock...): the caller then uses its reference
    kernels. Later calls in the process return the same outcome without a new warning.

    ``extra_cflags`` are added to torch's own compile flags (which already choose the C++
    standard, the ABI and the include paths); they are not passed to the link.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"load_library: name must be an identifier, got {name!r}")
    sources = [Path(source).resolve() for source in sources]
    if not sources:
        raise ValueError("load_library: sources must name at least one file")
    cflags = [str(flag) for flag in extra_cflags]
    with _process.lock:
        try:
            compiler = _find_compiler()
            key = _key(name, sources, cflags, compiler)
        except _Failed as failure:
            outcome_key = (name, "")
            if outcome_key not in _process.outcomes:
                _process.outcomes[outcome_key] = None
                _warn_unavailable(name, str(failure))
            return _process.outcomes[outcome_key]
        outcome_key = (name, f"{cache_root()}|{key}")
        if outcome_key in _process.outcomes:
            return _process.outcomes[outcome_key]
        attempt = _Attempt(name, sources, cflags, compiler, key)
        try:
            path: Path | None = attempt.run(cache_root(), fallback=False)
        except _Failed as failure:
            _warn_unavailable(name, str(failure))
            path = None
        except Exception as error:  # never let the build break the caller: it has a reference
            _warn_unavailable(name, f"{type(error).__name__}: {error}")
            path = None
        _process.outcomes[outcome_key] = path
        return path


def _warn_unavailable(name: str, cause: str) -> None:
    warnings.warn(
        f"dropkit: {cause}; the C++ library {name} is not loaded, so dropkit uses its reference "
        "kernels (same results, slower).",
        RuntimeWarning,
        stacklevel=3,
    )
