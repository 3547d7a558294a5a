import json
import os
import stat

from dropkit_lab.engine.jsonio import read_json, read_record, write_json_atomic, write_record
from dropkit_lab.report import render_markdown, render_summary_text, render_table_text, write_report

SUMMARY = {
    "experiment": "toy",
    "title": "Toy",
    "paper": "Nobody 2024",
    "profile": "quick",
    "seeds": 2,
    "runs": 4,
    "train_seconds_total": 12.0,
    "comparable": False,
    "tables": [
        {"title": "T", "columns": ["a", "b|c"], "rows": [["x", 1.5], ["yy", None]], "note": "n"}
    ],
    "plots": [
        {
            "name": "p",
            "title": "P",
            "xlabel": "k",
            "ylabel": "err",
            "xscale": "log",
            "series": [
                {"label": "mc", "x": [1, 10], "y": [2.0, 1.0], "yerr": [0.1, 0.1]},
                {"label": "ws", "x": [1, 10], "y": [1.1], "kind": "hline"},
            ],
        }
    ],
    "images": [
        {"name": "f", "title": "F", "tiles": [[0.0, 1.0, 0.5, 0.2]] * 3, "tile_shape": [2, 2]}
    ],
    "checks": [{"claim": "c", "holds": True, "detail": "d"}],
    "notes": ["hello"],
}


def test_text_table_aligned():
    text = render_table_text(SUMMARY["tables"][0])
    lines = text.splitlines()
    assert lines[0] == "T" and lines[-1] == "n"
    assert len({len(line.rstrip()) for line in lines[1:4:2]}) == 1
    assert "yy" in text and "1.5" in text


def test_markdown_tables_checks_notes(tmp_path):
    md = render_markdown(SUMMARY, tmp_path, tmp_path)
    assert "| a | b\\|c |" in md and "| x | 1.5 |" in md
    assert "**Not comparable with the paper's numbers**" in md
    assert "| c | yes | d |" in md and "- hello" in md
    assert "SMOKE PROFILE" not in md


def test_smoke_summary_is_stamped_as_a_pipeline_check(tmp_path):
    smoke = {**SUMMARY, "profile": "smoke", "pipeline_check": True}
    for text in (render_summary_text(smoke), render_markdown(smoke, tmp_path, tmp_path)):
        assert "SMOKE PROFILE: a pipeline check" in text and "numbers mean nothing" in text
        assert "[NO]" not in text and "| yes |" not in text
        assert "not judged (smoke)" in text


def test_write_report_with_plots(tmp_path):
    write_record(tmp_path / "toy" / "quick" / "summary.json", SUMMARY)
    path = write_report(tmp_path)
    md = path.read_text()
    assert "![P](plots/toy-quick-p.png)" in md and "![F](plots/toy-quick-f.png)" in md
    for name in ("toy-quick-p.png", "toy-quick-f.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_atomic_roundtrip_and_nonfinite(tmp_path):
    path = write_json_atomic(tmp_path / "a" / "b.json", {"x": float("nan"), "y": [1, 2.5]})
    assert read_json(path) == {"x": None, "y": [1, 2.5]}
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b.json"]


def _summary_file(root, experiment="toy", profile="quick"):
    path = root / experiment / profile / "summary.json"
    write_record(path, {**SUMMARY, "experiment": experiment, "profile": profile})
    return path


def test_bad_summary_is_named_and_the_others_reported(tmp_path, capsys):
    good = _summary_file(tmp_path, "good")
    bad = {name: _summary_file(tmp_path, name) for name in ("a", "b", "c", "d", "e", "f")}
    bad["a"].write_bytes(os.urandom(300))
    bad["b"].write_text("")
    bad["c"].write_text(bad["c"].read_text()[:50])
    bad["d"].write_text("[]")
    record = read_record(bad["e"])
    record["train_seconds_total"] = 1.0  # hand-edited
    bad["e"].write_text(json.dumps(record))
    bad["f"].unlink()
    bad["f"].mkdir()  # a folder where the file was
    (bad["f"] / "x").write_text("")
    report = write_report(tmp_path).read_text()
    err = capsys.readouterr().err
    assert "## good (quick profile)" in report and str(good) not in err
    reasons = {
        "b": "is empty",
        "c": "not valid JSON",
        "d": "holds a JSON list",
        "e": "fails its checksum",
    }
    for name, reason in reasons.items():
        line = next(line for line in err.splitlines() if str(bad[name]) in line)
        assert reason in line, line
        assert f"dropkit run {name} --profile quick --out {tmp_path}` rewrites it" in line
        assert str(bad[name]) in report
    assert str(bad["a"]) in err and "skipped" in err
    # A folder named summary.json is not found by rglob as a file.
    assert str(bad["f"]) in err and "is a folder" in err


def test_report_and_results_have_the_mode_of_normal_files(tmp_path):
    old = os.umask(0o027)
    try:
        path = _summary_file(tmp_path)
        report = write_report(tmp_path)
    finally:
        os.umask(old)
    for p in (path, report, *(tmp_path / "plots").iterdir()):
        assert stat.S_IMODE(p.stat().st_mode) == 0o640, p


def test_every_figure_is_titled_with_labelled_axes(tmp_path, monkeypatch):
    import matplotlib.figure

    seen = []
    original = matplotlib.figure.Figure.savefig

    def spy(fig, *args, **kwargs):
        for ax in fig.axes:
            seen.append((ax.get_title(), ax.get_xlabel(), ax.get_ylabel() or "image"))
        return original(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    write_record(tmp_path / "toy" / "quick" / "summary.json", SUMMARY)
    write_report(tmp_path)
    assert len(seen) == 2 and all(all(parts) for parts in seen), seen


def test_curves_plot_with_integer_epochs_distinct_styles_and_bands():
    import matplotlib.pyplot as plt

    from dropkit_lab.report import _figure

    same = [10.0, 8.0, 7.5]
    plot = {
        "name": "curves",
        "title": "t",
        "xlabel": "epoch",
        "ylabel": "test error (%)",
        "series": [
            {"label": name, "x": [1, 2, 3], "y": same, "yerr": None} for name in ("a", "b", "c")
        ]
        + [{"label": "d", "x": list(range(1, 101)), "y": [5.0] * 100, "yerr": [0.5] * 100}],
    }
    fig = _figure(plot)
    ax = fig.axes[0]
    fig.canvas.draw()
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    lines = ax.get_lines()
    assert (
        len({(line.get_marker(), line.get_linestyle(), line.get_markersize()) for line in lines})
        == 4
    )
    assert not ax.containers  # no error bars
    assert len(ax.collections) == 1  # one band, for the series with a spread
    plt.close(fig)
