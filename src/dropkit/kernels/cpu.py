"""The fast CPU backend: C++ kernels that run inside torch's own intra-op thread pool.

The kernels (``csrc/dropkit_cpu.cpp``) generate the Philox4x32-10 stream of :mod:`dropkit.rng`
with SIMD integer multiplies and apply it in the same pass, split over threads by
``at::parallel_for``: torch's own intra-op thread pool, so there is no second thread team.
``torch.set_num_threads`` governs them and no other team spins beside torch's. In a forked child
(``multiprocessing`` "fork", DataLoader workers) they run on the calling thread, because GNU
OpenMP cannot start a team there. Every result is bit for bit that of
:mod:`dropkit.kernels.reference` (see ``docs/design/backends.md``).

Build and cache. Importing this module compiles nothing. The first call in a process loads the
library from a per-user cache folder (``$DROPKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/dropkit``,
else ``~/.cache/dropkit``), in a subfolder keyed by everything that changes the binary: the source,
torch's version and install, the compiler command, the flags and the CPU's instruction set (the
code is compiled with ``-march=native``). A library is loaded only after its SHA-256 matches the
checksum file written beside it, so a truncated, corrupted or half-replaced file is never loaded:
it is reported in a warning and rebuilt. A build holds an exclusive ``flock`` on the folder's
``build.lock`` (other processes wait; the kernel releases the lock when its holder dies, so a
killed build never blocks anyone), compiles into a fresh temporary folder and renames the results
into place atomically. Where the build is impossible (no compiler, no ``fcntl``, a failed compile,
a full disk, a lock held longer than :data:`LOCK_TIMEOUT_S`), the backend warns once per process
and every call uses the reference backend, which returns the same values, only slower.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from dropkit import rng
from dropkit.kernels import reference
from dropkit.kernels._memory import ADVISE_MIN_BYTES, empty_output

try:
    import fcntl
except ImportError:  # not a POSIX system: no build lock, so no build (the reference is used)
    fcntl = None

__all__ = [
    "CACHE_ENV",
    "LOCK_TIMEOUT_S",
    "SOURCE",
    "SUPPORTED_DTYPES",
    "apply_keep_affine",
    "apply_keep_mask",
    "apply_keep_mask_autograd",
    "available",
    "bias_dropout_add",
    "broadcast_pattern",
    "cache_dir",
    "library_path",
    "normal",
    "stream_words",
]

SOURCE = Path(__file__).with_name("csrc") / "dropkit_cpu.cpp"
CACHE_ENV = "DROPKIT_CACHE_DIR"
# A process waits at most this long for another process's build before it gives up (and uses the
# reference backend); a build takes seconds, so only a hung compiler gets here.
LOCK_TIMEOUT_S = 600.0
# Build folders of killed builds older than this are removed by the next build.
_STALE_BUILD_S = 3600.0
_ABI_VERSION = 4
_LIBRARY = "libdropkit_cpu.so"
_CHECKSUM = _LIBRARY + ".sha256"

# dtype codes of the C entry points.
_DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
SUPPORTED_DTYPES = tuple(_DTYPE_CODES)

_COMPILE_FLAGS = (
    "-O3",
    "-march=native",
    # One IEEE rounding per operation, as torch's own CPU ops: no fused multiply-add, no fast-math.
    "-ffp-contract=off",
    "-fno-fast-math",
    # at::parallel_for's OpenMP region is inline in the header; compiled with -fopenmp but linked
    # without it, the library uses the OpenMP runtime libtorch_cpu loaded (one thread team).
    "-fopenmp",
    "-fPIC",
    "-std=c++17",
    "-fvisibility=hidden",
)


class _State:
    """What this process knows about the library: not tried yet, loaded, or unavailable."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lib: ctypes.CDLL | None = None
        self.path: Path | None = None
        self.failed: str | None = None
        self.built = False  # whether this process compiled the library (tests count builds)
        # torch.ops.dropkit_cpu.keep.default once registered (see _register_keep_op)
        self.keep_op: torch._ops.OpOverload | None = None
        # In a forked child the kernels run on the calling thread: GNU OpenMP (torch's CPU wheels)
        # cannot start a thread team in a child forked after the parent used one — torch's own
        # parallel operators hang there unless torch.set_num_threads(1), as DataLoader workers do.
        self.serial = 0


