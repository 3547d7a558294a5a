"""The runner under real conditions, in subprocesses: Ctrl-C and SIGTERM with 1 and 2 workers
(no orphan, no half-written file, one line, resumable), two runners on one folder, damaged
results and checkpoints, unusable output folders."""

import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from dropkit_lab.engine.jsonio import read_record, write_record
from dropkit_lab.experiments.runner import LOCK_NAME, RunnerError, check_out, run_experiment

SRC = str(Path(__file__).resolve().parents[3] / "src")


def _env(tmp_path):
    env = dict(os.environ, PYTHONPATH=SRC)  # DROPKIT_CACHE_DIR: the test's (tests/lab/conftest)
    env.pop("PYTHONWARNINGS", None)
    return env


class Runner:
    """``dropkit run ...`` in a new session (its own process group), stderr collected live."""

    def __init__(self, tmp_path, *args):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dropkit_lab", "run", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(tmp_path),
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text, timeout=240):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not seen; stderr: {self.lines}")

    def finish(self, timeout=60):
        code = self.proc.wait(timeout)
        self.reader.join(10)
        return code


def _group_members(pgid):
    """Live processes of process group ``pgid`` (from /proc)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry))
    return members


def _no_orphans(pgid, grace=10.0):
    deadline = time.monotonic() + grace
    while _group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return _group_members(pgid)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_stops_every_worker_and_the_same_command_resumes(tmp_path, signum, workers):
    out = tmp_path / "out"
    args = ["demo", "--profile", "smoke", "--seeds", "30", "--out", str(out), "--quiet"]
    args += ["--workers", str(workers)]
    run = Runner(tmp_path, *args)
    run.wait_for("[2/120]")
    before = len(run.lines)
    if signum in (signal.SIGINT, signal.SIGHUP):
        # Ctrl-C, or the terminal closed: the whole group gets the signal
        os.killpg(run.proc.pid, signum)
    else:
        os.kill(run.proc.pid, signum)  # `kill PID`: the runner alone
    t0 = time.monotonic()
    code = run.finish(timeout=30)
    assert time.monotonic() - t0 < 20
    assert code == 128 + signum
    after = [line for line in run.lines[before:] if not line.startswith("[")]
    assert len(after) == 1, run.lines[before:]
    name = signal.Signals(signum).name
    assert after[0].startswith(f"dropkit: stopped by {name}: ")
    assert "of 120 runs finished" in after[0] and "run the same command again" in after[0]
    assert not any("Traceback" in line for line in run.lines)
    assert _no_orphans(run.proc.pid) == []
    root = out / "demo" / "smoke"
    assert not list(root.rglob("*.tmp"))
    finished = list((root / "runs").glob("*.json"))
    for path in finished:
        read_record(path)  # complete and verified
    assert 2 <= len(finished) < 120
    # The same command carries on from there.
    again = Runner(tmp_path, *args[:4], "1", *args[5:])  # fewer seeds: quick to finish
    assert again.finish(timeout=240) == 0, again.lines
    assert any("already done" in line for line in again.lines)


def test_second_runner_on_the_same_folder_is_refused_with_the_holder(tmp_path):
    out = tmp_path / "out"
    first = Runner(tmp_path, "demo", "--profile", "smoke", "--seeds", "30", "--out", str(out))
    first.wait_for("[1/120]")
    second = Runner(tmp_path, "demo", "--profile", "smoke", "--out", str(out), "--quiet")
    assert second.finish(timeout=120) == 2
    message = "\n".join(second.lines)
    assert "another dropkit run is using" in message and f"pid {first.proc.pid}" in message
    assert "run demo --profile smoke --seeds 30" in message
    os.kill(first.proc.pid, signal.SIGTERM)
    assert first.finish() == 143


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text(
        '{"pid": 999999, "host": "h", "command": "dropkit run x", "started": "then"}\n'
    )
    run_experiment("demo", "smoke", out=out, quiet=True, progress="none", echo=None)
    err = capsys.readouterr().err
    assert "taking over the lock" in err and "pid 999999" in err
    assert not (out / LOCK_NAME).exists()  # released: removed
    assert [p.name for p in out.iterdir()] == ["demo"]  # no temporary left


def test_unusable_out_is_refused_before_training(tmp_path):
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(RunnerError, match="is a file, not a folder"):
        check_out(file)
    with pytest.raises(RunnerError, match="cannot be made"):
        check_out(file / "sub")
    with pytest.raises(RunnerError, match="not writable"):
        check_out("/proc")  # exists, is a folder, refuses new files (even for root)
    with pytest.raises(RunnerError, match="--out is empty"):
        check_out("")
    assert check_out(tmp_path / "new" / "deep").is_dir()


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_damaged_results_and_checkpoints_are_named_and_retrained(tmp_path):
    out = tmp_path / "out"
    args = ["demo", "--profile", "smoke", "--seeds", "2", "--out", str(out), "--quiet"]
    assert Runner(tmp_path, *args).finish(timeout=300) == 0
    runs = out / "demo" / "smoke" / "runs"
    paths = sorted(runs.glob("*.json"))
    assert len(paths) == 8
    damage = dict(
        zip(["random", "empty", "truncated", "list", "missing", "edited", "folder"], paths)
    )
    damage["random"].write_bytes(os.urandom(500))
    damage["empty"].write_text("")
    damage["truncated"].write_text(damage["truncated"].read_text()[:200])
    damage["list"].write_text("[]")
    record = read_record(damage["missing"])
    del record["history"]
    write_record(damage["missing"], record)
    record = read_record(damage["edited"])
    edited = dict(record, test_error=0.0)
    damage["edited"].write_text(__import__("json").dumps(edited))
    damage["folder"].unlink()
    damage["folder"].mkdir()
    # Checkpoints of runs that are pending: the damaged ones above, after they are moved aside.
    ckpts = out / "demo" / "smoke" / "checkpoints"
    ckpts.mkdir(exist_ok=True)
    marker = tmp_path / "planted-code-ran"
    _Evil.marker = marker
    bad_ckpts = {
        "random": os.urandom(1000),
        "empty": b"",
        "truncated": None,
        "missing": pickle.dumps(_Evil()),
    }
    for kind, data in bad_ckpts.items():
        path = ckpts / f"{damage[kind].stem}.pt"
        if data is None:
            torch.save({"model": {"w": torch.ones(100)}}, path)
            path.write_bytes(path.read_bytes()[:60])
        else:
            path.write_bytes(data)
    (ckpts / f"{damage['list'].stem}.pt").mkdir()
    rerun = Runner(tmp_path, *args)
    assert rerun.finish(timeout=300) == 0, rerun.lines
    text = "\n".join(rerun.lines)
    reasons = {
        "random": "not valid JSON",
        "empty": "is empty",
        "truncated": "not valid JSON",
        "list": "holds a JSON list",
        "missing": "lacks history",
        "edited": "fails its checksum",
        "folder": "is a folder",
    }
    for kind, reason in reasons.items():
        line = next(line for line in rerun.lines if str(damage[kind]) in line)
        assert reason in line and "moved to" in line and "training" in line, line
    for kind in ("random", "empty", "truncated", "missing"):
        name = f"{damage[kind].stem}.pt"
        line = next(line for line in rerun.lines if name in line)
        assert "cannot be read" in line and "from its first epoch" in line, line
    assert "is a folder" in next(
        line for line in rerun.lines if f"{damage['list'].stem}.pt" in line
    )
    assert not marker.exists(), "a planted pickle ran code"
    assert "Traceback" not in text
    for path in paths:
        read_record(path)  # every run retrained and verified
    assert len(list((out / "demo" / "smoke" / "damaged").iterdir())) == 8


def _wait_for_worker(pid, timeout=120):
    """The pid of a spawned worker (``spawn_main``) of process ``pid``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid and b"spawn_main" in cmdline:
                return int(entry)
        time.sleep(0.2)
    raise AssertionError("no worker process appeared")


