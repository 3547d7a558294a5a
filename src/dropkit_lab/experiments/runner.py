"""Run an experiment: train its runs (skipping finished ones, in parallel workers), summarise.

Layout of the output folder ``<out>/<experiment>/<profile>/``:

- ``runs/<run_id>.json``: one finished run (its spec, history, metrics, timing, a checksum),
  written atomically; re-running skips it when its spec is the one the experiment asks for now.
- ``superseded/<run_id>.<n>.json``: a result made with another configuration (an edited profile,
  another dropkit version), moved aside, never deleted, before the run is trained again.
- ``damaged/<run_id>.<n>.json``: a result that could not be read (damaged, truncated, edited by
  hand: it fails its checksum), moved aside with a message before the run is trained again.
- ``checkpoints/<run_id>.pt``: the checkpoint of an unfinished run (a stopped run resumes from
  it); deleted once the run's JSON is written, and deleted with a message when unreadable.
- ``summary.json``: tables, plots and checks over all runs, rewritten after every invocation.

``<out>/.dropkit-lock`` keeps a second runner out of the same folder while one works there; it
names the holder (pid, host, command, start time). Ctrl-C or SIGTERM stops every worker at once
and raises :class:`Interrupted`; finished runs are kept, and the same command resumes.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import fcntl
import json
import multiprocessing
import os
import platform
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

import dropkit
from dropkit.data import load_dataset
from dropkit.engine.jsonio import (
    DamagedFileError,
    UncheckedFileError,
    jsonable,
    read_record,
    remove_stale_temporaries,
    write_json_atomic,
    write_record,
)
from dropkit.engine.specs import weights_digest
from dropkit.engine.threads import (
    SMALL_WORK,
    choose_threads,
    passive_wait_environment,
    step_work,
)
from dropkit.engine.trainer import CheckpointError, train
from dropkit.experiments.base import Experiment, RunSpec, mean_std
from dropkit.experiments.registry import get_experiment

__all__ = [
    "Interrupted",
    "OutputLock",
    "RunnerError",
    "check_out",
    "experiment_dir",
    "learning_curves",
    "read_run",
    "run_experiment",
    "speed_file",
]

_DATA_CACHE: dict = {}
LOCK_NAME = ".dropkit-lock"
RUN_KEYS = ("spec", "test_error", "test_errors", "n_test", "history", "measures", "train_seconds")
#: Runs shorter than this are mostly start-up; they do not teach the machine's speed.
_SPEED_MIN_SECONDS = 5.0


class RunnerError(RuntimeError):
    """A problem the user can fix (the output folder, a lock held, a device): one clear line."""


class Interrupted(KeyboardInterrupt):
    """The run was stopped by SIGINT or SIGTERM; every worker is gone, finished runs are kept."""

    def __init__(self, signum: int, finished: int, total: int, root: Path) -> None:
        self.signum, self.finished, self.total, self.root = signum, finished, total, root
        name = signal.Signals(signum).name
        super().__init__(
            f"stopped by {name}: {finished} of {total} runs finished (kept in {root / 'runs'}); "
            "run the same command again to resume"
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
    """Turn the first SIGINT/SIGTERM into :class:`_Stop` in the main thread; later ones are
    ignored until the stop is handled. Outside the main thread nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise _Stop(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
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


class OutputLock:
    """An exclusive lock on an output folder (``flock`` on ``<out>/.dropkit-lock``).

    The file names the holder: pid, host, command and start time. The lock dies with its process;
    a lock file still naming a process that ended without releasing it is taken over with a
    message. Use as a context manager."""

    def __init__(self, out: str | os.PathLike, say=None) -> None:
        self.path = Path(out) / LOCK_NAME
        self.say = say or _say
        self.fd: int | None = None

    def __enter__(self) -> OutputLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe_holder(os.pread(fd, 65536, 0))
            os.close(fd)
            raise RunnerError(
                f"another dropkit run is using {self.path.parent}: {holder}; wait for it to "
                "finish, or choose another --out"
            ) from None
        stale = os.pread(fd, 65536, 0)
        if stale.strip():
            self.say(
                f"taking over the lock {self.path} of a run that ended without releasing it "
                f"({_describe_holder(stale)})"
            )
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join(sys.argv),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)  # closing releases the flock
            self.fd = None


