"""Real headless Chromium (Debian's /usr/bin/chromium) driven by Playwright.

``bash scripts/browser-deps.sh`` installs the browser, CJK fonts and the playwright package;
Playwright's own browser downloads are never used. Screenshots go to
test-artifacts/browser-<time>/, printed at the end of the run (CI keeps that folder).

A test whose tab's renderer process died ("Page crashed") runs once more: page scripts cannot
kill a renderer, Chromium can (one such crash in a CI run, eight tabs logging out at once;
not seen again in 49 runs of that test here). The rerun shows in the summary; any other
failure fails at once.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, async_playwright

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS_ROOT = Path(__file__).resolve().parents[2] / "test-artifacts"
RENDERER_CRASH = r"(Page|Target) crashed"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.flaky(reruns=1, only_rerun=[RENDERER_CRASH]))


@pytest.fixture(scope="session")
def artifacts(request: pytest.FixtureRequest) -> Path:
    folder = ARTIFACTS_ROOT / time.strftime("browser-%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")

    def announce() -> None:
        if reporter is not None:
            reporter.write_line(f"browser screenshots: {folder}")

    request.addfinalizer(announce)
    return folder


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    """A fresh profile each test: no cookies or storage carried between tests."""
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/browser-deps.sh`", pytrace=False)
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1440, "height": 900}, locale="zh-CN", timezone_id="Asia/Shanghai")
        try:
            yield context
        finally:
            await context.close()
