"""The headline figures live in one file, docs/headline-figures.md: the home page includes it, the
README links to it, neither repeats a figure, and its dropout figures are the benchmarks table's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SOURCE = DOCS / "headline-figures.md"
INCLUDE = '--8<-- "headline-figures.md:figures"'
RATIO = re.compile(r"\b\d+(?:\.\d+)?x\b")  # "15.2x", "16x" (not "8x8" or "0x9E37")


def figures() -> str:
    text = SOURCE.read_text()
    start = text.index("<!-- --8<-- [start:figures] -->")
    end = text.index("<!-- --8<-- [end:figures] -->")
    return text[start:end]


def test_the_home_page_includes_the_figures_and_the_readme_links_to_them():
    assert INCLUDE in (DOCS / "index.md").read_text()
    assert "(docs/headline-figures.md)" in (ROOT / "README.md").read_text()
    assert RATIO.search(figures())


@pytest.mark.parametrize("path", ["README.md", "docs/index.md"])
def test_no_other_page_states_a_speed_figure_of_its_own(path: str):
    text = (ROOT / path).read_text().replace(INCLUDE, "")
    assert not RATIO.findall(text), f"{path} repeats figures: keep them in {SOURCE.name}"


def test_the_home_page_shows_the_figures_once_built():
    markdown = pytest.importorskip("markdown", reason="the docs extra is not installed")
    html = markdown.markdown(
        (DOCS / "index.md").read_text(),
        extensions=["pymdownx.snippets"],
        extension_configs={"pymdownx.snippets": {"base_path": [str(DOCS)], "check_paths": True}},
    )
    for ratio in RATIO.findall(figures()):
        assert ratio in html


def benchmarks_row(size: str, dtype: str) -> dict[str, str]:
    """The row of the benchmarks page's dropout table for one size and dtype, by column name."""
    lines = (DOCS / "benchmarks.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| size | dtype |"))
    names = [c.strip() for c in header.strip("|").split("|")]
    for line in lines:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[:2] == [size, dtype]:
            return dict(zip(names, cells))
    raise AssertionError(f"no {size} {dtype} row in the benchmarks table")


def test_the_dropout_figures_are_the_benchmarks_tables():
    row = benchmarks_row("2^24", "float32")
    text = " ".join(figures().split())
    expected = [
        f"forward {round(float(row['torch fwd']))} ms",
        f"forward+backward {round(float(row['torch f+b']))} ms",
        f"dropkit forward {row['dropkit fwd']} ms (**{row['torch/dk fwd']}** faster)",
        f"forward+backward {row['dropkit f+b']} ms (**{row['torch/dk f+b']}**",
        f"{row['compile/dk f+b']} faster than `torch.compile`",
        f"in place {row['dk in place/copy_']} a `copy_`",
    ]
    for phrase in expected:
        assert phrase in text, f"{SOURCE.name} disagrees with benchmarks.md's table: {phrase!r}"