def _describe_holder(raw: bytes) -> str:
    try:
        info = json.loads(raw)
        return (
            f"pid {info['pid']} on {info['host']}, `{info['command']}`, started {info['started']}"
        )
    except (ValueError, KeyError, TypeError):
        return "holder unknown (the lock file is unreadable)"


def speed_file() -> Path:
    """Where the runner keeps this machine's measured training speed (for ``dropkit run
    --help``): ``$DROPKIT_CACHE/speed.json``, default ``~/.cache/dropkit/speed.json``."""
    return Path(os.environ.get("DROPKIT_CACHE") or "~/.cache/dropkit").expanduser() / "speed.json"


def size_class(spec: RunSpec) -> str:
    """``"small"`` when the largest matmul of a step is below ``SMALL_WORK``, else ``"large"``."""
    return "small" if step_work(spec.train.batch_size, spec.layer_sizes()) < SMALL_WORK else "large"


def _record_speed(records: list[tuple[RunSpec, dict]]) -> None:
    """Keep the training speed of this invocation's runs, per size class, in :func:`speed_file`."""
    path = speed_file()
    try:
        speeds = json.loads(path.read_text())
        speeds = speeds if isinstance(speeds, dict) else {}
    except (OSError, ValueError):
        speeds = {}
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    for size in ("small", "large"):
        timed = [(s.work(), r["train_seconds"]) for s, r in records if size_class(s) == size]
        timed = [(w, t) for w, t in timed if t >= _SPEED_MIN_SECONDS]
        if timed:
            speed = sum(w for w, _ in timed) / sum(t for _, t in timed)
            speeds[size] = {"multiply_adds_per_second": speed, "runs": len(timed), "measured": now}
    with contextlib.suppress(OSError):  # a cache, never worth failing a run
        write_json_atomic(path, speeds)


def _dataset(name: str, data_dir, train_size, test_size):
    key = (name, str(data_dir))
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load_dataset(name, data_dir)
    return _DATA_CACHE[key].subset(train_size, test_size)


def _train(spec: RunSpec, data, checkpoint: Path, progress: str, desc: str, device: str):
    """Train ``spec``, resuming from its checkpoint; an unusable checkpoint is deleted (with a
    message) and the run trained from its first epoch."""
    try:
        return train(
            spec.model,
            spec.train,
            data,
            checkpoint=checkpoint,
            progress=progress,
            desc=desc,
            device=device,
        )
    except CheckpointError as exc:
        if exc.path.is_dir():
            aside = _move_aside(exc.path, checkpoint.parent.parent / "damaged")
            _say(f"{exc}; moved to {aside}, training {spec.run_id} from its first epoch")
        else:
            exc.path.unlink()
            _say(f"{exc}; deleted it, training {spec.run_id} from its first epoch")
    return train(
        spec.model,
        spec.train,
        data,
        checkpoint=checkpoint,
        progress=progress,
        desc=desc,
        device=device,
    )


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
            "threads": torch.get_num_threads(),
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
    """A stored run, verified (:class:`~dropkit.engine.jsonio.DamagedFileError` if it is not)."""
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
    except UncheckedFileError as exc:
        # A result of a dropkit from before checksums: kept when it is this very run.
        if exc.record["spec"] == jsonable(spec.to_dict()):
            write_record(path, exc.record)
            _say(f"{path} has no checksum (an older dropkit wrote it); kept, checksum added")
            return True
        record = exc.record
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
    _set_parent_death_signal()
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)
    torch.set_num_threads(threads)


