"""Run an experiment: train its runs (skipping finished ones, in parallel workers), summarise.

Layout of the output folder ``<out>/<experiment>/<profile>/``:

- ``runs/<run_id>.json``: one finished run (its spec, history, metrics, timing), written
  atomically; re-running skips it when its spec is the one the experiment asks for now.
- ``superseded/<run_id>.<n>.json``: a result made with another configuration (an edited profile,
  another dropkit version), moved aside, never deleted, before the run is trained again.
- ``checkpoints/<run_id>.pt``: the checkpoint of an unfinished run (a killed run resumes from it);
  deleted once the run's JSON is written.
- ``summary.json``: tables, plots and checks over all runs, rewritten after every invocation.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path

import torch

import dropkit
from dropkit.data import load_dataset
from dropkit.engine.jsonio import jsonable, read_json, write_json_atomic
from dropkit.engine.specs import weights_digest
from dropkit.engine.trainer import train
from dropkit.experiments.base import Experiment, RunSpec
from dropkit.experiments.registry import get_experiment

__all__ = ["experiment_dir", "run_experiment"]

_DATA_CACHE: dict = {}


def experiment_dir(out: str | os.PathLike, name: str, profile: str) -> Path:
    return Path(out) / name / profile


def _dataset(name: str, data_dir, train_size, test_size):
    key = (name, str(data_dir))
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load_dataset(name, data_dir)
    return _DATA_CACHE[key].subset(train_size, test_size)


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
    result = train(
        spec.model,
        spec.train,
        data,
        checkpoint=checkpoint,
        progress=progress,
        desc=f"{experiment.name}/{spec.run_id}",
        device=device,
    )
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
    write_json_atomic(root / "runs" / f"{spec.run_id}.json", record)
    checkpoint.unlink(missing_ok=True)
    return record


def _finished(root: Path, spec: RunSpec) -> bool:
    """Whether ``spec`` has a stored result made by this very spec; a stale one is moved aside."""
    path = root / "runs" / f"{spec.run_id}.json"
    if not path.exists():
        return False
    if read_json(path).get("spec") == jsonable(spec.to_dict()):
        return True
    aside = root / "superseded"
    aside.mkdir(exist_ok=True)
    n = 1
    while (aside / f"{spec.run_id}.{n}.json").exists():
        n += 1
    os.replace(path, aside / f"{spec.run_id}.{n}.json")
    _say(
        f"{spec.run_id}: the stored result was made with another configuration; moved to "
        f"{aside / f'{spec.run_id}.{n}.json'} and training it again"
    )
    return False


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)


def _worker(name, spec, profile, root, data_dir, device, progress):
    return _execute(get_experiment(name), spec, profile, root, data_dir, device, progress)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


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

    ``workers > 1`` trains independent runs in that many processes (each with
    ``cpu_count // workers`` torch threads); ``quiet`` turns progress bars into nothing but a
    line per finished run. ``echo`` receives the printable summary (None: print nothing).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if seeds is not None and seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda requested but torch.cuda.is_available() is False")
    experiment = get_experiment(name)
    if profile not in experiment.profiles:
        raise ValueError(
            f"profile must be one of {experiment.profiles} for {name}, got {profile!r}"
        )
    seeds = seeds if seeds is not None else experiment.default_seeds[profile]
    specs = experiment.runs(profile, seeds)
    root = experiment_dir(out, name, profile)
    pending = [s for s in specs if not _finished(root, s)]
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
    if workers == 1 or len(pending) <= 1:
        for i, spec in enumerate(pending):
            bar = "none" if quiet else progress
            record = _execute(experiment, spec, profile, root, data_dir, device, bar)
            _say(_finished_line(record, done + i + 1, len(specs)))
    else:
        threads = max(1, (os.cpu_count() or 1) // workers)
        bar = "none" if quiet else "plain"
        context = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(
            workers, mp_context=context, initializer=_worker_init, initargs=(threads,)
        ) as pool:
            futures = [
                pool.submit(_worker, name, s, profile, root, data_dir, device, bar) for s in pending
            ]
            for i, future in enumerate(cf.as_completed(futures)):
                record = future.result()
                _say(_finished_line(record, done + i + 1, len(specs)))
    wall = time.perf_counter() - t0
    results = [read_json(root / "runs" / f"{s.run_id}.json") for s in specs]
    summary = experiment.summarize(profile, results)
    summary.update(
        {
            "experiment": name,
            "title": experiment.title,
            "paper": experiment.paper,
            "profile": profile,
            "seeds": seeds,
            "runs": len(results),
            "train_seconds_total": sum(r["train_seconds"] for r in results),
            "wall_seconds_this_invocation": wall,
            "workers": workers,
            "preamble": preamble,
        }
    )
    write_json_atomic(root / "summary.json", summary)
    if echo is not None:
        from dropkit.report import render_summary_text

        echo(render_summary_text(summary))
    return summary


def _finished_line(record: dict, index: int, total: int) -> str:
    spec = record["spec"]
    return (
        f"[{index}/{total}] {spec['run_id']}: test error {100 * record['test_error']:.2f}% "
        f"({record['test_errors']}/{record['n_test']}), {record['train_seconds']:.1f}s"
    )
