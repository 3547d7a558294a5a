"""The documentation builds with warnings as errors, and a failing example fails the build."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")
pytest.importorskip("markdown_exec", reason="the docs extra is not installed")


def tiny_site(tmp_path: Path, code: str) -> Path:
    """A one-page site with the project's Markdown extensions and markdown-exec settings."""
    import yaml

    project = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    plugins = [p for p in project["plugins"] if p == "markdown-exec" or "markdown-exec" in p]
    assert plugins, "mkdocs.yml must enable the markdown-exec plugin"
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text(
        f'# Example\n\n```python exec="on" source="above" result="text"\n{code}\n```\n'
    )
    config = tmp_path / "mkdocs.yml"
    site = {
        "site_name": "t",
        "strict": project.get("strict", False),
        "plugins": plugins,
        "markdown_extensions": project["markdown_extensions"],
    }
    config.write_text(yaml.safe_dump(site))
    return config


def test_a_passing_example_builds_and_shows_its_output(tmp_path: Path, build_docs):
    result = build_docs(tiny_site(tmp_path, "print(6 * 7)"), tmp_path / "site")
    assert result.returncode == 0, result.stderr
    assert "42" in (tmp_path / "site" / "index.html").read_text()


def test_a_failing_example_fails_the_strict_build(tmp_path: Path, build_docs):
    code = "import dropkit\ndropkit.functional.dropout(__import__('torch').ones(3), p=1.5)"
    result = build_docs(tiny_site(tmp_path, code), tmp_path / "site")
    assert result.returncode != 0
    assert "ValueError" in result.stdout + result.stderr


@pytest.mark.slow
def test_the_site_builds_strict_with_every_example_and_figure(site_build):
    if site_build.result is None:
        pytest.skip(f"DROPKIT_DOCS_SITE is set: {site_build.log()} instead of building")
    assert site_build.ok, site_build.log()
    site = site_build.site
    import make_figures

    for name in make_figures.FIGURES:
        assert (site / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((ROOT / "docs").rglob("*.png")), "generated figures must not land in docs/"