def _worker(args):
    name, spec, profile, root, data_dir, device, progress = args
    return spec.run_id, _execute(
        get_experiment(name), spec, profile, root, data_dir, device, progress
    )


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
) -> dict:
    """Run every pending run of experiment ``name`` and return (and write) its summary.

    ``workers > 1`` trains independent runs in that many processes. Each process's torch threads
    follow the size of the nets and the machine's load (:mod:`dropkit.engine.threads`).
    ``quiet`` turns progress bars into nothing but a line per finished run. ``echo`` receives the
    printable summary (None: print nothing).

    Raises :class:`RunnerError` (output folder unusable, another runner holds it, device
    unavailable) before anything trains, and :class:`Interrupted` on SIGINT/SIGTERM once every
    worker has stopped.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if seeds is not None and seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
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
    out = check_out(out)
    with OutputLock(out), _stop_on_signals():
        root = experiment_dir(out, name, profile)
        try:
            return _run_locked(
                experiment, profile, seeds, specs, root, data_dir, device, workers, quiet,
                progress, echo,
            )  # fmt: skip
        except _Stop as stop:
            remove_stale_temporaries(root, lambda text: None)
            finished = sum((root / "runs" / f"{s.run_id}.json").is_file() for s in specs)
            raise Interrupted(stop.signum, finished, len(specs), root) from None


def _run_locked(
    experiment, profile, seeds, specs, root, data_dir, device, workers, quiet, progress, echo
) -> dict:
    if root.exists():
        remove_stale_temporaries(root, _say)
    pending = [s for s in specs if not _finished(root, s)]
    # This process's threads (preamble, serial training, measurements) follow the work and load;
    # with workers it only does the preamble.
    saved = torch.get_num_threads()
    torch.set_num_threads(_threads(pending or specs, 1 if workers == 1 else workers))
    try:
        return _train_and_summarize(
            experiment, profile, seeds, specs, pending, root, data_dir, device, workers, quiet,
            progress, echo,
        )  # fmt: skip
    finally:
        torch.set_num_threads(saved)


def _train_and_summarize(
    experiment, profile, seeds, specs, pending, root, data_dir, device, workers, quiet, progress,
    echo,
) -> dict:  # fmt: skip
    name = experiment.name
    preamble = experiment.preamble()
    if preamble is not None and echo is not None:
        from dropkit.report import render_table_text

        echo(render_table_text(preamble))
    done = len(specs) - len(pending)
    _say(f"{name} [{profile}]: {len(specs)} runs, {done} already done, {len(pending)} to go")
    if pending:
        # Fail early (and download once) before any worker starts.
        for dataset in {s.dataset for s in pending}:
            _DATA_CACHE.setdefault((dataset, str(data_dir)), load_dataset(dataset, data_dir))
    t0 = time.perf_counter()
    finished: list[tuple[RunSpec, dict]] = []
    if workers == 1 or len(pending) <= 1:
        for i, spec in enumerate(pending):
            bar = "none" if quiet else progress
            record = _execute(experiment, spec, profile, root, data_dir, device, bar)
            finished.append((spec, record))
            _say(_finished_line(record, done + i + 1, len(specs)))
    else:
        finished = _run_parallel(
            experiment, profile, pending, root, data_dir, device, workers, quiet, done, len(specs)
        )
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
            "preamble": preamble,
        }
    )
    write_record(root / "summary.json", summary)
    if echo is not None:
        from dropkit.report import render_summary_text

        echo(render_summary_text(summary))
    return summary


def _run_parallel(experiment, profile, pending, root, data_dir, device, workers, quiet, done, n):
    """Train ``pending`` in ``workers`` spawned processes. On :class:`_Stop` (a signal) every
    worker is terminated and joined before the stop propagates."""
    workers = min(workers, len(pending))
    threads = _threads(pending, workers)
    bar = "none" if quiet else "plain"
    by_id = {s.run_id: s for s in pending}
    passive_wait_environment()  # the workers' OpenMP threads sleep when idle
    context = multiprocessing.get_context("spawn")
    pool = context.Pool(workers, initializer=_worker_init, initargs=(threads, os.getpid()))
    finished = []
    try:
        jobs = [(experiment.name, s, profile, root, data_dir, device, bar) for s in pending]
        results = pool.imap_unordered(_worker, jobs)
        for i in range(len(jobs)):
            while True:
                try:
                    run_id, record = results.next(timeout=0.5)
                    break
                except multiprocessing.TimeoutError:
                    continue
            finished.append((by_id[run_id], record))
            _say(_finished_line(record, done + i + 1, n))
        pool.close()
    except BaseException:
        pool.terminate()  # SIGTERM to every worker: they stop within the current operation
        raise
    finally:
        pool.join()
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
