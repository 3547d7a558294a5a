import subprocess
import sys

import pytest

from dropkit.cli import main


def test_list_prints_every_experiment(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in (
        "demo",
        "hinton2012-mnist",
        "mc-vs-scaling",
        "p-sweep",
        "dropconnect",
        "bn-variance-shift",
        "srivastava2014-table2",
        "features",
    ):
        assert name in out


def test_run_then_report(tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["run", "demo", "--profile", "smoke", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "Test error on the 8x8 digits" in text and "dropkit report" in text
    assert (out / "demo" / "smoke" / "summary.json").exists()
    assert main(["report", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "## demo (smoke profile)" in report
    assert "| configuration | measured test error (%) | seeds |" in report
    assert "| dropkit.nn.Dropout |" in report


def test_errors_exit_2_with_message(tmp_path, capsys):
    assert main(["run", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown experiment 'nope'" in capsys.readouterr().err
    assert main(["run", "demo", "--seeds", "0", "--out", str(tmp_path)]) == 2
    assert "seeds must be >= 1" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no summary.json" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["run", "demo", "--profile", "huge"])
    assert info.value.code == 2


def test_missing_mnist_offline_message(tmp_path, capsys, monkeypatch):
    import dropkit.data.mnist as mnist

    # No network here: make every mirror an unreachable local port.
    monkeypatch.setattr(
        mnist,
        "MNIST",
        mnist.IdxDatasetSpec(**{**mnist.MNIST.__dict__, "mirrors": ("http://127.0.0.1:9/",)}),
    )
    monkeypatch.setitem(mnist.IDX_DATASETS, "mnist", mnist.MNIST)
    code = main(
        [
            "run",
            "hinton2012-mnist",
            "--profile",
            "smoke",
            "--data-dir",
            str(tmp_path / "nodata"),
            "--out",
            str(tmp_path / "o"),
            "--quiet",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte.gz" in err and str(tmp_path / "nodata" / "mnist") in err


def test_console_module_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "dropkit.cli", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert proc.stdout.startswith("demo")
