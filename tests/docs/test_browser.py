"""The built site in headless Chromium, offline: formulas render, figures load, nothing is fetched
from another host, and wide tables and code scroll instead of being cut.

Needs Chromium (Debian's ``chromium``; ``bash test.sh`` installs it when it runs as root with
apt-get); skips without it. Set ``DROPKIT_DOCS_SCREENSHOTS=DIR`` to keep the screenshots it takes,
and ``DROPKIT_DOCS_SITE=DIR`` to test a site built before instead of building one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import headless  # docs/scripts is put on sys.path by conftest.py
import pytest

CHROMIUM = headless.find_chromium()
if CHROMIUM is None:
    pytest.skip(
        "Chromium is not installed (apt-get install chromium; bash test.sh installs it as root)",
        allow_module_level=True,
    )

LOCAL = "127.0.0.1"
# Pages whose figures and formulas are checked; every other page with a formula or a picture
# is added.
PAGES = ["", "benchmarks/", "experiments/", "random-stream/"]
NARROW = ["", "benchmarks/", "experiments/", "random-stream/", "methods/drop-block/",
          "reference/functional/"]  # fmt: skip


def offsite(requests: list[dict]) -> list[str]:
    """The URLs a page asked for anywhere but the local server (data: and about: are inline)."""
    bad = []
    for request in requests:
        url = urlsplit(request["url"])
        if url.scheme in ("data", "blob", "about"):
            continue
        if url.scheme not in ("http", "https") or url.hostname != LOCAL:
            bad.append(request["url"])
    return bad


def pages_to_check(site: Path) -> list[str]:
    pages = set(PAGES)
    pages |= {f"methods/{p.parent.name}/" for p in (site / "methods").glob("*/index.html")}
    pages |= {
        str(p.parent.relative_to(site)) + "/"
        for p in site.rglob("index.html")
        if re.search(r"<math\b|<img\b", p.read_text(encoding="utf-8"))
    }
    return sorted(page.replace("./", "") for page in pages)


def html_of(site: Path, page: str) -> str:
    return (site / page / "index.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def seen(site_build, tmp_path_factory) -> dict[str, dict]:
    """Every checked page as Chromium showed it: its requests and what ``INSPECT`` measured."""
    assert site_build.ok, site_build.log()
    shots = Path(os.environ.get("DROPKIT_DOCS_SCREENSHOTS") or tmp_path_factory.mktemp("shots"))
    shots.mkdir(parents=True, exist_ok=True)
    out = {}
    with headless.SiteServer(site_build.site) as server, headless.Chromium(CHROMIUM) as tab:
        for page in pages_to_check(site_build.site):
            requests = tab.open(server.base + page)
            out[page] = {"requests": requests, **tab.evaluate(headless.INSPECT)}
            if page == "methods/drop-block/":
                tab.screenshot(shots / "drop-block-formula.png", "div.arithmatex")
            if page == "benchmarks/":
                tab.screenshot(shots / "benchmarks-table.png", ".md-typeset__scrollwrap")
    return out


@pytest.fixture(scope="module")
def seen_on_a_phone(site_build) -> dict[str, dict]:
    """The pages with the widest tables, code and formulas, in a 400-pixel-wide window."""
    assert site_build.ok, site_build.log()
    out = {}
    with (
        headless.SiteServer(site_build.site) as server,
        headless.Chromium(CHROMIUM, 400, 800) as tab,
    ):
        for page in NARROW:
            tab.open(server.base + page)
            out[page] = tab.evaluate(headless.INSPECT)
    return out


@pytest.mark.slow
def test_the_pages_checked_include_every_method_page_and_the_figure_pages(seen):
    methods = [p for p in seen if p.startswith("methods/") and p != "methods/"]
    assert len(methods) >= 15
    assert {"benchmarks/", "experiments/"} <= set(seen)


@pytest.mark.slow
def test_no_page_requests_anything_from_another_host(seen):
    for page, report in seen.items():
        assert report["requests"], page
        assert not offsite(report["requests"]), (
            f"{page} asked another host: {offsite(report['requests'])}"
        )
        failed = [r for r in report["requests"] if r.get("failed") or (r["status"] or 0) >= 400]
        assert not failed, f"{page}: requests that failed: {failed}"


@pytest.mark.slow
def test_every_formula_is_laid_out_as_math_and_no_tex_shows(seen, site_build):
    with_math = [page for page, report in seen.items() if report["maths"]]
    assert len([p for p in with_math if p.startswith("methods/")]) >= 15
    for page, report in seen.items():
        assert report["raw"] == [], f"{page} shows raw TeX: {report['raw']}"
        assert len(report["maths"]) == html_of(site_build.site, page).count("<math "), page
        for formula in report["maths"]:
            where = f"{page}: {formula['tex']!r}"
            # Chromium lays <math> out as math ("inline math"/"block math"), not as unknown tags.
            assert formula["display"] in ("math", "inline math", "block math"), where
            _, _, width, height = formula["box"]
            assert width > 0 and height > 0, where
            for frac in formula["fracs"]:  # a fraction is stacked: numerator above denominator
                _, num_top, _, num_height = frac["num"]
                _, den_top, _, _ = frac["den"]
                assert num_top + num_height <= den_top + 1, where


@pytest.mark.slow
def test_every_figure_loaded(seen, site_build):
    pictured = 0
    for page, report in seen.items():
        expected = len(re.findall(r"<img\b", html_of(site_build.site, page)))
        assert len(report["images"]) >= expected, page
        for image in report["images"]:
            assert image["width"] > 0 and image["height"] > 0, (
                f"{page}: {image['src']} did not load"
            )
            pictured += 1
    assert pictured >= 15


@pytest.mark.slow
def test_wide_tables_and_code_scroll_instead_of_being_cut(seen):
    for page, report in seen.items():
        for block in report["wide"]:
            assert block["fits"] or block["scrolls"], f"{page}: a {block['tag']} is cut: {block}"
    # The benchmarks page's widest table is much wider than the column: it must scroll.
    tables = [b for b in seen["benchmarks/"]["wide"] if b["tag"] == "table"]
    assert any(b["scrolls"] and b["width"] > 2 * b["column"] for b in tables)


@pytest.mark.slow
def test_on_a_phone_wide_content_scrolls_and_the_page_does_not(seen_on_a_phone):
    for page, report in seen_on_a_phone.items():
        for block in report["wide"]:
            assert block["fits"] or block["scrolls"], f"{page}: a {block['tag']} is cut: {block}"
        assert report["page"]["width"] <= report["page"]["window"], f"{page} scrolls sideways"


def test_the_check_sees_a_request_to_another_host(tmp_path: Path):
    """The offline check itself: a page that asks another host is caught (and nothing leaves)."""
    (tmp_path / "index.html").write_text(
        '<!doctype html><img src="figure.png"><img src="https://cdn.example.org/x.png">'
    )
    (tmp_path / "figure.png").write_bytes(b"not a png")
    with headless.SiteServer(tmp_path) as server, headless.Chromium(CHROMIUM) as tab:
        requests = tab.open(server.base)
        report = tab.evaluate(headless.INSPECT)
    assert offsite(requests) == ["https://cdn.example.org/x.png"]
    assert [image["width"] for image in report["images"]] == [0, 0]  # neither loaded