@pytest.mark.parametrize("kill", ["SIGKILL", "SIGSEGV"])
def test_a_dead_worker_is_named_at_once_and_the_same_command_resumes(tmp_path, kill):
    out = tmp_path / "out"
    args = ["demo", "--profile", "smoke", "--seeds", "30", "--out", str(out), "--quiet"]
    run = Runner(tmp_path, *args, "--workers", "2")
    run.wait_for("[2/120]")
    worker = _wait_for_worker(run.proc.pid)
    os.kill(worker, getattr(signal, kill))  # SIGKILL: what the out-of-memory killer sends
    t0 = time.monotonic()
    code = run.finish(timeout=60)
    assert time.monotonic() - t0 < 15, "the runner did not notice its worker's death in time"
    assert code == 1
    text = "\n".join(run.lines)
    died = f"killed by {kill}"
    line = next(line for line in run.lines if line.startswith("dropkit: error:"))
    assert "the worker process training demo/" in line and died in line, text
    assert "run the same command again to resume" in line
    assert f"worker process {worker} training demo/" in text
    assert "Traceback" not in text
    assert _no_orphans(run.proc.pid) == []
    assert not (out / LOCK_NAME).exists()
    root = out / "demo" / "smoke"
    assert not list(root.rglob("*.tmp"))
    for path in (root / "runs").glob("*.json"):
        read_record(path)
    again = Runner(tmp_path, *args[:4], "1", *args[5:])
    assert again.finish(timeout=240) == 0, again.lines
    assert any("already done" in line for line in again.lines)


