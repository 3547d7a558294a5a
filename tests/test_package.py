"""Package-level promises: version, public names, and the kernels chosen once at import."""

import os
import subprocess
import sys

import dropkit


def test_version():
    assert dropkit.__version__ == "0.1.0"


def test_backend_is_chosen_once_at_import():
    assert dropkit.backend() in ("cpu", "reference")
    assert not hasattr(dropkit, "set_backend")  # no second route to switch to per call


def test_reference_backend_builds_nothing(tmp_path):
    cache = tmp_path / "cache"
    code = (
        "import dropkit, torch; "
        "assert dropkit.backend() == 'reference', dropkit.backend(); "
        "x = torch.ones(4, 5); "
        "assert torch.equal(dropkit.functional.dropout(x, 0.5, seed=1) == 0, "
        "dropkit.functional.dropout(2 * x, 0.5, seed=1) == 0)"
    )
    env = {**os.environ, "DROPKIT_CACHE_DIR": str(cache), "DROPKIT_BACKEND": "reference"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    assert not cache.exists()  # nothing built, nothing written


def test_a_bad_backend_variable_names_itself():
    env = {**os.environ, "DROPKIT_BACKEND": "gpu"}
    run = subprocess.run([sys.executable, "-c", "import dropkit"], env=env, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert run.returncode != 0
    assert "DROPKIT_BACKEND must be 'auto' or 'reference', got 'gpu'" in run.stderr


def test_the_library_imports_nothing_of_the_lab():
    code = (
        "import sys, dropkit, dropkit.mc, dropkit.nn, dropkit.functional; "
        "print(sorted(m for m in sys.modules if m.startswith('dropkit')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert "dropkit_lab" not in out and "dropkit_cli" not in out
    for name in ("engine", "data", "experiments", "report", "cli"):
        assert f"'dropkit.{name}" not in out, out
