import pytest
import torch

from dropkit_lab.data import load_digits
from dropkit_lab.engine.jsonio import read_json
from dropkit_lab.engine.trainer import train
from dropkit_lab.experiments import PROFILES, get_experiment, list_experiments, run_experiment

NAMES = [
    "demo",
    "hinton2012-mnist",
    "mc-vs-scaling",
    "p-sweep",
    "dropconnect",
    "bn-variance-shift",
    "srivastava2014-table2",
    "features",
]


def test_registry_lists_every_experiment_in_order():
    assert [e.name for e in list_experiments()] == NAMES
    with pytest.raises(KeyError, match="unknown experiment 'nope'"):
        get_experiment("nope")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("profile", PROFILES)
def test_run_specs_are_unique_and_valid(name, profile):
    experiment = get_experiment(name)
    specs = experiment.runs(profile, 2)
    ids = [s.run_id for s in specs]
    assert specs and len(ids) == len(set(ids))
    assert all(s.run_id.replace("-", "").replace("_", "").isalnum() for s in specs)
    assert {s.seed for s in specs} == {0, 1}
    assert all(s.dataset == experiment.dataset for s in specs)


def test_demo_smoke_writes_runs_and_summary_and_skips_finished(tmp_path, capsys):
    summary = run_experiment("demo", "smoke", out=tmp_path, quiet=True, progress="none")
    root = tmp_path / "demo" / "smoke"
    runs = sorted((root / "runs").glob("*.json"))
    assert len(runs) == summary["runs"] >= 2
    assert read_json(root / "summary.json")["tables"][0]["rows"]
    record = read_json(runs[0])
    assert record["spec"]["run_id"] == runs[0].stem
    assert len(record["history"]) == 3 and 0 <= record["test_error"] <= 1
    assert not list((root / "checkpoints").glob("*"))
    out = capsys.readouterr().out
    assert "fraction kept" in out and "bytes saved for backward" in out  # the preamble
    mtimes = [p.stat().st_mtime_ns for p in runs]
    run_experiment("demo", "smoke", out=tmp_path, quiet=True, progress="none", echo=None)
    assert [p.stat().st_mtime_ns for p in runs] == mtimes  # finished runs were skipped


def test_result_of_another_configuration_is_moved_aside_and_rerun(tmp_path, monkeypatch):
    from dropkit_lab.experiments import demo

    run_experiment("demo", "smoke", out=tmp_path, quiet=True, progress="none", echo=None)
    root = tmp_path / "demo" / "smoke"
    old = {p.name: read_json(p) for p in (root / "runs").glob("*.json")}
    monkeypatch.setitem(demo.PROFILES, "smoke", {**demo.PROFILES["smoke"], "epochs": 2})
    run_experiment("demo", "smoke", out=tmp_path, quiet=True, progress="none", echo=None)
    for name, record in old.items():
        new = read_json(root / "runs" / name)
        assert len(new["history"]) == 2 and len(record["history"]) == 3
        assert read_json(root / "superseded" / name.replace(".json", ".1.json")) == record


def _run(tmp_path, name, **kwargs):
    return run_experiment(
        "demo", "smoke", out=tmp_path / name, quiet=True, progress="none", echo=None, **kwargs
    )


def _record(tmp_path, name, run_id):
    return read_json(tmp_path / name / "demo" / "smoke" / "runs" / f"{run_id}.json")


def test_killed_run_resumes_from_its_checkpoint(tmp_path):
    """Both sides pinned to one thread: the verdict depends neither on the load nor the cores."""
    experiment = get_experiment("demo")
    spec = experiment.runs("smoke", 1)[1]
    data = load_digits().subset(spec.train_size, spec.test_size)
    clean = _run(tmp_path, "clean", threads=1)
    assert clean["runs"] >= 2
    # A run "killed" after one epoch leaves its checkpoint; the runner picks it up.
    ckpt = tmp_path / "killed" / "demo" / "smoke" / "checkpoints" / f"{spec.run_id}.pt"
    torch.set_num_threads(1)
    train(spec.model, spec.train, data, checkpoint=ckpt, progress="none", stop_after=1)
    _run(tmp_path, "killed", threads=1)
    a = _record(tmp_path, "clean", spec.run_id)
    b = _record(tmp_path, "killed", spec.run_id)
    assert b["resumed_from_epoch"] == 1 and a["resumed_from_epoch"] == 0
    assert a["environment"]["threads"] == b["environment"]["threads"] == 1
    assert a["weights_sha256"] == b["weights_sha256"]


