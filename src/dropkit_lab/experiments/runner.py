"""Run an experiment: train its runs (skipping finished ones, in parallel workers), summarise.

Layout of the output folder ``<out>/<experiment>/<profile>/``:

- ``runs/<run_id>.json``: one finished run (its spec, history, metrics, timing, a checksum),
  written atomically; re-running skips it when its spec is the one the experiment asks for now.
- ``superseded/<run_id>.<n>.json``: a result made with another configuration (an edited profile,
  another dropkit version), moved aside, never deleted, before the run is trained again.
- ``damaged/<run_id>.<n>.json``: a result that could not be read (damaged, truncated, edited by
  hand: it fails its checksum), moved aside with a message before the run is trained again.
- ``unverified/<run_id>.<n>.json``: a result without its checksum (an older dropkit, or a hand
  edit that removed it): it cannot be verified, so it is moved aside, named, and the run trained
  again; it is never re-signed. The checksum guards against accidents (a truncated copy, a
  stray edit), not against someone who means to forge a result: anyone can recompute it.
- ``checkpoints/<run_id>.pt``: the checkpoint of an unfinished run (a stopped run resumes from
  it); deleted once the run's JSON is written, and deleted with a message when unreadable.
- ``summary.json``: tables, plots and checks over all runs, rewritten after every invocation.

``<out>/.dropkit-lock`` keeps a second runner out of the same folder while one works there; it
names the holder (pid, host, command, start time). It is made as a new file (written under a
temporary name, then hard-linked into place: never through a symbolic link, never truncated) and
removed on exit; a symbolic link in its place is refused. Ctrl-C, SIGTERM or SIGHUP stops every
worker at once and raises :class:`Interrupted`; finished runs are kept, and the same command
resumes. A worker process that dies (killed by any signal, the out-of-memory killer's SIGKILL
included, or exiting) is named with its run at once, the other workers are stopped, and
:class:`WorkerDied` is raised; the same command resumes.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import errno
import fcntl
import json
import multiprocessing
import os
import pickle
import platform
import secrets
import signal
import socket
import stat
import sys
import tempfile
import threading
import time
import traceback
from multiprocessing.connection import wait as wait_for_any
from pathlib import Path

import torch

import dropkit
from dropkit_lab.catalogue import estimate, measured_speeds
from dropkit_lab.data import load_dataset
from dropkit_lab.engine.ensemble import Member, stack_key, train_ensemble
from dropkit_lab.engine.jsonio import (
    DamagedFileError,
    UncheckedFileError,
    jsonable,
    read_record,
    remove_stale_temporaries,
    write_json_atomic,
    write_record,
)
from dropkit_lab.engine.specs import weights_digest
from dropkit_lab.engine.threads import (
    SMALL_WORK,
    choose_threads,
    passive_wait_environment,
    step_work,
)
from dropkit_lab.engine.trainer import CheckpointError, train
from dropkit_lab.environment import speed_file
from dropkit_lab.experiments.base import Experiment, RunSpec, mean_std
from dropkit_lab.experiments.registry import get_experiment
from dropkit_lab.text import duration, plural

__all__ = [
    "Interrupted",
    "ensemble_groups",
    "OutputLock",
    "RunnerError",
    "WorkerDied",
    "check_out",
    "experiment_dir",
    "learning_curves",
    "read_run",
    "run_experiment",
]

_DATA_CACHE: dict = {}
LOCK_NAME = ".dropkit-lock"
RUN_KEYS = ("spec", "test_error", "test_errors", "n_test", "history", "measures", "train_seconds")
#: Runs shorter than this are mostly start-up; they do not teach the machine's speed.
_SPEED_MIN_SECONDS = 5.0
#: Per-run speeds kept per size class in the speed file (their spread is the estimates' error).
_SPEED_SAMPLES = 20
#: The signals that stop a run (one line, finished runs kept, the same command resumes).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class RunnerError(RuntimeError):
    """A problem the user can fix (the output folder, a lock held, a device): one clear line."""


class WorkerDied(RunnerError):
    """A worker process died while it trained a run (killed by a signal, or it exited); the
    other workers were stopped, finished runs are kept, and the same command resumes."""

    exit_code = 1

    def __init__(self, run: str, how: str, finished: int, total: int, root: Path) -> None:
        self.run, self.how = run, how
        super().__init__(
            f"the worker process training {run} died ({how}); the other workers were stopped. "
            f"{finished} of {plural(total, 'run')} finished (kept in {root / 'runs'}); run the "
            "same command again to resume"
        )


class _WorkerDied(Exception):
    def __init__(self, run: str, how: str) -> None:
        super().__init__(run, how)
        self.run, self.how = run, how


class Interrupted(KeyboardInterrupt):
    """The run was stopped by SIGINT, SIGTERM or SIGHUP; every worker is gone, finished runs are
    kept."""

    def __init__(self, signum: int, finished: int, total: int, root: Path) -> None:
        self.signum, self.finished, self.total, self.root = signum, finished, total, root
        name = signal.Signals(signum).name
        super().__init__(
            f"stopped by {name}: {finished} of {plural(total, 'run')} finished (kept in "
            f"{root / 'runs'}); run the same command again to resume"
        )

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _Stop(BaseException):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _stop_on_signals():
    """Turn the first of :data:`STOP_SIGNALS` into :class:`_Stop` in the main thread; later ones
    are ignored until the stop is handled. Outside the main thread nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        raise _Stop(signum)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def experiment_dir(out: str | os.PathLike, name: str, profile: str) -> Path:
    return Path(out) / name / profile


