"""MkDocs hooks: draw the mask pictures with dropkit during the build (``on_files``), and turn
every formula into MathML (``on_page_content``), so that the site needs no network to show its math.

The PNGs are added to the site as generated files; nothing is written into ``docs/``. Under
``mkdocs serve`` a picture is redrawn only when ``make_figures.py`` or dropkit's sources changed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src" / "dropkit"
sys.path.insert(0, str(HERE))

import make_figures  # noqa: E402
import mathml  # noqa: E402

_cache: dict[str, tuple[float, bytes]] = {}


def _stamp() -> float:
    sources = [HERE / "make_figures.py", *SRC.rglob("*.py")] if SRC.is_dir() else []
    return max((p.stat().st_mtime for p in sources), default=0.0)


def on_files(files: Files, config) -> Files:
    stamp = _stamp()
    for name in make_figures.FIGURES:
        cached = _cache.get(name)
        if cached is None or cached[0] != stamp:
            _cache[name] = (stamp, make_figures.render(name))
        files.append(File.generated(config, f"figures/{name}.png", content=_cache[name][1]))
    return files


def on_page_content(html: str, page, config, files) -> str:
    """Each arithmatex formula as MathML; a formula that cannot be rendered fails the build."""
    try:
        out, _ = mathml.render_page(html, where=page.file.src_uri)
    except mathml.MathError as exc:
        raise PluginError(str(exc)) from exc
    return out