def test_a_resumed_run_keeps_the_thread_count_of_its_checkpoint(tmp_path):
    """The runner would pick 1 thread (or whatever the load allows); the checkpoint says 2, and
    the resumed run ends bit for bit where an uninterrupted 2-thread run ends."""
    experiment = get_experiment("demo")
    spec = experiment.runs("smoke", 1)[1]
    data = load_digits().subset(spec.train_size, spec.test_size)
    torch.set_num_threads(2)
    whole = train(spec.model, spec.train, data, progress="none")
    assert whole.threads == 2
    ckpt = tmp_path / "killed" / "demo" / "smoke" / "checkpoints" / f"{spec.run_id}.pt"
    train(spec.model, spec.train, data, checkpoint=ckpt, progress="none", stop_after=1)
    assert torch.load(ckpt, weights_only=True)["threads"] == 2
    torch.set_num_threads(3)
    _run(tmp_path, "killed", threads=1)
    assert torch.get_num_threads() == 3  # the caller's count is restored
    resumed = _record(tmp_path, "killed", spec.run_id)
    assert resumed["resumed_from_epoch"] == 1 and resumed["environment"]["threads"] == 2
    from dropkit_lab.engine.specs import weights_digest

    assert resumed["weights_sha256"] == weights_digest(whole.model)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="profile"):
        run_experiment("demo", "huge", out=tmp_path)
    with pytest.raises(ValueError, match="workers"):
        run_experiment("demo", "smoke", out=tmp_path, workers=0)
    with pytest.raises(ValueError, match="seeds"):
        run_experiment("demo", "smoke", out=tmp_path, seeds=0)


@pytest.mark.slow
def test_parallel_workers_give_the_same_runs(tmp_path):
    # Threads pinned on both sides: the same runs bit for bit, whatever the load or the cores.
    serial = run_experiment(
        "demo", "smoke", seeds=2, out=tmp_path / "a", quiet=True, echo=None, threads=1
    )
    parallel = run_experiment(
        "demo", "smoke", seeds=2, out=tmp_path / "b", workers=2, quiet=True, echo=None, threads=1
    )
    assert parallel["runs"] == serial["runs"]
    names_a = sorted(p.name for p in (tmp_path / "a" / "demo" / "smoke" / "runs").iterdir())
    names_b = sorted(p.name for p in (tmp_path / "b" / "demo" / "smoke" / "runs").iterdir())
    assert names_a == names_b
    for name in names_a:
        a = read_json(tmp_path / "a" / "demo" / "smoke" / "runs" / name)
        b = read_json(tmp_path / "b" / "demo" / "smoke" / "runs" / name)
        assert a["environment"]["threads"] == b["environment"]["threads"] == 1
        assert a["weights_sha256"] == b["weights_sha256"] and a["test_error"] == b["test_error"]


@pytest.mark.parametrize("name", NAMES[1:])
def test_mnist_smoke_profiles(name, tmp_path, mnist_dir):
    summary = run_experiment(
        name, "smoke", data_dir=mnist_dir, out=tmp_path, quiet=True, progress="none", echo=None
    )
    assert summary["runs"] >= 1 and summary["tables"] and summary["pipeline_check"] is True
    curves = summary["plots"][0]
    assert curves["name"] == "test-error-vs-epoch" and curves["xlabel"] == "epoch"
    groups = {s["label"] for s in curves["series"] if s.get("kind") != "hline"}
    paper = get_experiment(name).paper_errors()
    lines = {s["label"] for s in curves["series"] if s.get("kind") == "hline"}
    assert lines == {f"paper: {g}" for g in groups if g in paper}
    assert name not in ("hinton2012-mnist", "dropconnect", "srivastava2014-table2") or lines
    for table in summary["tables"]:
        assert all(len(row) == len(table["columns"]) for row in table["rows"])
    for c in summary.get("checks", []):
        assert c["holds"] in (True, False, None) and c["claim"]


