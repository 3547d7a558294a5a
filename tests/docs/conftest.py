"""Put ``docs/scripts`` on ``sys.path`` so the tests can import the figure script, and build the
project's site once per test session for the tests that look at it (``site_build``)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "docs" / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    """``mkdocs build --strict`` from the repository root, with this checkout's ``src`` first."""
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )


@pytest.fixture
def build_docs():
    """:func:`mkdocs_build`, for tests that build a site of their own."""
    return mkdocs_build


@dataclass
class SiteBuild:
    site: Path
    result: subprocess.CompletedProcess | None  # None: a site built before ($DROPKIT_DOCS_SITE)

    @property
    def ok(self) -> bool:
        return self.result is None or self.result.returncode == 0

    def log(self) -> str:
        if self.result is None:
            return f"reused {self.site}"
        return self.result.stdout[-4000:] + self.result.stderr[-4000:]


@pytest.fixture(scope="session")
def site_build(tmp_path_factory) -> SiteBuild:
    """The whole site, built once (every example runs). ``DROPKIT_DOCS_SITE=DIR`` reuses a site
    built before with ``mkdocs build -d DIR`` instead (the build test then skips)."""
    pytest.importorskip(
        "mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'"
    )
    reused = os.environ.get("DROPKIT_DOCS_SITE")
    if reused:
        site = Path(reused)
        if not (site / "index.html").is_file():
            pytest.fail(f"DROPKIT_DOCS_SITE={reused} holds no built site")
        return SiteBuild(site, None)
    site = tmp_path_factory.mktemp("docs") / "site"
    return SiteBuild(site, mkdocs_build(ROOT / "mkdocs.yml", site))
