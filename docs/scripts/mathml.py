"""TeX formulas to MathML at build time, so the site shows its math without any network.

``pymdownx.arithmatex`` (generic mode) leaves each formula in the page as
``<span class="arithmatex">\\(...\\)</span>`` or ``<div class="arithmatex">\\[...\\]</div>``.
:func:`render_page` replaces each with MathML Core, which browsers draw natively (Chromium 109+,
Firefox, Safari): ``latex2mathml`` converts, then :func:`to_core` mends what it writes outside
MathML Core (attributes Chromium ignores, ``\\sim`` as an identifier, ``\\mathrm`` letter by
letter) and refuses what would not render (an unknown command, ``menclose``, a bare line break).
A formula that cannot be rendered raises :class:`MathError`, and the build fails on it: no page
ever shows raw TeX.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET

from latex2mathml.converter import convert

NS = "http://www.w3.org/1998/Math/MathML"
ET.register_namespace("", NS)

# MathML Core's elements (https://w3c.github.io/mathml-core/): what Chromium lays out.
CORE = {
    "math", "mrow", "mi", "mn", "mo", "mtext", "ms", "mspace", "msub", "msup", "msubsup",
    "munder", "mover", "munderover", "mmultiscripts", "mprescripts", "mfrac", "msqrt", "mroot",
    "mtable", "mtr", "mtd", "mstyle", "mpadded", "mphantom", "semantics", "annotation",
    "annotation-xml",
}  # fmt: skip
# Characters latex2mathml writes as <mi> that are operators or fences (\sim, \lfloor ...).
AS_OPERATOR = {"~": "\u223c", "\u230a": None, "\u230b": None, "\u2308": None, "\u2309": None}
# Over-scripts that are accents (\bar, \hat, \tilde, \dot, \ddot, \vec, \check, \breve).
ACCENTS = set("\u00af^~\u02d9\u00a8\u2192\u02c7\u02d8\u2015\u203e\u0302\u0303")
# Function names (\log, \exp ...): TeX puts a thin space after one unless a parenthesis follows.
FUNCTIONS = {
    "arg", "cos", "cosh", "cot", "deg", "det", "dim", "exp", "gcd", "hom", "ker", "lg", "ln",
    "log", "sin", "sinh", "tan", "tanh", "max", "min", "sup", "inf", "lim", "Pr",
}  # fmt: skip
# Escapes that \text{...} keeps verbatim in latex2mathml's output.
TEXT_ESCAPES = {r"\_": "_", r"\&": "&", r"\%": "%", r"\$": "$", r"\#": "#", r"\{": "{", r"\}": "}"}

INLINE = re.compile(r'<span class="arithmatex">\\\((?P<tex>.*?)\\\)</span>', re.S)
BLOCK = re.compile(r'<div class="arithmatex">\\\[(?P<tex>.*?)\\\]</div>', re.S)


class MathError(ValueError):
    """A formula that the build cannot turn into MathML that browsers render."""


def _tag(el: ET.Element) -> str:
    return el.tag.rpartition("}")[2]


def _q(name: str) -> str:
    return f"{{{NS}}}{name}"


def _merge_upright_runs(parent: ET.Element) -> None:
    """``\\mathrm{Bernoulli}`` comes as nine one-letter ``<mi mathvariant="normal">``: one word."""
    children = list(parent)
    i = 0
    while i < len(children):
        el = children[i]
        if _tag(el) == "mi" and el.get("mathvariant") == "normal" and len(el) == 0:
            j = i + 1
            while (
                j < len(children)
                and _tag(children[j]) == "mi"
                and children[j].get("mathvariant") == "normal"
                and len(children[j]) == 0
                and not (children[j - 1].tail or "").strip()
            ):
                el.text = (el.text or "") + (children[j].text or "")
                el.tail = children[j].tail
                parent.remove(children[j])
                j += 1
            i = j
        else:
            i += 1


def _space_after_functions(parent: ET.Element) -> None:
    children = list(parent)
    for i, el in enumerate(children):
        if _tag(el) in ("mi", "mo") and el.text in FUNCTIONS and len(el) == 0:
            following = children[i + 1] if i + 1 < len(children) else None
            if following is not None and not (
                _tag(following) == "mo" and following.text in ("(", "[", "{")
            ):
                index = list(parent).index(el)
                parent.insert(index + 1, ET.Element(_q("mspace"), width="0.167em"))


def to_core(root: ET.Element) -> None:
    """Rewrite latex2mathml's output in place into MathML Core; raise MathError where it can't."""
    for el in root.iter():
        name = _tag(el)
        if name not in CORE:
            raise MathError(f"<{name}> is not MathML Core (browsers do not draw it)")
        if el.text and name != "annotation":
            for escape, char in TEXT_ESCAPES.items():
                el.text = el.text.replace(escape, char)
        for text in (el.text, el.tail):
            if text and "\\" in text and name != "annotation":
                raise MathError(f"unknown command or escape in {text.strip()!r}")
        if name == "mi" and el.text in AS_OPERATOR:
            el.tag = _q("mo")
            el.text = AS_OPERATOR[el.text] or el.text
            el.set("stretchy", "false")
        if name == "mo" and el.text == "/" and not el.get("lspace"):
            el.set("lspace", "0")  # TeX's "/" is an ordinary symbol: no space around it
            el.set("rspace", "0")
        if name == "mi" and el.text == "&":
            raise MathError("'&' outside an environment that aligns (use aligned, split, array)")
        if name == "mspace" and el.get("linebreak"):
            raise MathError(r"a line break (\\) outside an environment: browsers do not break")
        variant = el.get("mathvariant")
        if variant is not None and variant != "normal":
            if name == "mi" and variant == "italic" and len(el.text or "") == 1:
                del el.attrib["mathvariant"]  # a single-letter <mi> is italic anyway
            else:
                raise MathError(
                    f'mathvariant="{variant}" is not MathML Core: use a single letter '
                    r"(\mathbf{W}, \mathcal{N} become Unicode letters) or \text{...}"
                )
        if name == "mover" and len(el) == 2 and _tag(el[1]) == "mo":
            script = el[1]
            if script.text in ACCENTS or script.get("accent") == "true":
                el.set("accent", "true")
                script.attrib.pop("accent", None)
                script.set("stretchy", "false")
        if name == "mtable":
            first_row = el.find(_q("mtr"))
            aligns = [td.get("columnalign") for td in (first_row if first_row is not None else [])]
            aligned = aligns[:2] == ["right", "left"]  # split, align: columns meet with no gap
            for td in el.iter(_q("mtd")):
                align = td.get("columnalign")
                if align in ("left", "right"):
                    # Chromium ignores columnalign (not MathML Core) and centres a cell unless
                    # told otherwise; it honours -webkit-left/-webkit-right (not left/right).
                    style = f"text-align: -webkit-{align}"
                    if aligned:
                        style += "; padding-left: 0" if align == "left" else "; padding-right: 0"
                    td.set("style", style)
    for el in list(root.iter()):
        _merge_upright_runs(el)
        _space_after_functions(el)


def tex_to_mathml(tex: str, display: bool = False) -> str:
    """One formula's TeX (without delimiters) as a ``<math>`` element with its TeX annotation."""
    source = tex.strip()
    if not source:
        raise MathError("an empty formula")
    # latex2mathml has no `aligned`; `split` is the same alignment (right, then left, columns).
    prepared = re.sub(r"\\(begin|end)\{aligned\}", r"\\\1{split}", source)
    try:
        converted = convert(prepared, display="block" if display else "inline")
    except Exception as exc:  # the converter raises its own exception classes and plain ones
        raise MathError(f"latex2mathml cannot convert it ({type(exc).__name__}: {exc})") from exc
    try:
        root = ET.fromstring(converted)
    except ET.ParseError as exc:
        raise MathError(f"latex2mathml wrote invalid MathML ({exc})") from exc
    to_core(root)
    # Keep the TeX for copying and for assistive tools; a browser draws the first child only.
    body = list(root)
    for child in body:
        root.remove(child)
    semantics = ET.SubElement(root, _q("semantics"))
    row = body[0] if len(body) == 1 else ET.Element(_q("mrow"))
    if len(body) != 1:
        row.extend(body)
    semantics.append(row)
    annotation = ET.SubElement(semantics, _q("annotation"), encoding="application/x-tex")
    annotation.text = source
    return ET.tostring(root, encoding="unicode", short_empty_elements=False)


