"""A griffe extension: render the Sphinx markup of dropkit's docstrings in the Markdown reference.

dropkit's docstrings follow torch's style (``:func:`...```, ``:math:`...```, ``.. math::``).
mkdocstrings renders docstrings as Markdown, where those would show literally; this rewrites them
when griffe loads an object: cross-reference roles become code spans, ``:math:`` becomes inline
math and ``.. math::`` a display block (both rendered by ``pymdownx.arithmatex``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj):`~?([^`]+)`")
INLINE_MATH = re.compile(r":math:`([^`]+)`")
DISPLAY = re.compile(r"^(?P<indent>[ \t]*)\.\. math::[ \t]*(?P<first>.*)$")


def _display_math(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = DISPLAY.match(lines[i])
        if match is None:
            out.append(lines[i])
            i += 1
            continue
        indent = match["indent"]
        body = [match["first"].strip()] if match["first"].strip() else []
        i += 1
        # The directive's content: the following lines indented deeper than the directive.
        while (
            i < len(lines)
            and lines[i].strip()
            and len(lines[i]) - len(lines[i].lstrip()) > len(indent)
        ):
            body.append(lines[i].strip())
            i += 1
        out += ["", f"{indent}\\[", *[f"{indent}{b}" for b in body], f"{indent}\\]", ""]
    return "\n".join(out)


def convert(text: str) -> str:
    """The docstring ``text`` with its Sphinx roles and math directives made Markdown."""
    text = _display_math(text)
    text = INLINE_MATH.sub(lambda m: f"\\({m[1]}\\)", text)
    return ROLE.sub(lambda m: f"`{m[1]}`", text)


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value)
