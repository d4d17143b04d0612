"""The console in real headless Chromium against a running stack.

MQTT (real Mosquitto) -> ingest -> detectors -> alerting -> console, all in this process on an
in-memory bus and a fresh PostgreSQL schema. The browser logs in, sees a hazardous reading
become a red alert on the board, acknowledges it, reloads, and checks it stayed acknowledged;
then a fire station on a phone-sized screen acknowledges its own alert.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, expect

from tests.browser.stack import XSS_DEVICE, XSS_NAME, log_in, running_stack
from tests.integration.console_auth import PASSWORD
from tests.integration.e2e import LEAK_DEVICE

pytestmark = pytest.mark.integration

SMOKE_DEVICE = "smoke-0"
APPEAR_WITHIN_S = 2.0
WAIT_MS = 15_000  # generous ceiling for a loaded CI box; the 2 s bound is asserted apart


async def test_board_login_live_alert_acknowledge_and_station_on_a_phone(
        browser: BrowserContext, artifacts: Path, pg_dsn: str, db_schema: str,
        mqtt_addr: tuple[str, int], run_id: str) -> None:
    dialogs: list[str] = []
    async with running_stack(pg_dsn, db_schema, mqtt_addr, run_id) as stack:
        base = stack.console.url
        page = await browser.new_page()
        page.on("dialog", lambda d: dialogs.append(d.message))
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(str(e)))

        # 1. Log in (a wrong password first: the page says so and stays).
        await page.goto(base + "/")
        await expect(page).to_have_url(base + "/login")
        await page.fill("#name", "王值班")
        await page.fill("#password", "not-the-password")
        await page.click("#login-submit")
        await expect(page.locator("#login-problem")).to_contain_text("用户名或密码错误")
        await page.fill("#password", PASSWORD)
        await page.click("#login-submit")
        await expect(page).to_have_url(base + "/")
        await expect(page.locator("#link.link-up")).to_be_visible(timeout=WAIT_MS)
        await expect(page.locator("#controls .who")).to_contain_text("王值班")

        # A device name full of markup is shown as text and never runs.
        xss_row = page.locator("tr.device", has_text=XSS_DEVICE)
        await expect(xss_row.locator(".device-name")).to_have_text(XSS_NAME, timeout=WAIT_MS)
        assert await page.evaluate("window.__pwned === undefined")
        assert await page.locator("tr.device img").count() == 0

        # Some normal history for the device's chart.
        # (within max_clock_skew_s = 300 s, spread over more than three 30 s buckets)
        for seconds, lel in ((200, 1.0), (160, 3.0), (120, 2.0), (80, 6.0), (40, 9.0)):
            await asyncio.to_thread(stack.publish, LEAK_DEVICE, {"lel": lel}, float(seconds))

        # 2. A hazardous reading over MQTT shows up on the board without a reload.
        row = page.locator("tr.alert", has_text=LEAK_DEVICE)
        published = time.monotonic()
        await asyncio.to_thread(stack.publish, LEAK_DEVICE, {"lel": 62.0})
        await expect(row).to_be_visible(timeout=WAIT_MS)
        appeared_s = time.monotonic() - published
        await expect(row).to_have_class("alert sev-red")
        await expect(row.locator(".hazard")).to_contain_text("燃气泄漏")
        await expect(row.locator(".place")).to_contain_text("2号楼 1单元 3层 301")
        await expect(page.locator("body")).to_have_attribute("data-beeps", "1")  # sound cue
        plan_dot = page.locator(f'#plan circle.plan-alert.sev-red[data-device-id="{LEAK_DEVICE}"]')
        await expect(plan_dot).to_have_count(1)  # the site plan marks it too
        await page.screenshot(path=str(artifacts / "board-red-alert.png"), full_page=True)

        # 3. Acknowledge, 4. reload: the state is kept by the server.
        await row.locator("button.act-ack").click()
        await expect(row.locator(".status")).to_have_class("status status-acknowledged")
        await page.reload()
        row = page.locator("tr.alert", has_text=LEAK_DEVICE)
        await expect(row.locator(".status")).to_have_class("status status-acknowledged",
                                                           timeout=WAIT_MS)
        await expect(row.locator("button.act-ack")).to_be_disabled()
        assert await stack.status(LEAK_DEVICE) == ["acknowledged"]

        # The alert's history names who acknowledged it.
        await row.locator("button.act-history").click()
        await expect(page.locator("#history-rows")).to_contain_text("王值班")
        await page.click("#history-close")

        # The device's page: a chart of its recent readings with its threshold lines.
        await page.locator("tr.device", has_text=XSS_DEVICE).locator("button.device-name").click()
        await expect(page).to_have_url(base + f"/device?id={XSS_DEVICE}")
        await expect(page.locator("#device-info h2")).to_have_text(XSS_NAME)
        assert await page.evaluate("window.__pwned === undefined")
        await page.goto(base + f"/device?id={LEAK_DEVICE}")
        await expect(page.locator("#chart svg polyline.chart-mean")).to_have_count(1,
                                                                              timeout=WAIT_MS)
        await page.select_option("#hours", "1")  # 30 s buckets: one point per reading
        await expect(page.locator("#chart circle.chart-point")).to_have_count(6)
        await expect(page.locator("#chart line.chart-threshold")).to_have_count(2)  # 25, 50
        await expect(page.locator("#device-alert-rows tr")).to_have_count(1)
        await page.screenshot(path=str(artifacts / "device-chart.png"), full_page=True)
        await page.goto(base + "/")

        # Language switch: English only, and it sticks across a reload.
        await page.click("#lang-switch")
        await expect(page.locator("#alerts-title .en")).to_be_visible()
        await expect(page.locator("#alerts-title .zh")).to_be_hidden()
        await page.reload()
        await expect(page.locator("tr.alert", has_text=LEAK_DEVICE).locator(".hazard"))\
            .to_contain_text("Gas leak", timeout=WAIT_MS)
        await page.screenshot(path=str(artifacts / "board-english.png"), full_page=True)
        await page.click("#lang-switch")
        await page.click("#logout")
        await expect(page).to_have_url(base + "/login")

        # The fire station, on a phone: its own alert, where, what to do, one button.
        phone = await browser.new_page()
        await phone.set_viewport_size({"width": 390, "height": 844})
        phone.on("pageerror", lambda e: problems.append(str(e)))
        await log_in(phone, base, "阳光微站", "/station")
        await expect(phone.locator("#link.link-up")).to_be_visible(timeout=WAIT_MS)
        card = phone.locator("article.station-card", has_text="燃气泄漏")
        await expect(card).to_be_visible(timeout=WAIT_MS)
        await expect(card.locator("button.station-ack")).to_have_count(0)  # acknowledged
        await asyncio.to_thread(stack.publish, SMOKE_DEVICE, {"smoke": 9.5, "alarm": 1.0})
        smoke = phone.locator("article.station-card.sev-red", has_text="烟雾报警")
        await expect(smoke).to_be_visible(timeout=WAIT_MS)
        await expect(smoke.locator(".card-address")).to_contain_text("阳光路 88 号")
        await expect(smoke.locator(".card-todo")).to_contain_text("119")
        await phone.screenshot(path=str(artifacts / "station-phone.png"), full_page=True)
        width = await phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, "the phone page scrolls sideways"
        await smoke.locator("button.station-ack").click()
        await expect(smoke.locator("button.station-ack")).to_have_count(0)
        await expect(smoke.locator(".card-status")).to_contain_text("已确认")
        assert await stack.status(SMOKE_DEVICE) == ["acknowledged"]

    assert dialogs == [] and problems == []
    assert appeared_s < APPEAR_WITHIN_S, f"the alert took {appeared_s:.2f} s to appear"
