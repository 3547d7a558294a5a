"""The figure script: every picture is used, drawn deterministically, and checks what it shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

pytest.importorskip("matplotlib")

import make_figures  # noqa: E402  (docs/scripts is put on sys.path by conftest.py)

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def referenced_figures() -> set[str]:
    names = set()
    for page in DOCS.rglob("*.md"):
        names |= set(re.findall(r"figures/([a-z_]+)\.png", page.read_text()))
    return names


def test_every_figure_is_on_a_page_and_every_page_figure_is_drawn():
    assert referenced_figures() == set(make_figures.FIGURES)


def test_a_figure_is_the_same_png_on_every_build():
    first = make_figures.render("drop_path")
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    assert make_figures.render("drop_path") == first


def test_the_backend_picture_fails_when_the_kernels_disagree(monkeypatch):
    real = make_figures.DF.dropout

    def skewed(x, p, *args, **kwargs):
        y = real(x, p, *args, **kwargs).clone()
        y.view(-1)[0] = 1.0 - torch.sign(y.view(-1)[0])  # flip one element's keep decision
        return y

    monkeypatch.setattr(make_figures.DF, "dropout", skewed)
    with pytest.raises(AssertionError, match="different masks"):
        make_figures.render("backends")


def test_the_script_names_unknown_figures(tmp_path, capsys):
    assert make_figures.main([str(tmp_path), "no-such-figure"]) == 2
    assert "no-such-figure" in capsys.readouterr().err
    assert make_figures.main([str(tmp_path), "max_norm"]) == 0
    assert (tmp_path / "max_norm.png").is_file()
    assert not list(tmp_path.glob("*.tmp"))