_state = _State()


def _after_fork_in_child() -> None:
    # A fork while another thread held the lock would leave the child's copy held forever.
    _state.lock = threading.Lock()
    _state.serial = 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def cache_dir() -> Path:
    """The cache root: ``$DROPKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/dropkit``, else
    ``~/.cache/dropkit``."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "dropkit"


def _compiler_name() -> str:
    return os.environ.get("CXX") or "c++"


def _compiler() -> list[str]:
    return shlex.split(_compiler_name())


def _torch_paths() -> tuple[list[str], str]:
    from torch.utils import cpp_extension

    return cpp_extension.include_paths(), cpp_extension.library_paths()[0]


def _cpu_identity() -> str:
    """The instruction set ``-march=native`` compiles for: the CPU's model and feature flags."""
    identity = [platform.machine(), platform.processor()]
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                key = line.split(":", 1)[0].strip()
                if key in ("flags", "Features", "model name", "CPU part"):
                    identity.append(line.strip())
                if not line.strip() and len(identity) > 2:
                    break  # the first processor describes the others
    except OSError:
        pass
    return "\n".join(identity)


def _build_key() -> tuple[str, dict[str, object]]:
    includes, torch_lib = _torch_paths()
    parts: dict[str, object] = {
        "abi": _ABI_VERSION,
        "source": hashlib.sha256(SOURCE.read_bytes()).hexdigest(),
        "torch": torch.__version__,
        "torch_git": getattr(torch.version, "git_version", ""),
        "torch_lib": torch_lib,
        "cxx11_abi": int(torch._C._GLIBCXX_USE_CXX11_ABI),
        "python": sys.implementation.cache_tag,
        "platform": sys.platform,
        "compiler": _compiler(),
        "flags": list(_COMPILE_FLAGS),
        "cpu": _cpu_identity(),
    }
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return digest[:24], parts


def library_path() -> Path:
    """Where this process's library lives (or will be built) in the cache."""
    key, _ = _build_key()
    return cache_dir() / f"cpu-{key}" / _LIBRARY


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _damage(path: Path) -> str | None:
    """Why the library at ``path`` cannot be trusted, or None when its checksum matches."""
    checksum = path.with_name(_CHECKSUM)
    try:
        recorded = checksum.read_text(encoding="ascii").split()
    except FileNotFoundError:
        return "its checksum file is missing" if path.exists() else "missing"
    except (OSError, UnicodeDecodeError) as error:
        return f"its checksum file {checksum} is unreadable ({error})"
    if len(recorded) != 1 or len(recorded[0]) != 64:
        return f"its checksum file {checksum} is damaged"
    try:
        actual = _file_digest(path)
    except FileNotFoundError:
        return "the library is missing (its checksum file is there)"
    except OSError as error:
        return f"the library is unreadable ({error})"
    if actual != recorded[0]:
        return "its SHA-256 does not match its checksum file (truncated or corrupted)"
    return None


