"""The reference's rewrite of Sphinx markup in docstrings into Markdown."""

from __future__ import annotations

import pytest

pytest.importorskip("griffe", reason="the docs extra is not installed")

from griffe_sphinx_roles import convert  # noqa: E402  (docs/scripts is on sys.path: conftest.py)


def test_roles_become_code_spans():
    assert convert("see :func:`dropkit.mc.stochastic` and :class:`~torch.nn.Dropout`") == (
        "see `dropkit.mc.stochastic` and `torch.nn.Dropout`"
    )


def test_inline_math_becomes_arithmatex_inline_math():
    assert convert(r"with :math:`m \sim B(1-p)` drawn") == r"with \(m \sim B(1-p)\) drawn"


def test_a_math_directive_and_its_indented_continuation_become_one_display_block():
    text = "the centre,\n\n.. math:: c_y = a,\n          j = b,\n\nwhere u is"
    assert convert(text) == "the centre,\n\n\n\\[\nc_y = a,\nj = b,\n\\]\n\n\nwhere u is"


def test_text_without_sphinx_markup_is_unchanged():
    text = "Args:\n    p: ``p`` in [0, 1], a `code` span.\n"
    assert convert(text) == text
