"""Formulas become MathML at build time (docs/scripts/mathml.py): every one in the docs converts,
and one that would not render fails the build instead of showing raw TeX."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("latex2mathml", reason="the docs extra is not installed")
markdown = pytest.importorskip("markdown", reason="the docs extra is not installed")

import mathml  # noqa: E402  (docs/scripts is put on sys.path by conftest.py)

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
FORMULA = re.compile(r"\\\[(?P<block>.*?)\\\]|\\\((?P<inline>.*?)\\\)", re.S)
M = "{http://www.w3.org/1998/Math/MathML}"


def doc_formulas() -> list[tuple[str, str, bool]]:
    found = []
    for page in sorted(DOCS.rglob("*.md")):
        for m in FORMULA.finditer(page.read_text()):
            display = m["block"] is not None
            found.append(
                (str(page.relative_to(DOCS)), m["block"] if display else m["inline"], display)
            )
    return found


def arithmatex_html(text: str) -> str:
    """Markdown through arithmatex as mkdocs.yml configures it (generic mode)."""
    config = {"pymdownx.arithmatex": {"generic": True}}
    return markdown.markdown(text, extensions=["pymdownx.arithmatex"], extension_configs=config)


def test_the_method_pages_have_formulas():
    pages = {page for page, _, _ in doc_formulas() if page.startswith("methods/")}
    assert len(pages) >= 15


@pytest.mark.parametrize(
    "page, tex, display",
    doc_formulas(),
    ids=lambda v: v if isinstance(v, str) and v.endswith(".md") else "",
)
def test_every_formula_in_the_docs_becomes_mathml_core(page: str, tex: str, display: bool):
    root = ET.fromstring(mathml.tex_to_mathml(tex, display=display))
    assert root.tag == f"{M}math"
    assert root.get("display") == ("block" if display else "inline")
    semantics = root.find(f"{M}semantics")
    assert semantics is not None and semantics[-1].text == tex.strip()
    for el in semantics[0].iter():
        assert el.tag.startswith(M) and el.tag[len(M) :] in mathml.CORE, el.tag
        assert "\\" not in (el.text or "") + (el.tail or ""), f"{page}: raw TeX left in {tex!r}"
        assert el.get("mathvariant") in (None, "normal"), f"{page}: {tex!r}"


def test_fractions_alignment_and_upright_words_come_out_as_browsers_draw_them():
    frac = mathml.tex_to_mathml(r"\gamma = \frac{p\,H W}{bs^2}", display=True)
    assert "<mfrac>" in frac and "γ" in frac
    word = mathml.tex_to_mathml(r"m \sim \mathrm{Bernoulli}(1-p)")
    assert '<mi mathvariant="normal">Bernoulli</mi>' in word
    assert '<mo stretchy="false">\u223c</mo>' in word  # \sim is a relation, not "~"
    aligned = mathml.tex_to_mathml(r"\begin{aligned} a &= b \\ c &\leftarrow d \end{aligned}", True)
    assert aligned.count("<mtr>") == 2
    assert "text-align: -webkit-right" in aligned and "text-align: -webkit-left" in aligned
    bar = mathml.tex_to_mathml(r"\bar p")
    assert '<mover accent="true">' in bar
    assert "block_size" in mathml.tex_to_mathml(r"\text{block\_size}")


@pytest.mark.parametrize(
    "tex, why",
    [
        (r"\foo{x}", "unknown command"),
        (r"a & b", "invalid MathML|outside an environment"),
        (r"x \\ y", "line break"),
        (r"\boxed{x}", "menclose"),
        (r"\boldsymbol{x}", "mathvariant"),
        ("  ", "empty"),
    ],
)
def test_a_formula_that_would_not_render_is_refused(tex: str, why: str):
    with pytest.raises(mathml.MathError, match=why):
        mathml.tex_to_mathml(tex)


def test_a_page_gets_every_formula_as_mathml_and_no_tex_is_left():
    html = arithmatex_html(
        "Inline \\(y = x\\,m / (1-p)\\) and a display:\n\n\\[ \\gamma = \\frac{a}{b} \\]\n\n"
        "Code keeps its text: `\\(x\\)`."
    )
    assert html.count('class="arithmatex"') == 2
    out, count = mathml.render_page(html, "page.md")
    assert count == 2
    assert out.count("<math ") == 2 and 'display="block"' in out
    assert "<code>\\(x\\)</code>" in out


def test_a_page_with_a_formula_that_cannot_render_names_page_and_formula():
    html = arithmatex_html("Broken: \\(\\foo{x}\\).")
    with pytest.raises(mathml.MathError, match=r"methods/x\.md.*\\\\foo"):
        mathml.render_page(html, "methods/x.md")


def test_tex_delimiters_left_outside_a_formula_fail():
    with pytest.raises(mathml.MathError, match="delimiters"):
        mathml.render_page("<p>a formula arithmatex missed: \\(x\\)</p>", "p.md")


def test_the_build_hook_fails_the_build_on_a_formula_it_cannot_render():
    pytest.importorskip("matplotlib")
    import hooks
    from mkdocs.exceptions import PluginError

    page = SimpleNamespace(file=SimpleNamespace(src_uri="methods/x.md"))
    good = hooks.on_page_content(arithmatex_html("\\(a_i\\)"), page, None, None)
    assert "<math " in good and "<msub>" in good
    with pytest.raises(PluginError, match="methods/x.md"):
        hooks.on_page_content(arithmatex_html("\\(\\foo\\)"), page, None, None)
