import os
import subprocess
import sys
from pathlib import Path

import pytest

from dropkit_lab.catalogue import EXPERIMENTS
from dropkit_lab.cli import main

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _cli(*args, env=None, **kwargs):
    env = {**os.environ, "PYTHONPATH": SRC, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "dropkit_lab", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        **kwargs,
    )


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


def test_catalogue_is_generated_from_the_experiments():
    """catalogue.json is what the experiments define (no number in it typed by hand)."""
    from dropkit_lab import catalogue

    fresh = catalogue.build()
    assert catalogue.render(fresh) == catalogue.CATALOGUE.read_text(), (
        "src/dropkit_lab/catalogue.json is stale: run python -m dropkit_lab.catalogue"
    )
    assert list(EXPERIMENTS) == list(fresh)


def test_one_experiment_registry():
    """The CLI reads the catalogue, the runner the experiments: no second hand-kept table."""
    from dropkit_lab.experiments import list_experiments

    assert [e.name for e in list_experiments()] == list(EXPERIMENTS)
    for e in list_experiments():
        assert EXPERIMENTS[e.name].title == e.title
        assert tuple(EXPERIMENTS[e.name].profiles) == e.profiles


@pytest.mark.parametrize(
    "args",
    [["--help"], ["list"], ["run", "--help"], ["--version"], ["run", "demo", "--device", "tpu"]],
)
def test_help_list_and_argument_checks_do_not_import_torch(args):
    code = (
        "import sys; from dropkit_lab.cli import main\n"
        f"try: main({args!r})\n"
        "except SystemExit: pass\n"
        "print('torch imported' if 'torch' in sys.modules else 'no torch')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    assert proc.stdout.strip().endswith("no torch"), proc.stdout + proc.stderr


def test_run_help_lists_experiments_profiles_and_costs(tmp_path):
    proc = _cli("run", "--help", env={"DROPKIT_CACHE_DIR": str(tmp_path)})
    assert proc.returncode == 0
    for name in EXPERIMENTS:
        assert f"  {name}: " in proc.stdout
    assert "smoke ~" in proc.stdout and "quick ~" in proc.stdout and "paper ~" in proc.stdout
    assert "full ~" in proc.stdout and "default: quick" in proc.stdout
    assert "reference 2-core machine" in proc.stdout
    assert "(1 run)" in proc.stdout and "(1 runs)" not in proc.stdout  # mc-vs-scaling smoke
    # demo quick: 4.46e11 multiply-adds at the reference 2.5e9/s, ± half: ~3 min ± 1
    assert "quick ~3 min ± 1 (12 runs)" in proc.stdout
    # Measured speeds (median 1e9, spread 10%): 4.46e11 / 1e9 = 446 s = ~7 min ± <1.
    samples = [0.9e9, 1.0e9, 1.1e9]
    (tmp_path / "speed.json").write_text(f'{{"small": {{"samples": {samples}}}}}')
    again = _cli("run", "--help", env={"DROPKIT_CACHE_DIR": str(tmp_path)})
    assert "small nets: the speed earlier runs measured here" in again.stdout
    assert "quick ~7 min ± 1 (12 runs)" in again.stdout, again.stdout


def test_old_cache_variable_is_read_with_a_deprecation_warning(tmp_path, monkeypatch):
    from dropkit_lab.environment import cache_dir, speed_file

    monkeypatch.delenv("DROPKIT_CACHE_DIR", raising=False)
    monkeypatch.setenv("DROPKIT_CACHE", str(tmp_path / "old"))
    with pytest.warns(DeprecationWarning, match="DROPKIT_CACHE is deprecated.*DROPKIT_CACHE_DIR"):
        assert speed_file() == tmp_path / "old" / "speed.json"
    monkeypatch.setenv("DROPKIT_CACHE_DIR", str(tmp_path / "new"))
    assert cache_dir() == tmp_path / "new"  # the new name wins, silently
    env = {"DROPKIT_CACHE": str(tmp_path / "old"), "DROPKIT_CACHE_DIR": ""}
    proc = _cli("run", "--help", env=env)
    assert proc.returncode == 0 and "DROPKIT_CACHE is deprecated" in proc.stderr


def test_version():
    import dropkit

    proc = _cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"dropkit {dropkit.__version__}"


@pytest.mark.parametrize("device", ["cudaa", "tpu", "mps", "cuda:x"])
def test_bad_device_refused_before_anything_runs(device, tmp_path):
    proc = _cli("run", "demo", "--device", device, "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert f"invalid device '{device}'; allowed: cpu, cuda or cuda:N" in proc.stderr
    assert not (tmp_path / "o").exists() and "fraction kept" not in proc.stdout


def test_run_then_report(tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["run", "demo", "--profile", "smoke", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "Test error on the 8x8 digits" in text and "dropkit report" in text
    assert "SMOKE PROFILE: a pipeline check" in text
    assert (out / "demo" / "smoke" / "summary.json").exists()
    assert main(["report", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "## demo (smoke profile)" in report
    assert "| configuration | measured test error (%) | seeds |" in report
    assert "| dropkit.nn.Dropout |" in report
    assert "![Test error against epochs (demo, smoke profile)]" in report
    assert (out / "plots" / "demo-smoke-test-error-vs-epoch.png").is_file()


def test_errors_exit_2_with_message(tmp_path, capsys):
    for argv in (
        ["run", "nope", "--out", str(tmp_path)],
        ["run", "demo", "--seeds", "0"],
        ["run", "demo", "--workers", "-1"],
        ["run", "demo", "--profile", "huge"],
        ["run", "demo", "--profile", "full"],
    ):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown experiment 'nope'" in err and "--seeds must be an integer >= 1, got '0'" in err
    assert "--workers must be an integer >= 1" in err
    assert "--profile 'full' is not one of demo's: smoke, quick, paper" in err
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no summary.json" in capsys.readouterr().err
    file = tmp_path / "file"
    file.write_text("")
    assert main(["run", "demo", "--profile", "smoke", "--out", str(file)]) == 2
    assert f"--out {file} is a file, not a folder" in capsys.readouterr().err


def test_mistyped_names_get_a_suggestion(capsys):
    for argv, text in (
        (
            ["run", "hinton-mnist"],
            "unknown experiment 'hinton-mnist'; did you mean 'hinton2012-mnist'?",
        ),
        (["run", "dmeo"], "did you mean 'demo'?"),
        (["run", "demo", "--profile", "quik"], "did you mean 'quick'?"),
        (["run", "hinton2012-mnist", "--profile", "ful"], "did you mean 'full'?"),
    ):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        assert text in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "zzzzzz"])
    err = capsys.readouterr().err
    assert "did you mean" not in err and "choose from demo, hinton2012-mnist" in err


def test_empty_out_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "demo", "--profile", "smoke", "--out", ""])
    assert info.value.code == 2
    assert "--out is empty: name a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "demo", "--out", "  "])


def test_unexpected_error_is_called_a_bug_and_debug_shows_the_traceback(
    tmp_path, capsys, monkeypatch
):
    import dropkit_lab.experiments

    def broken(*args, **kwargs):
        return {}["test_error"]  # a bug in experiment code

    monkeypatch.setattr(dropkit_lab.experiments, "run_experiment", broken)
    assert main(["run", "demo", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "unexpected KeyError: 'test_error'" in err
    assert "this is a bug in dropkit" in err and "--debug" in err
    with pytest.raises(KeyError, match="test_error"):
        main(["--debug", "run", "demo", "--out", str(tmp_path)])


def test_missing_experiments_extra_names_the_install_command(tmp_path):
    blocked = tmp_path / "blocked" / "tqdm"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('tqdm is not installed')\n")
    env = {"PYTHONPATH": f"{tmp_path / 'blocked'}{os.pathsep}{SRC}"}
    proc = _cli("run", "demo", "--out", str(tmp_path / "o"), env=env)
    assert proc.returncode == 2
    assert "needs the experiments extra (missing: tqdm)" in proc.stderr
    assert "pip install 'dropkit[experiments]'" in proc.stderr


def test_missing_mnist_offline_message(tmp_path, capsys, monkeypatch):
    import dropkit_lab.data.mnist as mnist

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
    assert not (tmp_path / "nodata").exists()  # no empty folder left behind
    assert not (tmp_path / "o").exists()  # nor an output folder holding only the lock


def test_console_module_entry_points():
    for module in ("dropkit_lab", "dropkit_lab.cli"):
        proc = subprocess.run(
            [sys.executable, "-m", module, "list"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
            env={**os.environ, "PYTHONPATH": SRC},
        )
        assert proc.stdout.startswith("demo")


def test_tests_find_mnist_through_dropkit_data(tmp_path):
    """The MNIST tests look in $DROPKIT_DATA before ../shared/datasets (tests/conftest.py)."""
    conftest = str(Path(__file__).parents[1] / "conftest.py")
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('c', {conftest!r})\n"
        "c = importlib.util.module_from_spec(spec); spec.loader.exec_module(c)\n"
        "print(c.mnist_data_dir())"
    )
    env = {**os.environ, "PYTHONPATH": SRC, "DROPKIT_DATA": str(tmp_path)}
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):  # fmt: skip
        (mnist / name).write_bytes(b"")
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.stdout.strip() == str(tmp_path), proc.stderr
