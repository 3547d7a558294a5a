"""The documentation builds with warnings as errors, and a failing example fails the build."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")
pytest.importorskip("markdown_exec", reason="the docs extra is not installed")


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


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


def test_a_passing_example_builds_and_shows_its_output(tmp_path: Path):
    result = mkdocs_build(tiny_site(tmp_path, "print(6 * 7)"), tmp_path / "site")
    assert result.returncode == 0, result.stderr
    assert "42" in (tmp_path / "site" / "index.html").read_text()


def test_a_failing_example_fails_the_strict_build(tmp_path: Path):
    code = "import dropkit\ndropkit.functional.dropout(__import__('torch').ones(3), p=1.5)"
    result = mkdocs_build(tiny_site(tmp_path, code), tmp_path / "site")
    assert result.returncode != 0
    assert "ValueError" in result.stdout + result.stderr


@pytest.mark.slow
def test_the_site_builds_strict_with_every_example_and_figure(tmp_path: Path):
    site = tmp_path / "site"
    result = mkdocs_build(ROOT / "mkdocs.yml", site)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    import make_figures

    for name in make_figures.FIGURES:
        assert (site / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((ROOT / "docs").rglob("*.png")), "generated figures must not land in docs/"