def check_out(out: str | os.PathLike) -> Path:
    """``out`` as a folder this process can write to (made if missing); :class:`RunnerError`
    naming the folder and the reason otherwise. Checked before anything trains."""
    if not str(out).strip():
        raise RunnerError("--out is empty: name a folder for the results (default: dropkit-runs)")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunnerError(f"--out {out} is a file, not a folder; choose a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunnerError(
            f"--out {out} cannot be made ({exc.strerror or exc}); choose a folder you can write to"
        ) from exc
    try:  # os.access is not enough: root, read-only mounts, full disks
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise RunnerError(
            f"--out {out} is not writable ({exc.strerror or exc}); choose a folder you can write to"
        ) from exc
    return out


def _missing_folders(path: Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    for folder in (path, *path.parents):
        if folder.exists() or folder.is_symlink():
            break
        missing.append(folder)
    return missing


def _remove_empty(folders: list[Path]) -> list[Path]:
    """Remove those of ``folders`` (deepest first) that are empty; returns the removed ones."""
    removed = []
    for folder in folders:
        try:
            folder.rmdir()  # only ever removes an empty folder
        except FileNotFoundError:
            continue
        except OSError:
            break
        removed.append(folder)
    return removed


class OutputLock:
    """An exclusive lock on an output folder (``flock`` on ``<out>/.dropkit-lock``).

    The file names the holder: pid, host, command and start time. It is made under a temporary
    name (``O_CREAT | O_EXCL | O_NOFOLLOW``), locked and written there, then hard-linked into
    place, so the lock file is never opened through a symbolic link, never truncated, and never
    seen empty; it is removed on release. The lock dies with its process: a lock file whose
    holder ended without releasing it is taken over with a message. A symbolic link (or anything
    but a plain file) in its place is refused, untouched. Use as a context manager."""

    def __init__(self, out: str | os.PathLike, say=None) -> None:
        self.path = Path(out) / LOCK_NAME
        self.say = say or _say
        self.fd: int | None = None

    def __enter__(self) -> OutputLock:
        for _ in range(100):  # another process may replace the file between two looks
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
            except FileNotFoundError:
                if self._create():
                    return self
                continue
            except OSError as exc:
                raise self._refuse(exc) from None
            try:
                if not _is_plain_file(fd):
                    raise RunnerError(
                        f"{self.path} is not a plain file, so not dropkit's lock; remove it or "
                        "choose another --out"
                    )
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = _describe_holder(os.pread(fd, 65536, 0))
                    raise RunnerError(
                        f"another dropkit run is using {self.path.parent}: {holder}; wait for it "
                        "to finish, or choose another --out"
                    ) from None
                if not self._names(fd):
                    continue  # released and removed (or replaced) meanwhile: look again
                stale = os.pread(fd, 65536, 0)
                if stale.strip():
                    self.say(
                        f"taking over the lock {self.path} of a run that ended without releasing "
                        f"it ({_describe_holder(stale)})"
                    )
                os.unlink(self.path)  # the name only; its content is left as it was
            finally:
                os.close(fd)
        raise RunnerError(f"{self.path} keeps changing: another program is using {self.path}")

    def _refuse(self, exc: OSError) -> RunnerError:
        if exc.errno == errno.ELOOP:
            return RunnerError(
                f"{self.path} is a symbolic link, not dropkit's lock (dropkit neither follows "
                "nor writes through it); remove it or choose another --out"
            )
        return RunnerError(
            f"{self.path} cannot be opened ({exc.strerror or exc}); remove it or choose another "
            "--out"
        )

    def _names(self, fd: int) -> bool:
        """Whether :attr:`path` still names the file open as ``fd``."""
        try:
            here = os.lstat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)

    def _create(self) -> bool:
        """Make the lock file, locked and written, in one step; False when another process made
        one first."""
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join(sys.argv),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        temporary = self.path.with_name(f"{LOCK_NAME}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temporary, flags, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody else knows this file yet
            os.write(fd, (json.dumps(info) + "\n").encode())
            try:
                os.link(temporary, self.path, follow_symlinks=False)
            except FileExistsError:
                os.close(fd)
                return False
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        self.fd = fd
        return True

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            if self._names(self.fd):
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
            os.close(self.fd)  # closing releases the flock
            self.fd = None


def _is_plain_file(fd: int) -> bool:
    return stat.S_ISREG(os.fstat(fd).st_mode)


def _describe_holder(raw: bytes) -> str:
    try:
        info = json.loads(raw)
        return (
            f"pid {info['pid']} on {info['host']}, `{info['command']}`, started {info['started']}"
        )
    except (ValueError, KeyError, TypeError):
        return "holder unknown (the lock file is unreadable)"


def size_class(spec: RunSpec) -> str:
    """``"small"`` when the largest matmul of a step is below ``SMALL_WORK``, else ``"large"``."""
    return "small" if step_work(spec.train.batch_size, spec.layer_sizes()) < SMALL_WORK else "large"


def _record_speed(records: list[tuple[RunSpec, dict]]) -> None:
    """Keep the speed (multiply-adds per second of training and measuring) of this invocation's
    runs, per size class, in :func:`~dropkit_lab.environment.speed_file`: the last
    :data:`_SPEED_SAMPLES` runs' speeds, whose median and spread the estimates use."""
    path = speed_file()
    try:
        speeds = json.loads(path.read_text())
        speeds = speeds if isinstance(speeds, dict) else {}
    except (OSError, ValueError):
        speeds = {}
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    for size in ("small", "large"):
        timed = [
            (s.work(), r["train_seconds"] + r.get("measure_seconds", 0.0))
            for s, r in records
            if size_class(s) == size
        ]
        new = [w / t for w, t in timed if t >= _SPEED_MIN_SECONDS]
        if not new:
            continue
        entry = speeds.get(size) if isinstance(speeds.get(size), dict) else {}
        old = entry.get("samples", [])
        old = (
            [float(v) for v in old if isinstance(v, (int, float))] if isinstance(old, list) else []
        )
        samples = (old + new)[-_SPEED_SAMPLES:]
        speeds[size] = {
            "multiply_adds_per_second": sorted(samples)[len(samples) // 2],
            "samples": samples,
            "measured": now,
        }
    with contextlib.suppress(OSError):  # a cache, never worth failing a run
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, speeds)


def _estimate(pending: list[RunSpec], workers: int) -> str:
    """How long ``pending`` should take here, from this machine's measured speed and its spread
    (:mod:`dropkit_lab.catalogue`)."""
    speeds = measured_speeds()
    seconds = error = 0.0
    for spec in pending:
        t, e = estimate(spec.work(), size_class(spec), speeds)
        seconds, error = seconds + t, error + e
    parallel = max(1, min(workers, len(pending)))
    source = "measured speed" if speeds else "a reference machine's speed"
    return f"{duration(seconds / parallel, error / parallel)} from {source}"


def _dataset(name: str, data_dir, train_size, test_size):
    key = (name, str(data_dir))
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load_dataset(name, data_dir)
    return _DATA_CACHE[key].subset(train_size, test_size)


def _train(spec: RunSpec, data, checkpoint: Path, progress: str, desc: str, device: str):
    """Train ``spec``, resuming from its checkpoint; an unusable checkpoint is deleted (with a
    message) and the run trained from its first epoch."""

    def attempt():
        return train(spec.model, spec.train, data, checkpoint=checkpoint, progress=progress,
                     desc=desc, device=device)  # fmt: skip

    try:
        return attempt()
    except CheckpointError as exc:
        if exc.path.is_dir():
            aside = _move_aside(exc.path, checkpoint.parent.parent / "damaged")
            _say(f"{exc}; moved to {aside}, training {spec.run_id} from its first epoch")
        else:
            exc.path.unlink()
            _say(f"{exc}; deleted it, training {spec.run_id} from its first epoch")
    return attempt()


def ensemble_groups(specs: list[RunSpec]) -> list[list[RunSpec]]:
    """``specs`` that the ensemble trainer can train together: groups of at least two runs that
    share architecture, batch size, epochs and data
    (:func:`~dropkit_lab.engine.ensemble.stack_key`), in the experiment's order."""
    groups: dict[tuple, list[RunSpec]] = {}
    for spec in specs:
        key = stack_key(spec.model, spec.train)
        if key is not None:
            groups.setdefault((key, spec.dataset, spec.train_size, spec.test_size), []).append(spec)
    return [g for g in groups.values() if len(g) > 1]


def _execute_group(
    experiment: Experiment,
    specs: list[RunSpec],
    profile: str,
    root: Path,
    data_dir,
    device: str,
    progress: str,
) -> list[dict]:
    """Train ``specs`` with the ensemble trainer (each resuming from its checkpoint; an unusable
    checkpoint is deleted or moved aside with a message, as :func:`_train` does), then measure
    and record each run as :func:`_execute` does."""
    first = specs[0]
    data = _dataset(first.dataset, data_dir, first.train_size, first.test_size)
    checkpoints = [root / "checkpoints" / f"{s.run_id}.pt" for s in specs]
    members = [
        Member(s.model, s.train, c, s.run_id) for s, c in zip(specs, checkpoints, strict=True)
    ]
    desc = f"{experiment.name}/{first.run_id}..{specs[-1].run_id} (ensemble of {len(specs)})"
    for _ in range(len(specs) + 1):  # each failure removes one checkpoint
        try:
            results = train_ensemble(members, data, progress=progress, desc=desc, device=device)
            break
        except CheckpointError as exc:
            run_id = exc.path.stem
            if exc.path.is_dir():
                aside = _move_aside(exc.path, exc.path.parent.parent / "damaged")
                _say(f"{exc}; moved to {aside}, training {run_id} from its first epoch")
            else:
                exc.path.unlink()
                _say(f"{exc}; deleted it, training {run_id} from its first epoch")
    else:  # pragma: no cover - every retry removed a checkpoint
        raise RunnerError(f"the checkpoints of {desc} cannot be used")
    return [
        _finish(experiment, s, profile, root, device, data, c, r)
        for s, c, r in zip(specs, checkpoints, results, strict=True)
    ]


def _execute(
    experiment: Experiment,
    spec: RunSpec,
    profile: str,
    root: Path,
    data_dir,
    device: str,
    progress: str,
) -> dict:
    data = _dataset(spec.dataset, data_dir, spec.train_size, spec.test_size)
    checkpoint = root / "checkpoints" / f"{spec.run_id}.pt"
    desc = f"{experiment.name}/{spec.run_id}"
    result = _train(spec, data, checkpoint, progress, desc, device)
    return _finish(experiment, spec, profile, root, device, data, checkpoint, result)


def _finish(experiment, spec, profile, root, device, data, checkpoint, result) -> dict:
    """Measure a trained run, write its record and delete its checkpoint; the record."""
    t0 = time.perf_counter()
    result.model.cpu()  # measurements run on the CPU copy of the data
    measures = experiment.measure(spec, result, data)
    record = {
        "experiment": experiment.name,
        "profile": profile,
        "spec": spec.to_dict(),
        "test_error": result.test_error,
        "test_errors": result.test_errors,
        "n_test": result.n_test,
        "n_train": len(data.train_y),
        "history": result.history,
        "measures": measures,
        "weights_sha256": weights_digest(result.model),
        "train_seconds": sum(r["seconds"] for r in result.history),
        "measure_seconds": time.perf_counter() - t0,
        "resumed_from_epoch": result.resumed_from,
        "environment": {
            "dropkit": dropkit.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "threads": result.threads,
            "device": device,
        },
    }
    write_record(root / "runs" / f"{spec.run_id}.json", record)
    checkpoint.unlink(missing_ok=True)
    return jsonable(record)


def _move_aside(path: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    n = 1
    while (folder / f"{path.stem}.{n}{path.suffix}").exists():
        n += 1
    dest = folder / f"{path.stem}.{n}{path.suffix}"
    os.replace(path, dest)
    return dest


def read_run(path: str | os.PathLike) -> dict:
    """A stored run, verified (:class:`~dropkit_lab.engine.jsonio.DamagedFileError` if it is
    not)."""
    try:
        record = read_record(path, RUN_KEYS)
    except UncheckedFileError as exc:
        record = exc.record
        if not isinstance(record["spec"], dict) or "run_id" not in record["spec"]:
            raise DamagedFileError(path, "its spec is not a run's spec") from None
        raise
    if not isinstance(record["spec"], dict) or "run_id" not in record["spec"]:
        raise DamagedFileError(path, "its spec is not a run's spec")
    return record


def _finished(root: Path, spec: RunSpec) -> bool:
    """Whether ``spec`` has a stored result made by this very spec. A stale one is moved to
    ``superseded/``, an unreadable one to ``damaged/``, each with a message."""
    path = root / "runs" / f"{spec.run_id}.json"
    if not path.exists():
        return False
    try:
        record = read_run(path)
    except UncheckedFileError:
        # Written by a dropkit from before checksums, or edited and its checksum removed: nothing
        # can tell which, so it is not trusted (nor re-signed).
        aside = _move_aside(path, root / "unverified")
        _say(
            f"{path} has no checksum, so it cannot be verified (an older dropkit wrote it, or it "
            f"was edited): moved to {aside}, training {spec.run_id} again"
        )
        return False
    except DamagedFileError as exc:
        aside = _move_aside(path, root / "damaged")
        _say(f"{path} {exc.reason}: moved to {aside}, training {spec.run_id} again")
        return False
    if record["spec"] == jsonable(spec.to_dict()):
        return True
    aside = _move_aside(path, root / "superseded")
    _say(
        f"{spec.run_id}: the stored result was made with another configuration; moved to "
        f"{aside} and training it again"
    )
    return False


def _set_parent_death_signal() -> None:
    """Linux: SIGTERM this process when its parent dies, however it dies (no orphans)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _worker_init(threads: int, parent: int) -> None:
    # The runner stops its workers itself (SIGTERM); a Ctrl-C sent to the whole process group
    # must not make each of them print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a closed terminal: the runner stops us
    _set_parent_death_signal()
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)
    torch.set_num_threads(threads)


def _worker(args):
    name, spec, profile, root, data_dir, device, progress = args
    return spec.run_id, _execute(
        get_experiment(name), spec, profile, root, data_dir, device, progress
    )


def _pool_worker(conn, threads: int, parent: int) -> None:
    """A worker process: train each job the runner sends, answer ``("done", run_id, record)``
    or ``("error", run_id, pickled exception or None, traceback)``; ``None`` ends it."""
    _worker_init(threads, parent)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        try:
            run_id, record = _worker(job)
            conn.send(("done", run_id, record))
        except BaseException as exc:
            try:
                payload = pickle.dumps(exc)
            except Exception:
                payload = None
            conn.send(("error", job[1].run_id, payload, traceback.format_exc()))


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _threads(specs: list[RunSpec], processes: int) -> int:
    work = max(step_work(s.train.batch_size, s.layer_sizes()) for s in specs)
    return choose_threads(work, processes=processes)


def run_experiment(
    name: str,
    profile: str = "smoke",
    *,
    seeds: int | None = None,
    data_dir: str | os.PathLike | None = None,
    out: str | os.PathLike = "dropkit-runs",
    device: str = "cpu",
    workers: int = 1,
    quiet: bool = False,
    progress: str = "auto",
    echo=print,
    threads: int | None = None,
    ensemble: bool = False,
) -> dict:
    """Run every pending run of experiment ``name`` and return (and write) its summary.

    ``workers > 1`` trains independent runs in that many processes. Each process's torch threads
    follow the size of the nets and the machine's load (:mod:`dropkit_lab.engine.threads`), or
    are ``threads`` when given; a resumed run keeps the count its checkpoint recorded.
    ``ensemble`` trains the pending runs that share an architecture, batch size, epochs and data
    (:func:`ensemble_groups`) as one stacked model in this process
    (:func:`~dropkit_lab.engine.ensemble.train_ensemble`: each run's record is the one it gets
    alone with the same thread count, timings aside), with every core's thread unless
    ``threads`` is given; the other runs then train as without it (serially or in ``workers``).
    ``quiet`` turns progress bars into nothing but a line per finished run. ``echo`` receives the
    printable summary (None: print nothing).

    Raises :class:`RunnerError` (output folder unusable, another runner holds it, device
    unavailable) before anything trains, :class:`WorkerDied` when a worker process died, and
    :class:`Interrupted` on SIGINT/SIGTERM/SIGHUP once every worker has stopped. A run that fails
    before any result is written leaves no folder it made behind.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if seeds is not None and seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    experiment = get_experiment(name)
    if profile not in experiment.profiles:
        raise ValueError(
            f"profile must be one of {experiment.profiles} for {name}, got {profile!r}"
        )
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RunnerError(
            f"--device {device} requested but this torch has no usable CUDA device "
            f"(torch {torch.__version__}); use --device cpu"
        )
    seeds = seeds if seeds is not None else experiment.default_seeds[profile]
    specs = experiment.runs(profile, seeds)
    made = _missing_folders(Path(out)) if str(out).strip() else []
    out = check_out(out)
    root = experiment_dir(out, name, profile)
    made = _missing_folders(root) + made  # deepest first
    try:
        with OutputLock(out), _stop_on_signals():
            try:
                return _run_locked(
                    experiment, profile, seeds, specs, root, data_dir, device, workers, quiet,
                    progress, echo, threads, ensemble,
                )  # fmt: skip
            except _Stop as stop:
                remove_stale_temporaries(root, lambda text: None)
                finished = sum((root / "runs" / f"{s.run_id}.json").is_file() for s in specs)
                raise Interrupted(stop.signum, finished, len(specs), root) from None
            except _WorkerDied as died:
                remove_stale_temporaries(root, lambda text: None)
                finished = sum((root / "runs" / f"{s.run_id}.json").is_file() for s in specs)
                raise WorkerDied(died.run, died.how, finished, len(specs), root) from None
    except BaseException:
        _remove_empty(made)  # what this invocation made and left empty (the lock is gone)
        raise


def _run_locked(
    experiment, profile, seeds, specs, root, data_dir, device, workers, quiet, progress, echo,
    threads, ensemble=False,
) -> dict:  # fmt: skip
    if root.exists():
        remove_stale_temporaries(root, _say)
    pending = [s for s in specs if not _finished(root, s)]
    # This process's threads (preamble, serial training, measurements) follow the work and load;
    # with workers it only does the preamble.
    saved = torch.get_num_threads()
    torch.set_num_threads(threads or _threads(pending or specs, 1 if workers == 1 else workers))
    try:
        return _train_and_summarize(
            experiment, profile, seeds, specs, pending, root, data_dir, device, workers, quiet,
            progress, echo, threads, ensemble,
        )  # fmt: skip
    finally:
        torch.set_num_threads(saved)


def _train_and_summarize(
    experiment, profile, seeds, specs, pending, root, data_dir, device, workers, quiet, progress,
    echo, threads, ensemble=False,
) -> dict:  # fmt: skip
    name = experiment.name
    preamble = experiment.preamble()
    if preamble is not None and echo is not None:
        from dropkit_lab.report import render_table_text

        echo(render_table_text(preamble))
    done = len(specs) - len(pending)
    total = plural(len(specs), "run")
    _say(
        f"{name} [{profile}]: {total}, {done} already done, {len(pending)} to go"
        + (f" ({_estimate(pending, workers)})" if pending else "")
    )
    if pending:
        # Fail early (and download once) before any worker starts.
        for dataset in {s.dataset for s in pending}:
            _DATA_CACHE.setdefault((dataset, str(data_dir)), load_dataset(dataset, data_dir))
    t0 = time.perf_counter()
    finished: list[tuple[RunSpec, dict]] = []
    rest = pending
    if ensemble:
        groups = ensemble_groups(pending)
        stacked = {s.run_id for group in groups for s in group}
        rest = [s for s in pending if s.run_id not in stacked]
        for group in groups:
            bar = "none" if quiet else progress
            saved = torch.get_num_threads()
            torch.set_num_threads(threads or _threads(group, 1))
            try:
                records = _execute_group(experiment, group, profile, root, data_dir, device, bar)
            finally:
                torch.set_num_threads(saved)
            for spec, record in zip(group, records, strict=True):
                finished.append((spec, record))
                _say(_finished_line(record, done + len(finished), len(specs)))
    done += len(finished)
    if workers == 1 or len(rest) <= 1:
        for spec in rest:
            bar = "none" if quiet else progress
            record = _execute(experiment, spec, profile, root, data_dir, device, bar)
            finished.append((spec, record))
            _say(_finished_line(record, len(specs) - len(pending) + len(finished), len(specs)))
    else:
        finished += _run_parallel(
            experiment, profile, rest, root, data_dir, device, workers, quiet, done, len(specs),
            threads,
        )  # fmt: skip
    wall = time.perf_counter() - t0
    _record_speed(finished)
    results = []
    for s in specs:
        try:
            results.append(read_run(root / "runs" / f"{s.run_id}.json"))
        except DamagedFileError as exc:
            _say(f"{exc}: left out of the summary; run the same command again to retrain it")
    summary = experiment.summarize(profile, results)
    summary.setdefault("plots", []).insert(0, learning_curves(experiment, profile, results))
    summary.update(
        {
            "experiment": name,
            "title": experiment.title,
            "paper": experiment.paper,
            "profile": profile,
            "pipeline_check": profile == "smoke",
            "seeds": seeds,
            "runs": len(results),
            "train_seconds_total": sum(r["train_seconds"] for r in results),
            "wall_seconds_this_invocation": wall,
            "workers": workers,
            "ensemble": ensemble,
            "preamble": preamble,
            # What the summary was computed from: `dropkit report` checks the run files against it.
            "run_sha256": {r["spec"]["run_id"]: r["sha256"] for r in results},
        }
    )
    write_record(root / "summary.json", summary)
    if echo is not None:
        from dropkit_lab.report import render_summary_text

        echo(render_summary_text(summary))
    return summary


def _how_it_died(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else ""
        hint = ", as the out-of-memory killer does" if -exitcode == signal.SIGKILL else ""
        return f"killed by {name or 'signal ' + str(-exitcode)}{hint}"
    return f"exited with status {exitcode}"


def _run_parallel(
    experiment, profile, pending, root, data_dir, device, workers, quiet, done, n, threads=None
):
    """Train ``pending`` in ``workers`` spawned processes, one run at a time each. The runner
    watches every worker's process as well as its answers: a worker that dies is named with its
    run within a second, and :class:`_WorkerDied` raised. On that or on :class:`_Stop` (a
    signal) every worker is terminated and joined before it propagates."""
    workers = min(workers, len(pending))
    threads = threads or _threads(pending, workers)
    bar = "none" if quiet else "plain"
    by_id = {s.run_id: s for s in pending}
    passive_wait_environment()  # the workers' OpenMP threads sleep when idle
    context = multiprocessing.get_context("spawn")
    jobs = [(experiment.name, s, profile, root, data_dir, device, bar) for s in pending]
    jobs.reverse()  # popped from the end: in order
    procs, conns, busy = [], [], {}  # busy: index -> run_id
    finished = []
    try:
        for _ in range(workers):
            mine, theirs = context.Pipe()
            proc = context.Process(
                target=_pool_worker, args=(theirs, threads, os.getpid()), daemon=True
            )
            proc.start()
            theirs.close()
            procs.append(proc)
            conns.append(mine)
        for i in range(workers):
            job = jobs.pop()
            conns[i].send(job)
            busy[i] = job[1].run_id
        while busy:
            watched = [conns[i] for i in busy] + [procs[i].sentinel for i in busy]
            wait_for_any(watched, timeout=1.0)
            for i in list(busy):
                message = None
                if conns[i].poll():
                    try:
                        message = conns[i].recv()
                    except (EOFError, OSError):
                        message = None
                if message is None:
                    if procs[i].is_alive():
                        continue
                    procs[i].join(1)
                    time.sleep(0.2)  # a stop signal sent to the whole group is handled first
                    how = _how_it_died(procs[i].exitcode)
                    run = f"{experiment.name}/{busy[i]}"
                    _say(f"worker process {procs[i].pid} training {run} died ({how})")
                    raise _WorkerDied(run, how)
                if message[0] == "error":
                    _, run_id, payload, text = message
                    try:
                        error = pickle.loads(payload) if payload is not None else None
                    except Exception:
                        error = None
                    if isinstance(error, BaseException):
                        raise error
                    raise RuntimeError(f"worker training {run_id} failed:\n{text}")
                _, run_id, record = message
                finished.append((by_id[run_id], record))
                _say(_finished_line(record, done + len(finished), n))
                if jobs:
                    job = jobs.pop()
                    conns[i].send(job)
                    busy[i] = job[1].run_id
                else:
                    del busy[i]
                    with contextlib.suppress(OSError):
                        conns[i].send(None)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()  # SIGTERM: it stops within the current operation
        deadline = time.monotonic() + 10
        for proc in procs:
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        for conn in conns:
            conn.close()
    return finished


def learning_curves(experiment: Experiment, profile: str, results: list[dict]) -> dict:
    """Test error against epochs per configuration (mean ± std over seeds at the epochs every
    seed was evaluated), with the paper's value as a horizontal line where there is one."""
    series = []
    paper = experiment.paper_errors()
    for group, runs in experiment.by_group(results).items():
        points: dict[int, list[float]] = {}
        for r in runs:
            for h in r["history"]:
                if h.get("test_error") is not None:
                    points.setdefault(int(h["epoch"]) + 1, []).append(100 * h["test_error"])
        epochs = sorted(e for e, v in points.items() if len(v) == len(runs))
        stats = [mean_std(points[e]) for e in epochs]
        series.append(
            {
                "label": group,
                "x": epochs,
                "y": [m for m, _ in stats],
                "yerr": [s for _, s in stats] if len(runs) > 1 else None,
            }
        )
        if group in paper:
            series.append(
                {"label": f"paper: {group}", "x": [], "y": [paper[group]], "kind": "hline"}
            )
    return {
        "name": "test-error-vs-epoch",
        "title": f"Test error against epochs ({experiment.name}, {profile} profile)",
        "xlabel": "epoch",
        "ylabel": "test error (%)",
        "series": series,
    }


def _finished_line(record: dict, index: int, total: int) -> str:
    spec = record["spec"]
    return (
        f"[{index}/{total}] {spec['run_id']}: test error {100 * record['test_error']:.2f}% "
        f"({record['test_errors']}/{record['n_test']}), {record['train_seconds']:.1f}s"
    )
