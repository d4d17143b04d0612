"""Eight board tabs of one duty officer share one live stream, in real headless Chromium.

Each EventSource holds an HTTP/1.1 connection and Chromium allows a host only 6 per profile:
eight tabs with a stream each would leave the seventh and eighth without a connection for
loading, let alone acknowledging. The pages elect one tab (a Web Lock) to hold the stream
and forward it to the others (a BroadcastChannel); when that tab closes another takes over.
Another login in the same profile (a new session) elects its own. Over plain http (no Web
Locks outside secure contexts) a shared worker holds the one stream instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Page, Request, Route, async_playwright, expect
from prometheus_client import REGISTRY

from tests.browser.conftest import CHROMIUM, FLAGS
from tests.browser.stack import Stack, log_in, running_stack
from tests.integration.e2e import LEAK_DEVICE

pytestmark = pytest.mark.integration

TABS = 8
SMOKE_DEVICE = "smoke-0"
SECOND_SMOKE = "smoke-1"
PLAIN_HOST = "console.test"  # mapped to 127.0.0.1 by a Chromium flag
WAIT_MS = 20_000  # generous ceiling for eight renderers on a loaded 2-core box


def _live_viewers() -> float:
    return REGISTRY.get_sample_value("shouwang_console_live_viewers") or 0.0


async def _roles(tabs: list[Page]) -> list[str]:
    return [await tab.evaluate("document.body.dataset.live") for tab in tabs]


async def _leader_after_handover(tabs: list[Page]) -> int:
    async with asyncio.timeout(WAIT_MS / 1000):
        while (roles := await _roles(tabs)).count("leader") != 1:
            await asyncio.sleep(0.1)
    return roles.index("leader")


async def _open_boards(context: BrowserContext, base: str, problems: list[str]) -> list[Page]:
    """TABS boards in one profile, each live; the first logs in (the rest share its cookie)."""
    tabs: list[Page] = []
    for n in range(TABS):
        tab = await context.new_page()
        tab.on("pageerror", lambda e: problems.append(str(e)))
        if n == 0:
            await log_in(tab, base, "王值班", "/")
        else:
            await tab.goto(base + "/", timeout=WAIT_MS)
        await expect(tab.locator("#link.link-up")).to_be_visible(timeout=WAIT_MS)
        tabs.append(tab)
    return tabs


async def _alert_reaches_all_and_the_last_acknowledges(stack: Stack, tabs: list[Page]) -> None:
    await asyncio.to_thread(stack.publish, LEAK_DEVICE, {"lel": 62.0})
    rows = [tab.locator("tr.alert", has_text=LEAK_DEVICE) for tab in tabs]
    for row in rows:
        await expect(row).to_be_visible(timeout=WAIT_MS)
    await rows[-1].locator("button.act-ack").click()
    for row in rows:
        await expect(row.locator(".status")).to_have_class(
            "status status-acknowledged", timeout=WAIT_MS)
    assert await stack.status(LEAK_DEVICE) == ["acknowledged"]


async def test_eight_tabs_share_one_stream_and_hand_it_over(
        browser: BrowserContext, artifacts: Path, pg_dsn: str, db_schema: str,
        mqtt_addr: tuple[str, int], run_id: str) -> None:
    problems: list[str] = []
    streams: list[str] = []

    def count_stream(request: Request) -> None:
        if request.url.endswith("/api/stream"):
            streams.append(request.url)

    browser.on("request", count_stream)
    async with running_stack(pg_dsn, db_schema, mqtt_addr, run_id) as stack:
        base = stack.console.url
        viewers = _live_viewers()
        tabs = await _open_boards(browser, base, problems)
        assert sorted(await _roles(tabs)) == ["follower"] * (TABS - 1) + ["leader"]
        assert len(streams) == 1
        assert _live_viewers() == viewers + 1
        locks = await tabs[0].evaluate("navigator.locks.query()")
        assert [lock["name"].split(":")[:2] for lock in locks["held"]] == [
            ["shouwang.live", "王值班"]]
        assert len(locks["pending"]) == TABS - 1

        # A red alert reaches every tab; the last one acknowledges it, and every tab hears.
        await _alert_reaches_all_and_the_last_acknowledges(stack, tabs)
        await tabs[-1].screenshot(path=str(artifacts / "shared-stream-eighth-tab.png"))

        # The leader closes and a follower takes the stream over. An alert opened before the
        # new stream is up (held back here) is not lost: the takeover reloads every tab.
        gate = asyncio.Event()

        async def hold_stream(route: Route) -> None:
            await gate.wait()
            await route.continue_()

        await browser.route("**/api/stream", hold_stream)
        leader = (await _roles(tabs)).index("leader")
        await tabs.pop(leader).close()
        new_leader = await _leader_after_handover(tabs)
        await asyncio.to_thread(stack.publish, SMOKE_DEVICE, {"smoke": 9.5, "alarm": 1.0})
        async with asyncio.timeout(WAIT_MS / 1000):
            while await stack.status(SMOKE_DEVICE) != ["open"]:
                await asyncio.sleep(0.1)
        assert await tabs[0].locator("tr.alert", has_text=SMOKE_DEVICE).count() == 0
        gate.set()
        for tab in tabs:
            await expect(tab.locator("#link.link-up")).to_be_visible(timeout=WAIT_MS)
            await expect(tab.locator("tr.alert", has_text=SMOKE_DEVICE)).to_be_visible(
                timeout=WAIT_MS)
        assert len(streams) == 2
        await browser.unroute("**/api/stream", hold_stream)
        # And the new leader forwards what comes next.
        await asyncio.to_thread(stack.publish, SECOND_SMOKE, {"smoke": 9.5, "alarm": 1.0})
        for tab in tabs:
            await expect(tab.locator("tr.alert", has_text=SECOND_SMOKE)).to_be_visible(
                timeout=WAIT_MS)
        assert (await _roles(tabs)).index("leader") == new_leader
        assert len(streams) == 2

        # With neither Web Locks nor shared workers, a tab keeps a stream of its own.
        alone = await browser.new_page()
        alone.on("pageerror", lambda e: problems.append(str(e)))
        await alone.add_init_script("delete Navigator.prototype.locks; delete window.SharedWorker")
        await alone.goto(base + "/", timeout=WAIT_MS)
        await expect(alone.locator("#link.link-up")).to_be_visible(timeout=WAIT_MS)
        assert await alone.evaluate("document.body.dataset.live") == "own"
        await expect(alone.locator("tr.alert", has_text=SECOND_SMOKE)).to_be_visible()
        await alone.close()

        # Logging out in one tab ends the session's stream at once, so every tab of that
        # session (a station page too: it polls nothing) goes to the login page instead of
        # showing alerts on. Another login in this profile then elects its own leader.
        stale = await browser.new_page()
        await stale.goto(base + "/station", timeout=WAIT_MS)
        await expect(stale.locator("#link.link-up")).to_be_visible(timeout=WAIT_MS)
        assert await stale.evaluate("document.body.dataset.live") == "follower"
        switched = tabs[new_leader - 1]  # a follower
        await switched.click("#logout")
        for tab in tabs:
            await expect(tab).to_have_url(base + "/login", timeout=WAIT_MS)
        await expect(stale).to_have_url(base + "/login?next=station", timeout=WAIT_MS)
        await log_in(switched, base, "阳光微站", "/station")
        await expect(switched.locator("#link.link-up")).to_be_visible(timeout=WAIT_MS)
        await expect(switched.locator("article.station-card", has_text="烟雾报警")).to_have_count(
            2, timeout=WAIT_MS)
        assert await switched.evaluate("document.body.dataset.live") == "leader"
        locks = await switched.evaluate("navigator.locks.query()")
        assert [lock["name"].split(":")[1] for lock in locks["held"]] == ["阳光微站"]
    assert problems == []


@pytest.fixture
async def plain_http_browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    """Chromium reaching the console as http://console.test: not a secure context (no Web
    Locks), like a console on plain http on the LAN."""
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True,
            args=[*FLAGS, f"--host-resolver-rules=MAP {PLAIN_HOST} 127.0.0.1"],
            locale="zh-CN", timezone_id="Asia/Shanghai")
        try:
            yield context
        finally:
            await context.close()


async def test_on_plain_http_eight_tabs_share_a_worker_stream(
        plain_http_browser: BrowserContext, pg_dsn: str, db_schema: str,
        mqtt_addr: tuple[str, int], run_id: str) -> None:
    problems: list[str] = []
    async with running_stack(pg_dsn, db_schema, mqtt_addr, run_id) as stack:
        base = f"http://{PLAIN_HOST}:{stack.console.port}"
        viewers = _live_viewers()
        tabs = await _open_boards(plain_http_browser, base, problems)
        assert await tabs[0].evaluate("isSecureContext || navigator.locks !== undefined") is False
        assert await _roles(tabs) == ["worker"] * TABS
        assert _live_viewers() == viewers + 1
        await _alert_reaches_all_and_the_last_acknowledges(stack, tabs)
        # A logout in one tab ends the worker's stream: every tab goes to the login page,
        # a station page too (it polls nothing: only the stream's end can move it).
        station = await plain_http_browser.new_page()
        station.on("pageerror", lambda e: problems.append(str(e)))
        await station.goto(base + "/station", timeout=WAIT_MS)
        await expect(station.locator("#link.link-up")).to_be_visible(timeout=WAIT_MS)
        assert await station.evaluate("document.body.dataset.live") == "worker"
        await tabs[0].click("#logout")
        await expect(station).to_have_url(base + "/login?next=station", timeout=WAIT_MS)
        for tab in tabs:
            await expect(tab).to_have_url(base + "/login", timeout=WAIT_MS)
    assert problems == []