@contextlib.contextmanager
def _build_lock(folder: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``folder/build.lock``, waited for at most LOCK_TIMEOUT_S.

    The kernel drops the lock when its holder exits or is killed, so a dead holder never blocks
    a later process (the file itself may stay: its presence means nothing)."""
    if fcntl is None:
        raise OSError("this platform has no fcntl file locks")
    with open(folder / "build.lock", "a+b") as handle:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        delay = 0.01
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"another process has held the build lock {folder / 'build.lock'} for "
                        f"more than {LOCK_TIMEOUT_S:.0f} s"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.25)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _run(command: list[str]) -> None:
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise RuntimeError(f"the C++ compiler {command[0]!r} was not found") from None
    except subprocess.CalledProcessError as error:
        detail = (error.stderr or error.stdout or "").strip().splitlines()[-5:]
        raise RuntimeError(
            f"`{shlex.join(command[:2])} ...` failed (exit {error.returncode}): "
            + " | ".join(detail)
        ) from None


def _remove_stale_builds(folder: Path) -> None:
    now = time.time()
    for entry in folder.glob("build-*"):
        with contextlib.suppress(OSError):
            if now - entry.stat().st_mtime > _STALE_BUILD_S:
                shutil.rmtree(entry, ignore_errors=True)


def _build(path: Path) -> None:
    """Compile and link into a fresh folder, then rename the library and its checksum into place.

    Readers only ever see complete files: the library is renamed first, the checksum second, and
    a reader that sees a new library with an old checksum takes the lock, which waits for this
    build to finish, and checks again."""
    folder = path.parent
    _remove_stale_builds(folder)
    includes, torch_lib = _torch_paths()
    work = Path(tempfile.mkdtemp(prefix="build-", dir=folder))
    try:
        obj = work / "dropkit_cpu.o"
        lib = work / _LIBRARY
        abi = f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"
        include_flags = [flag for include in includes for flag in ("-isystem", include)]
        compile_command = [*_compiler(), *_COMPILE_FLAGS, abi, *include_flags]
        _run([*compile_command, "-c", str(SOURCE), "-o", str(obj)])
        _run(
            [
                *_compiler(),
                "-shared",
                str(obj),
                "-o",
                str(lib),
                f"-L{torch_lib}",
                "-lc10",
                "-ltorch_cpu",
                f"-Wl,-rpath,{torch_lib}",
            ]
        )
        checksum = work / _CHECKSUM
        checksum.write_text(_file_digest(lib) + "\n", encoding="ascii")
        for written in (lib, checksum):
            with open(written, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(lib, path)
        os.replace(checksum, path.with_name(_CHECKSUM))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _open(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path), mode=getattr(os, "RTLD_LOCAL", 0))
    try:
        lib.dropkit_abi_version.restype = ctypes.c_int
    except AttributeError as error:
        raise OSError(f"{path} lacks dropkit's entry points ({error})") from None
    version = lib.dropkit_abi_version()
    if version != _ABI_VERSION:
        raise OSError(f"{path} has ABI version {version}, expected {_ABI_VERSION}")
    i64, u64, u32, ptr, f64 = (
        ctypes.c_int64,
        ctypes.c_uint64,
        ctypes.c_uint32,
        ctypes.c_void_p,
        ctypes.c_double,
    )
    signatures = {
        "dropkit_keep_mask": (ctypes.c_int, ptr, ptr, i64, u64, u32, u32, u64, f64, ctypes.c_int),
        "dropkit_bias_dropout_add": (
            ctypes.c_int,
            *(ptr, ptr, i64, ptr, ptr, i64),
            *(u64, u32, u32, u64, f64, ctypes.c_int),
        ),
        "dropkit_keep_broadcast": (
            *(ctypes.c_int, ctypes.c_int, ptr, ptr, i64, i64, i64),
            *(u64, u32, u32, u64, f64, f64, f64, ctypes.c_int),
        ),
        "dropkit_stream_words": (ptr, i64, u64, u32, u32, ctypes.c_int),
        "dropkit_normal_uniforms": (ptr, ptr, i64, u64, u32, u32, ctypes.c_int),
        "dropkit_register_ops": (),
    }
    for name, argtypes in signatures.items():
        function = getattr(lib, name)
        function.argtypes = argtypes
        function.restype = ctypes.c_int
    return lib


def _load() -> tuple[ctypes.CDLL, Path]:
    path = library_path()
    problem = _damage(path)
    load_failed = False
    if problem is None:
        try:
            return _open(path), path
        except OSError as error:
            problem, load_failed = f"it could not be loaded ({error})", True
    path.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(path.parent):
        if not load_failed:
            problem = _damage(path)
            if problem is None:
                return _open(path), path  # another process built it while this one waited
        if problem != "missing":
            warnings.warn(
                f"dropkit: the cached CPU kernel library {path} is unusable: {problem}; "
                "rebuilding it.",
                RuntimeWarning,
                stacklevel=5,
            )
        _build(path)
        _state.built = True
    return _open(path), path


def _register_keep_op(lib: ctypes.CDLL) -> torch._ops.OpOverload | None:
    """``torch.ops.dropkit_cpu.keep.default``, registered by ``lib`` unless this process already
    has it; None (with a warning) if the registration fails — the ctypes kernels still work."""
    try:
        # Another dropkit library loaded earlier in this process may have registered it (a
        # second definition of the op would fail).
        registered = torch._C._dispatch_has_kernel_for_dispatch_key("dropkit_cpu::keep", "CPU")
    except RuntimeError:  # the operator does not exist yet
        registered = False
    if not registered and lib.dropkit_register_ops() != 0:
        warnings.warn(
            "dropkit: the C++ op dropkit_cpu::keep could not be registered; dropout with "
            "gradients uses the Python autograd route (same values, slower per call).",
            RuntimeWarning,
            stacklevel=4,
        )
        return None
    return torch.ops.dropkit_cpu.keep.default


def _library() -> ctypes.CDLL | None:
    """The loaded library, building it on first use; None (after one warning) where impossible."""
    lib = _state.lib
    if lib is not None or _state.failed is not None:
        return lib
    with _state.lock:
        if _state.lib is None and _state.failed is None:
            try:
                _state.lib, _state.path = _load()
            except Exception as error:  # any failure to build or load means: use the reference
                _state.failed = f"{type(error).__name__}: {error}"
                warnings.warn(
                    "dropkit: the C++ CPU kernels are unavailable, so the reference backend is "
                    f"used instead (same results, slower). Reason: {_state.failed}. Install a "
                    "C++ compiler (the CXX environment variable names it; now "
                    f"{_compiler_name()!r}), "
                    "or set DROPKIT_BACKEND=reference to choose the reference backend without "
                    "this warning.",
                    RuntimeWarning,
                    stacklevel=3,
                )
            else:
                _state.keep_op = _register_keep_op(_state.lib)
    return _state.lib


def available() -> bool:
    """Whether the C++ kernels are loaded (building them on first call, as any kernel call does)."""
    return _library() is not None


def _check(code: int, name: str) -> None:
    if code:
        raise RuntimeError(f"dropkit's C++ kernel {name} failed (error code {code})")


def _overlaps(a: torch.Tensor, b: torch.Tensor) -> bool:
    a0, b0 = a.data_ptr(), b.data_ptr()
    return a0 < b0 + b.numel() * b.element_size() and b0 < a0 + a.numel() * a.element_size()


def _checked_out(x: torch.Tensor, out: torch.Tensor | None, name: str) -> torch.Tensor:
    if out is None:
        return empty_output(x)
    if not (out.is_cpu and out.is_contiguous()):
        raise ValueError(f"{name}: out must be a contiguous CPU tensor")
    if out.dtype != x.dtype or out.shape != x.shape:
        raise ValueError(
            f"{name}: out must have x's shape {tuple(x.shape)} and dtype {x.dtype}, got "
            f"{tuple(out.shape)} and {out.dtype}"
        )
    return out


def broadcast_pattern(
    shape: tuple[int, ...] | torch.Size, mask_shape: tuple[int, ...]
) -> tuple[int, int, int] | None:
    """``(a, b, c)`` such that ``x`` of ``shape`` (row-major) is ``[a][b][c]`` with the mask
    (``mask_shape``, same rank, each entry ``shape``'s or 1) varying over ``a`` and ``c`` and
    broadcast over ``b``; None where the mask is not of that form (broadcast along two separate
    groups of dimensions, e.g. ``(N, 1, C, 1)`` over ``(N, H, C, W)``).

    Dimensions of size 1 belong to either kind and are skipped; adjacent dimensions of one kind
    merge. ``b == 1`` means the mask has ``x``'s elements in ``x``'s order (``a = numel``).
    Examples: ``(N, C, 1, 1)`` over ``(N, C, H, W)`` is ``(N C, H W, 1)``; ``(N, 1, 1, C)`` over
    ``(N, H, W, C)`` is ``(N, H W, C)``; ``(1, N, C)`` over ``(T, N, C)`` is ``(1, T, N C)``.
    """
    groups: list[list] = []  # [masked, size] per merged group
    for size, m in zip(shape, mask_shape):
        if size == 1:
            continue
        masked = m == size
        if groups and groups[-1][0] == masked:
            groups[-1][1] *= size
        else:
            groups.append([masked, size])
    kinds = tuple(masked for masked, _ in groups)
    sizes = [size for _, size in groups]
    if False not in kinds:
        return math.prod(sizes), 1, 1
    if kinds == (False,):
        return 1, sizes[0], 1
    if kinds == (True, False):
        return sizes[0], sizes[1], 1
    if kinds == (False, True):
        return 1, sizes[0], sizes[1]
    if kinds == (True, False, True):
        return sizes[0], sizes[1], sizes[2]
    return None


# Shapes repeat from step to step: the pattern of a (shape, mask_shape) pair is worked out once.
_cached_pattern = functools.lru_cache(maxsize=1024)(broadcast_pattern)


def _prepared(x: torch.Tensor, out: torch.Tensor | None, name: str) -> tuple[torch.Tensor, bool]:
    """The checked target, and whether it partly overlaps ``x`` (then the caller goes through a
    fresh buffer: the kernel could read what it already wrote)."""
    if not (x.is_cpu and x.is_contiguous()):
        raise ValueError(f"{name}: x must be a contiguous CPU tensor")
    target = _checked_out(x, out, name)
    partial = x.numel() > 0 and target.data_ptr() != x.data_ptr() and _overlaps(target, x)
    return target, partial


def apply_keep_mask(
    x: torch.Tensor,
    seed: int,
    offset: int,
    threshold: int,
    scale: float,
    out: torch.Tensor | None = None,
    mask_shape: tuple[int, ...] | None = None,
) -> torch.Tensor:
    """Same contract as :func:`dropkit.kernels.reference.apply_keep_mask` for contiguous CPU
    tensors; ``out`` (contiguous, ``x``'s shape and dtype) may be ``x`` itself.

    A broadcast mask of :func:`broadcast_pattern`'s form is one pass over ``x`` (its multipliers
    drawn first into a buffer of the mask's size); any other ``mask_shape`` draws the multiplier
    tensor with the kernel and multiplies with torch (one rounding, into ``out``)."""
    lib = _library()
    code = _DTYPE_CODES.get(x.dtype)
    if lib is None or code is None:
        return reference.apply_keep_mask(x, seed, offset, threshold, scale, out, mask_shape)
    target, partial = _prepared(x, out, "apply_keep_mask")
    n = x.numel()
    if n == 0:
        return target
    if partial:
        return target.copy_(apply_keep_mask(x, seed, offset, threshold, scale, None, mask_shape))
    k0, k1 = rng.split_seed(seed)
    if mask_shape is None:
        _check(
            lib.dropkit_keep_mask(
                code,
                x.data_ptr(),
                target.data_ptr(),
                n,
                offset,
                k0,
                k1,
                threshold,
                scale,
                _state.serial,
            ),
            "keep_mask",
        )
    else:
        pattern = _cached_pattern(x.shape, tuple(mask_shape))
        if pattern is None:
            multiplier = torch.ones(mask_shape, dtype=reference.accumulation_dtype(x.dtype))
            apply_keep_mask(multiplier, seed, offset, threshold, scale, multiplier)
            # A mixed-dtype multiply computes in the promoted (accumulation) dtype and rounds
            # once into target: the reference's bits without a full-size temporary.
            return torch.mul(x, multiplier, out=target)
        _keep_broadcast(lib, code, False, x, target, pattern, offset, k0, k1, threshold,
                        (scale, 0.0, 0.0))  # fmt: skip
    if out is not None:
        torch.autograd.graph.increment_version(out)  # written behind autograd's back
    return target


def apply_keep_mask_autograd(
    x: torch.Tensor, seed: int, offset: int, threshold: int, scale: float
) -> torch.Tensor:
    """:func:`apply_keep_mask` as one torch op whose gradient (the same op on the incoming
    gradient) is a C++ autograd node: no Python runs in backward. ``NotImplemented`` where it does
    not apply: no library, an unsupported dtype, a non-contiguous ``x``, or an output large enough
    for :func:`~dropkit.kernels._memory.empty_output`'s huge pages."""
    if _library() is None or _state.keep_op is None or x.dtype not in _DTYPE_CODES:
        return NotImplemented
    if not x.is_contiguous() or x.numel() * x.element_size() >= ADVISE_MIN_BYTES:
        return NotImplemented
    k0, k1 = rng.split_seed(seed)
    return _state.keep_op(x, k0, k1, offset, threshold, scale)


def apply_keep_affine(
    x: torch.Tensor,
    seed: int,
    offset: int,
    threshold: int,
    a: float,
    kept_shift: float,
    dropped_value: float,
    out: torch.Tensor | None = None,
    mask_shape: tuple[int, ...] | None = None,
) -> torch.Tensor:
    """Same contract as :func:`dropkit.kernels.reference.apply_keep_affine` for contiguous CPU
    tensors: one pass (two roundings in the accumulation dtype, never a fused multiply-add) for
    a mask of ``x``'s shape or of :func:`broadcast_pattern`'s form; any other ``mask_shape``
    finishes the kernel's stream words with the reference's operations."""
    lib = _library()
    code = _DTYPE_CODES.get(x.dtype)
    args = (threshold, a, kept_shift, dropped_value)
    if lib is None or code is None:
        return reference.apply_keep_affine(x, seed, offset, *args, out, mask_shape)
    target, partial = _prepared(x, out, "apply_keep_affine")
    n = x.numel()
    if n == 0:
        return target
    if partial:
        return target.copy_(apply_keep_affine(x, seed, offset, *args, None, mask_shape))
    pattern = (n, 1, 1) if mask_shape is None else _cached_pattern(x.shape, tuple(mask_shape))
    if pattern is None:
        words = stream_words(math.prod(mask_shape), seed, offset).reshape(mask_shape)
        return reference.affine_from_words(x, words, *args, target)
    k0, k1 = rng.split_seed(seed)
    _keep_broadcast(lib, code, True, x, target, pattern, offset, k0, k1, threshold,
                    (a, kept_shift, dropped_value))  # fmt: skip
    if out is not None:
        torch.autograd.graph.increment_version(out)
    return target


def _keep_broadcast(
    lib: ctypes.CDLL,
    code: int,
    affine: bool,
    x: torch.Tensor,
    target: torch.Tensor,
    pattern: tuple[int, int, int],
    offset: int,
    k0: int,
    k1: int,
    threshold: int,
    values: tuple[float, float, float],
) -> None:
    """One call of the C entry point ``dropkit_keep_broadcast``: ``x`` as ``pattern``'s
    ``[a][b][c]``, ``values`` the multiplier (the scale, or ``a``), the kept shift and the
    dropped value (the shifts unused unless ``affine``)."""
    a, b, c = pattern
    mul, kept, dropped = values
    _check(
        lib.dropkit_keep_broadcast(
            code, int(affine), x.data_ptr(), target.data_ptr(), a, b, c, offset, k0, k1,
            threshold, mul, kept, dropped, _state.serial,
        ),
        "keep_broadcast",
    )  # fmt: skip


def bias_dropout_add(
    x: torch.Tensor,
    bias: torch.Tensor,
    residual: torch.Tensor,
    seed: int,
    offset: int,
    threshold: int,
    scale: float,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Same contract as :func:`dropkit.kernels.reference.bias_dropout_add`, in one pass.

    ``bias``, ``residual`` and ``out`` of another dtype than ``x`` go to the reference."""
    lib = _library()
    code = _DTYPE_CODES.get(x.dtype)
    if lib is None or code is None or bias.dtype != x.dtype or residual.dtype != x.dtype:
        return reference.bias_dropout_add(x, bias, residual, seed, offset, threshold, scale, out)
    if not (x.is_cpu and x.is_contiguous() and bias.is_cpu and residual.is_cpu):
        raise ValueError("bias_dropout_add: x must be a contiguous CPU tensor (bias, residual CPU)")
    if residual.shape != x.shape:
        raise ValueError(
            f"bias_dropout_add: residual must have x's shape {tuple(x.shape)}, "
            f"got {tuple(residual.shape)}"
        )
    if bias.dim() > x.dim() or bias.shape != x.shape[x.dim() - bias.dim() :]:
        raise ValueError(
            f"bias_dropout_add: bias must have the trailing shape of x {tuple(x.shape)}, "
            f"got {tuple(bias.shape)}"
        )
    target = _checked_out(x, out, "bias_dropout_add")
    n = x.numel()
    if n == 0:
        return target
    bias = bias.contiguous()
    residual = residual.contiguous()
    # out may be x or residual exactly (each element is read before it is written); any other
    # overlap with an input goes through a fresh buffer.
    if any(
        target.data_ptr() != t.data_ptr() and _overlaps(target, t) for t in (x, residual)
    ) or _overlaps(target, bias):
        fresh = bias_dropout_add(x, bias, residual, seed, offset, threshold, scale)
        return target.copy_(fresh)
    k0, k1 = rng.split_seed(seed)
    _check(
        lib.dropkit_bias_dropout_add(
            code,
            x.data_ptr(),
            bias.data_ptr(),
            bias.numel(),
            residual.data_ptr(),
            target.data_ptr(),
            n,
            offset,
            k0,
            k1,
            threshold,
            scale,
            _state.serial,
        ),
        "bias_dropout_add",
    )
    if out is not None:
        torch.autograd.graph.increment_version(out)
    return target


def stream_words(
    numel: int, seed: int, offset: int = 0, device: torch.device | str | None = None
) -> torch.Tensor:
    """Same contract as :func:`dropkit.rng.stream_words` (int64 words in ``[0, 2**32)``)."""
    target = torch.device("cpu") if device is None else torch.device(device)
    lib = _library()
    if lib is None or target.type != "cpu":
        return reference.stream_words(numel, seed, offset, device)
    out = torch.empty(numel, dtype=torch.int64)
    if numel:
        k0, k1 = rng.split_seed(seed)
        _check(
            lib.dropkit_stream_words(out.data_ptr(), numel, offset, k0, k1, _state.serial),
            "stream_words",
        )
    return out


def normal(
    shape: tuple[int, ...] | torch.Size,
    seed: int,
    offset: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Same contract as :func:`dropkit.rng.normal` (``offset`` counts variates).

    The kernel produces Box-Muller's uniforms ``u1``, ``u2`` (exact float64 values of the stream
    words); the transform is the reference's own torch expression on tensors of the same shape, so
    the variates are bit-identical to it under the same thread count."""
    target = torch.device("cpu") if device is None else torch.device(device)
    lib = _library()
    if lib is None or target.type != "cpu":
        return reference.normal(shape, seed, offset, device, dtype)
    numel = math.prod(shape)
    u1 = torch.empty(numel, dtype=torch.float64)
    u2 = torch.empty(numel, dtype=torch.float64)
    if numel:
        k0, k1 = rng.split_seed(seed)
        _check(
            lib.dropkit_normal_uniforms(
                u1.data_ptr(), u2.data_ptr(), numel, offset, k0, k1, _state.serial
            ),
            "normal_uniforms",
        )
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2.0 * math.pi) * u2)
    return z.to(dtype).reshape(tuple(shape))
