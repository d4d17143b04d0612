"""The console pages: self-contained, and data only ever inserted as text.

These static checks back the real-browser tests (tests/browser/): every page and script
keeps to the rules that make markup in device names harmless.
"""

from __future__ import annotations

import re

import pytest

from console.app import STATIC_DIR

PAGE = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
SCRIPT = (STATIC_DIR / "app.js").read_text(encoding="utf-8")
STYLE = (STATIC_DIR / "style.css").read_text(encoding="utf-8")
PAGES = {p.name: p.read_text(encoding="utf-8") for p in STATIC_DIR.glob("*.html")}
SCRIPTS = {p.name: p.read_text(encoding="utf-8") for p in STATIC_DIR.glob("*.js")}


@pytest.mark.parametrize("sink", ["innerHTML", "outerHTML", "insertAdjacentHTML",
                                  "document.write", "eval(", "new Function",
                                  "createContextualFragment", "DOMParser"])
def test_script_never_parses_data_as_html(sink: str) -> None:
    assert set(SCRIPTS) == {"app.js", "audit.js", "common.js", "device.js", "drills.js",
                            "live-stream.js", "live-worker.js", "login.js", "station.js"}
    for name, script in SCRIPTS.items():
        assert sink not in script, name


def test_script_never_sets_handlers_or_urls_from_strings() -> None:
    for name, script in SCRIPTS.items():
        assert not re.search(r"setTimeout\(\s*[\"'`]", script), name
        assert not re.search(r"setAttribute\(\s*[\"']on", script), name
        assert ".href" not in script and ".src" not in script, name
        assert not re.search(r"setAttribute\(\s*[\"'](href|src)[\"']\s*,\s*[^\"'\s]", script), name


@pytest.mark.parametrize(("page", "scripts"), [
    ("index.html", ["live-stream.js", "common.js", "app.js"]),
    ("login.html", ["live-stream.js", "common.js", "login.js"]),
    ("station.html", ["live-stream.js", "common.js", "station.js"]),
    ("device.html", ["live-stream.js", "common.js", "device.js"]),
    ("audit.html", ["live-stream.js", "common.js", "audit.js"]),
    ("drills.html", ["live-stream.js", "common.js", "drills.js"]),
])
def test_page_loads_nothing_from_elsewhere(page: str, scripts: list[str]) -> None:
    html = PAGES[page]
    for text in (html, STYLE, *SCRIPTS.values()):
        text = text.replace('"http://www.w3.org/2000/svg"', "")  # a namespace name, not a load
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/|@import", text)
    # No inline script or handler: the Content-Security-Policy forbids them anyway.
    assert re.findall(r"<script[^>]*>", html) == [
        f'<script src="/static/{name}" defer>' for name in scripts]
    assert not re.search(r"\son[a-z]+=", html)
    assert '<meta name="viewport"' in html


def test_page_is_utf8_chinese_first() -> None:
    assert '<meta charset="utf-8">' in PAGE
    assert '<html lang="zh-CN">' in PAGE
    for label in ("确认", "Acknowledge", "处置完成", "Resolve"):
        assert label in SCRIPT


def test_script_uses_the_api_it_is_served_with() -> None:
    # The live stream is shared with the station page.
    board = SCRIPT + SCRIPTS["common.js"] + SCRIPTS["live-stream.js"]
    for path in ('"/api/alerts?status=live"', '"/api/stream"', '"/api/devices"',
                 '"/api/notifications?limit="', '"/api/sites"', '"/assign"', '"/assignees"'):
        assert path in board
    assert 'addEventListener("alert"' in board
    assert 'addEventListener("resync"' in board


def test_every_severity_colour_is_styled() -> None:
    for colour in ("red", "orange", "yellow", "blue"):
        assert f"tr.sev-{colour}" in STYLE