def test_results_without_checksum_are_named_unverified_and_retrained(tmp_path, capsys):
    import json

    from dropkit_lab.engine.jsonio import read_record
    from dropkit_lab.report import write_report

    run_experiment("demo", "smoke", out=tmp_path, quiet=True, progress="none", echo=None)
    root = tmp_path / "demo" / "smoke"
    runs = sorted((root / "runs").glob("*.json"))
    edited = read_json(runs[0])
    del edited["sha256"]
    edited["test_error"] = 0.0  # an edit whose checksum was removed with it
    runs[0].write_text(json.dumps(edited))
    capsys.readouterr()
    report = write_report(tmp_path).read_text()
    assert "**Not verified**" in report and f"{runs[0]} (no checksum)" in report
    assert f"unverified run file {runs[0]} (no checksum)" in capsys.readouterr().err
    run_experiment("demo", "smoke", out=tmp_path, quiet=True, progress="none", echo=None)
    err = capsys.readouterr().err
    assert f"{runs[0]} has no checksum, so it cannot be verified" in err
    assert "moved to" in err and "1 to go" in err
    assert read_json(root / "unverified" / f"{runs[0].stem}.1.json") == edited  # kept aside
    assert read_record(runs[0])["sha256"]  # retrained, signed anew
    report = write_report(tmp_path).read_text()
    assert "Not verified" not in report


def test_report_names_a_summary_without_checksum_and_runs_it_was_not_made_from(tmp_path):
    import json

    from dropkit_lab.engine.jsonio import write_record
    from dropkit_lab.report import write_report

    run_experiment("demo", "smoke", out=tmp_path, quiet=True, progress="none", echo=None)
    root = tmp_path / "demo" / "smoke"
    run = sorted((root / "runs").glob("*.json"))[0]
    record = read_json(run)
    record["test_error"] = 0.5
    write_record(run, record)  # a valid checksum, but not the run the summary was made from
    report = write_report(tmp_path).read_text()
    assert f"{run} (not the file the summary was computed from)" in report
    summary = read_json(root / "summary.json")
    del summary["sha256"]
    (root / "summary.json").write_text(json.dumps(summary))
    report = write_report(tmp_path).read_text()
    assert "summary.json has no checksum" in report and "## demo (smoke profile)" in report


def _same_records(tmp_path, a_name, b_name):
    """The runs of two output folders: identical records, timings and how-trained aside."""
    runs = tmp_path / a_name / "demo" / "smoke" / "runs"
    names = sorted(p.name for p in runs.iterdir())
    assert names == sorted(
        p.name for p in (tmp_path / b_name / "demo" / "smoke" / "runs").iterdir()
    )
    timing = {"train_seconds", "measure_seconds", "sha256", "resumed_from_epoch"}
    for name in names:
        a = read_json(runs / name)
        b = read_json(tmp_path / b_name / "demo" / "smoke" / "runs" / name)
        for r in (a, b):
            for h in r["history"]:
                h.pop("seconds")
        assert {k: v for k, v in a.items() if k not in timing} == {
            k: v for k, v in b.items() if k not in timing
        }, name
    return names


def test_ensemble_gives_the_records_of_training_alone_and_resumes(tmp_path):
    from dropkit_lab.experiments.runner import ensemble_groups

    specs = get_experiment("demo").runs("smoke", 2)
    groups = ensemble_groups(specs)
    assert [[s.run_id for s in g] for g in groups] == [
        ["none-s0", "none-s1", "dropout-s0", "dropout-s1"]
    ]
    alone = _run(tmp_path, "alone", seeds=2, threads=1)
    stacked = _run(tmp_path, "stacked", seeds=2, threads=1, ensemble=True)
    assert stacked["ensemble"] and not alone["ensemble"]
    names = _same_records(tmp_path, "alone", "stacked")
    assert len(names) == len(specs)
    # one run stopped after an epoch (alone), one after two (by an ensemble): both resume
    data = load_digits().subset(specs[0].train_size, specs[0].test_size)
    root = tmp_path / "killed" / "demo" / "smoke"
    torch.set_num_threads(1)
    train(specs[3].model, specs[3].train, data, checkpoint=root / "checkpoints" /
          "dropout-s1.pt", progress="none", stop_after=1)  # fmt: skip
    from dropkit_lab.engine.ensemble import Member, train_ensemble

    train_ensemble([Member(specs[0].model, specs[0].train, root / "checkpoints" / "none-s0.pt"),
                    Member(specs[1].model, specs[1].train)], data, progress="none",
                   stop_after=2)  # fmt: skip
    _run(tmp_path, "killed", seeds=2, threads=1, ensemble=True)
    assert _record(tmp_path, "killed", "dropout-s1")["resumed_from_epoch"] == 1
    assert _record(tmp_path, "killed", "none-s0")["resumed_from_epoch"] == 2
    _same_records(tmp_path, "alone", "killed")
    assert not list((root / "checkpoints").glob("*"))
    # finished runs are skipped
    again = _run(tmp_path, "stacked", seeds=2, threads=1, ensemble=True)
    assert again["wall_seconds_this_invocation"] < stacked["wall_seconds_this_invocation"]
