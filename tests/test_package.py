"""Package-level promises: version, public names, and an import that compiles nothing."""

import os
import subprocess
import sys

import dropkit


def test_version():
    assert dropkit.__version__ == "0.1.0"


def test_import_compiles_nothing(tmp_path):
    cache = tmp_path / "cache"
    code = (
        "import sys, dropkit, torch; "
        "assert 'dropkit.kernels.cpu' not in sys.modules; "
        "assert hasattr(torch.ops.dropkit, 'keep')"
    )
    env = {**os.environ, "DROPKIT_CACHE_DIR": str(cache)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    assert not cache.exists()  # nothing built, nothing written


def test_backend_selection_errors():
    import pytest

    with pytest.raises(ValueError, match="backend must be one of"):
        dropkit.set_backend("cuda")
    assert dropkit.get_backend() == "auto"


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