def test_a_symlinked_lock_is_refused_and_its_target_untouched(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    precious = tmp_path / "precious"
    precious.write_text("precious\n")
    (out / LOCK_NAME).symlink_to(precious)
    proc = subprocess.run(
        [sys.executable, "-m", "dropkit_lab", "run", "demo", "--profile", "smoke", "--out",
         str(out), "--quiet"],
        capture_output=True, text=True, timeout=300, env=_env(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 2
    assert "is a symbolic link, not dropkit's lock" in proc.stderr
    assert precious.read_text() == "precious\n"
    assert (out / LOCK_NAME).is_symlink()  # left as it was
    # A hard link to a file is a plain file: taken over by removing the name, content untouched.
    (out / LOCK_NAME).unlink()
    os.link(precious, out / LOCK_NAME)
    run_experiment("demo", "smoke", out=out, quiet=True, progress="none", echo=None)
    assert precious.read_text() == "precious\n" and not (out / LOCK_NAME).exists()


def test_the_lock_is_made_without_following_links_and_never_truncated(tmp_path, monkeypatch):
    from dropkit_lab.experiments import runner

    opened = []
    real_open = os.open

    def spy(path, flags, *args, **kwargs):
        if LOCK_NAME in str(path):
            opened.append((str(path), flags))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(runner.os, "open", spy)
    monkeypatch.setattr(runner.os, "ftruncate", None)  # any truncation would fail
    out = tmp_path / "out"
    out.mkdir()
    with runner.OutputLock(out):
        assert "pid" in (out / LOCK_NAME).read_text()
    assert opened and all(flags & os.O_NOFOLLOW for _, flags in opened)
    assert all(flags & os.O_EXCL for path, flags in opened if flags & os.O_CREAT)
    assert not list(out.iterdir())


def test_a_run_that_fails_early_leaves_no_folder_behind(tmp_path):
    out = tmp_path / "new" / "out"
    code = (
        "import sys, dropkit_lab.data.mnist as m\n"
        "m.MNIST = m.IdxDatasetSpec(**{**m.MNIST.__dict__, 'mirrors': ('http://127.0.0.1:9/',)})\n"
        "m.IDX_DATASETS['mnist'] = m.MNIST\n"
        "from dropkit_lab.cli import main\n"
        "sys.exit(main(sys.argv[1:]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "run", "hinton2012-mnist", "--profile", "smoke",
         "--data-dir", str(tmp_path / "nodata"), "--out", str(out), "--quiet"],
        capture_output=True, text=True, timeout=300, env=_env(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "not found and could not be downloaded" in proc.stderr
    assert not (tmp_path / "new").exists(), list((tmp_path / "new").rglob("*"))


def test_how_a_worker_died_is_said():
    from dropkit_lab.experiments.runner import _how_it_died

    assert _how_it_died(-9) == "killed by SIGKILL, as the out-of-memory killer does"
    assert _how_it_died(-15) == "killed by SIGTERM"
    assert _how_it_died(3) == "exited with status 3"


def _dropkit(tmp_path, *args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "dropkit_lab", *args],
        capture_output=True, text=True, timeout=300, env=_env(tmp_path), cwd=cwd,
    )  # fmt: skip


def test_an_empty_out_is_refused_and_nothing_is_written(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = _dropkit(tmp_path, "run", "demo", "--profile", "smoke", "--out", "", cwd=cwd)
    assert proc.returncode == 2
    assert "--out is empty: name a folder for the results" in proc.stderr
    assert list(cwd.iterdir()) == []


def test_a_run_file_without_checksum_is_named_by_report_and_retrained_never_resigned(tmp_path):
    import json

    out = tmp_path / "out"
    assert (
        _dropkit(tmp_path, "run", "demo", "--profile", "smoke", "--out", str(out)).returncode == 0
    )
    run = sorted((out / "demo" / "smoke" / "runs").glob("*.json"))[0]
    record = json.loads(run.read_text())
    del record["sha256"]
    record["test_error"] = 0.0
    run.write_text(json.dumps(record))
    report = _dropkit(tmp_path, "report", str(out))
    assert report.returncode == 0, report.stderr
    assert f"unverified run file {run} (no checksum)" in report.stderr
    assert "**Not verified**" in (out / "report.md").read_text()
    again = _dropkit(tmp_path, "run", "demo", "--profile", "smoke", "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert f"{run} has no checksum, so it cannot be verified" in again.stderr
    assert json.loads((out / "demo" / "smoke" / "unverified" / f"{run.stem}.1.json").read_text())
    read_record(run)  # retrained: a new, verified result
    report = _dropkit(tmp_path, "report", str(out))
    assert (
        "unverified" not in report.stderr and "Not verified" not in (out / "report.md").read_text()
    )
