import pytest

from dropkit.engine.jsonio import read_json, write_json_atomic
from dropkit.report import render_markdown, render_table_text, write_report

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


def test_markdown_without_plots(tmp_path):
    md = render_markdown(SUMMARY, None, tmp_path)
    assert "| a | b\\|c |" in md and "| x | 1.5 |" in md
    assert "**Not comparable with the paper's numbers**" in md
    assert "| c | yes | d |" in md and "- hello" in md
    assert "skipped: matplotlib is not installed" in md


def test_write_report_with_plots(tmp_path):
    pytest.importorskip("matplotlib")
    write_json_atomic(tmp_path / "toy" / "quick" / "summary.json", SUMMARY)
    path = write_report(tmp_path)
    md = path.read_text()
    assert "![P](plots/toy-quick-p.png)" in md and "![F](plots/toy-quick-f.png)" in md
    for name in ("toy-quick-p.png", "toy-quick-f.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_atomic_roundtrip_and_nonfinite(tmp_path):
    path = write_json_atomic(tmp_path / "a" / "b.json", {"x": float("nan"), "y": [1, 2.5]})
    assert read_json(path) == {"x": None, "y": [1, 2.5]}
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b.json"]
