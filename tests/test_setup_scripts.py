"""The two set-up commands (demo.sh, test.sh) and their shared tools/bootstrap.sh."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ["demo.sh", "test.sh", "tools/bootstrap.sh", ".ci/run"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_parse(script):
    subprocess.run(["bash", "-n", str(REPO / script)], check=True)


def _bootstrap(env, extras="experiments"):
    return subprocess.run(
        ["bash", "-c", f"source tools/bootstrap.sh && dropkit_bootstrap {extras}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )


def _fake_venv(tmp_path):
    """A venv whose python is this one, except that ``-m pip`` only logs its arguments."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    log = tmp_path / "pip.log"
    python = venv / "bin" / "python"
    python.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = -m ] && [ "$2" = pip ]; then echo "$@" >> {log}; exit 0; fi\n'
        f'exec {sys.executable} "$@"\n'
    )
    python.chmod(0o755)
    return venv, log


def test_rerun_with_nothing_changed_skips_pip(tmp_path):
    venv, log = _fake_venv(tmp_path)
    first = _bootstrap({"DROPKIT_VENV": str(venv)})
    assert first.returncode == 0, first.stderr
    assert f"-e {REPO}[experiments]" in log.read_text()
    log.unlink()
    second = _bootstrap({"DROPKIT_VENV": str(venv)})
    assert second.returncode == 0 and not log.exists(), second.stderr
    third = _bootstrap({"DROPKIT_VENV": str(venv)}, extras="experiments,dev")
    assert third.returncode == 0 and "[experiments,dev]" in log.read_text()


def test_python_without_ensurepip_gets_a_clear_message_when_pip_cannot_be_fetched(tmp_path):
    # Debian's python3 without python3-venv: `import ensurepip` fails.
    shadow = tmp_path / "shadow" / "ensurepip"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('ensurepip is not available')\n")
    python = tmp_path / "python3"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={shadow.parent} exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    venv = tmp_path / "venv"
    proc = _bootstrap(
        {
            "PYTHON": str(python),
            "DROPKIT_VENV": str(venv),
            "DROPKIT_PIP_INDEX": "http://127.0.0.1:9/simple",  # nothing listens there
        }
    )
    assert proc.returncode != 0
    assert "has no ensurepip" in proc.stderr
    assert "sudo apt install python3-venv" in proc.stderr
    assert not venv.exists()  # no half-made venv left for the next attempt


def test_old_python_is_refused_by_name(tmp_path):
    python = tmp_path / "python3"
    python.write_text("#!/bin/sh\nexit 1\n")
    python.chmod(0o755)
    proc = _bootstrap({"PYTHON": str(python), "DROPKIT_VENV": str(tmp_path / "venv")})
    assert proc.returncode != 0 and "missing or older than 3.10" in proc.stderr
