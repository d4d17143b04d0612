"""The console page: self-contained, and data only ever inserted as text.

A real-browser test (headless Chromium) comes with the Console issue; until then these
checks hold the page to the rules that make markup in device names harmless.
"""

from __future__ import annotations

import re

import pytest

from console.app import STATIC_DIR

PAGE = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
SCRIPT = (STATIC_DIR / "app.js").read_text(encoding="utf-8")
STYLE = (STATIC_DIR / "style.css").read_text(encoding="utf-8")


@pytest.mark.parametrize("sink", ["innerHTML", "outerHTML", "insertAdjacentHTML",
                                  "document.write", "eval(", "new Function",
                                  "createContextualFragment", "DOMParser"])
def test_script_never_parses_data_as_html(sink: str) -> None:
    assert sink not in SCRIPT


def test_script_never_sets_handlers_or_urls_from_strings() -> None:
    assert not re.search(r"setTimeout\(\s*[\"'`]", SCRIPT)
    assert not re.search(r"setAttribute\(\s*[\"']on", SCRIPT)
    assert ".href" not in SCRIPT and ".src" not in SCRIPT


def test_page_loads_nothing_from_elsewhere() -> None:
    for text in (PAGE, SCRIPT, STYLE):
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/|@import", text)
    # No inline script or handler: the Content-Security-Policy forbids them anyway.
    assert re.findall(r"<script[^>]*>", PAGE) == ['<script src="/static/app.js" defer>']
    assert not re.search(r"\son[a-z]+=", PAGE)


def test_page_is_utf8_chinese_first() -> None:
    assert '<meta charset="utf-8">' in PAGE
    assert '<html lang="zh-CN">' in PAGE
    for label in ("确认", "Acknowledge", "处置完成", "Resolve"):
        assert label in SCRIPT


def test_script_uses_the_api_it_is_served_with() -> None:
    for path in ('"/api/alerts?status=live"', '"/api/stream"', '"/api/devices"',
                 '"/api/notifications?limit="'):
        assert path in SCRIPT
    assert 'addEventListener("alert"' in SCRIPT
    assert 'addEventListener("resync"' in SCRIPT


def test_every_severity_colour_is_styled() -> None:
    for colour in ("red", "orange", "yellow", "blue"):
        assert f"tr.sev-{colour}" in STYLE
