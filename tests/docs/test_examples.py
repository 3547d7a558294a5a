"""Every code example in the docs and the README runs.

The docs' Python blocks run during the MkDocs build (markdown-exec, ``exec="on"``), where a block
that raises fails ``mkdocs build --strict`` (``test_build.py``). These tests make sure no Python
block escapes that, and run the README's examples, which the site build does not see.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```\s*$", re.M | re.S)


def blocks(path: Path) -> list[tuple[str, str]]:
    return [(m["info"].strip(), m["body"]) for m in FENCE.finditer(path.read_text())]


def doc_pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "scripts" not in p.parts)


def test_the_docs_have_pages_with_python_examples():
    pages = doc_pages()
    assert len(pages) >= 20
    executed = [info for page in pages for info, _ in blocks(page) if info.startswith("python")]
    assert len(executed) >= 20


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_every_python_block_in_the_docs_is_executed_by_the_build(page: Path):
    for info, body in blocks(page):
        lang = info.split()[0] if info else ""
        if lang in ("python", "py", "pycon"):
            assert re.search(r'\bexec="(on|true|1)"', info), (
                f'{page.relative_to(ROOT)}: a {lang} block without exec="on" would not run '
                f"in the build:\n{body[:200]}"
            )


def readme_blocks() -> list[str]:
    return [body for info, body in blocks(ROOT / "README.md") if info.split()[:1] == ["python"]]


def test_the_readme_has_an_example():
    assert readme_blocks()


@pytest.mark.parametrize("index", range(len(readme_blocks())))
def test_readme_python_blocks_run(index: int):
    code = readme_blocks()[index]
    exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "__readme__"})