def render_page(page_html: str, where: str = "a page") -> tuple[str, int]:
    """Replace every arithmatex formula in a page's HTML with MathML; return it and the count.

    Raises MathError naming the page and the formula when one cannot be rendered, and when TeX
    delimiters are left in the page outside code (a formula arithmatex did not pick up).
    """
    count = 0

    def replace(match: re.Match, display: bool) -> str:
        nonlocal count
        tex = html.unescape(match["tex"])
        try:
            mathml = tex_to_mathml(tex, display=display)
        except MathError as exc:
            raise MathError(f"{where}: cannot render the formula {tex.strip()!r}: {exc}") from exc
        count += 1
        tag = "div" if display else "span"
        return f'<{tag} class="arithmatex">{mathml}</{tag}>'

    out = BLOCK.sub(lambda m: replace(m, True), page_html)
    out = INLINE.sub(lambda m: replace(m, False), out)
    outside_code = re.sub(r"<(pre|code|annotation)\b.*?</\1>", "", out, flags=re.S)
    left = re.search(r"\\\(|\\\[|\\\)|\\\]", outside_code)
    if left:
        context = outside_code[max(0, left.start() - 60) : left.end() + 60]
        raise MathError(f"{where}: TeX delimiters left outside any formula: ...{context}...")
    return out, count
