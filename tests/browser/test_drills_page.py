"""The drill page in real headless Chromium against the running stack.

A duty officer opens the drill page from the board, starts an SOS drill on a wearable, and
watches the timeline fill from the database as the drill goes through the real pipeline
(MQTT → ingest → detectors → alerting): onset, detection, messages; on the board (a second
tab) acknowledges and resolves the drill alert; the timeline shows both, the drill ends,
and its scorecard and Markdown report open.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Dialog, expect

from tests.browser.stack import log_in, running_stack

pytestmark = pytest.mark.integration

DEVICE = "wearable-0"
WAIT_MS = 15_000  # generous ceiling for a loaded CI box


async def test_start_a_drill_watch_its_timeline_and_open_its_report(
        browser: BrowserContext, artifacts: Path, pg_dsn: str, db_schema: str,
        mqtt_addr: tuple[str, int], run_id: str) -> None:
    problems: list[str] = []

    async def accept(dialog: Dialog) -> None:
        await dialog.accept()

    async with running_stack(pg_dsn, db_schema, mqtt_addr, run_id) as stack:
        base = stack.console.url
        page = await browser.new_page()
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("dialog", accept)
        await log_in(page, base, "王值班", "/")
        await page.click("#drills-link")
        await expect(page).to_have_url(base + "/drills")
        await expect(page.locator("#start-panel")).to_be_visible()
        await expect(page.locator("#no-drills")).to_be_visible()

        await page.select_option("#drill-site", "sunshine")
        await page.select_option("#drill-scenario", "sos")
        # Only wearables can run an SOS drill.
        offered = await page.locator("#drill-device option").evaluate_all(
            "options => options.map(o => o.value)")
        assert offered == [f"wearable-{i}" for i in range(4)]
        await expect(page.locator("#scenario-description")).to_contain_text("SOS")
        await page.select_option("#drill-device", DEVICE)
        await page.select_option("#drill-speed", "60")
        await page.select_option("#drill-run", "120")
        await page.click("#drill-start")

        detail = page.locator("#detail-panel")
        await expect(detail).to_be_visible(timeout=WAIT_MS)
        await expect(page).to_have_url(base + "/drills?id=1")
        timeline = page.locator("#timeline-rows")
        await expect(timeline.locator("tr[data-kind=onset]")).to_have_count(1)
        detection = timeline.locator("tr[data-kind=detection]")
        await expect(detection).to_have_count(1, timeout=WAIT_MS)
        await expect(detection).to_contain_text(DEVICE)
        await expect(detection).to_contain_text("紧急呼救")
        await expect(timeline.locator("tr[data-kind=notification]").first).to_be_visible(
            timeout=WAIT_MS)
        await page.screenshot(path=str(artifacts / "drill-running.png"), full_page=True)

        # The duty officer answers the drill alert on the board (another tab).
        board = await browser.new_page()
        board.on("pageerror", lambda e: problems.append(str(e)))
        board.on("dialog", accept)
        await board.goto(base + "/")
        row = board.locator(f"tr.alert[data-device-id='{DEVICE}']")
        await expect(row).to_be_visible(timeout=WAIT_MS)
        await expect(row).to_contain_text("演练")
        await row.locator("button.act-ack").click()
        await expect(row.locator("button.act-ack")).to_be_disabled(timeout=WAIT_MS)
        await row.locator("button.act-resolve").click()
        await board.close()

        await expect(timeline.locator("tr[data-kind=acknowledged]")).to_have_count(
            1, timeout=WAIT_MS)
        await expect(timeline.locator("tr[data-kind=resolved]")).to_have_count(
            1, timeout=WAIT_MS)
        await expect(detail).to_have_attribute("data-status", "finished", timeout=30_000)
        report = page.locator("#report")
        await expect(report).to_be_visible()
        score = page.locator("#score-rows tr")
        await expect(score).to_have_count(1)
        await expect(score).to_contain_text(DEVICE)
        await expect(page.locator("#score-missed")).to_contain_text("—")
        # A duty officer cannot delete drill data; the list shows the finished drill.
        await expect(page.locator("#purge")).to_be_hidden()
        listed = page.locator("#drill-rows tr[data-drill='1']")
        await expect(listed).to_contain_text("1/1", timeout=WAIT_MS)
        await page.screenshot(path=str(artifacts / "drill-report.png"), full_page=True)

        async with browser.expect_page() as opened:
            await page.click("#report-link")
        markdown = await opened.value
        await markdown.wait_for_load_state()
        text = await markdown.locator("body").inner_text()
        assert "# 演练成绩单 Drill scorecard #1: sos" in text
        assert f"| {DEVICE} | 紧急呼救 SOS call (`sos`) | red | red |" in text

        await page.click("#lang-switch")
        await expect(page.locator("#detail-state")).to_contain_text("Finished")
        # The hazard as the messages name it (served with each entry), in either language.
        await expect(score).to_contain_text("SOS call")
        await expect(timeline.locator("tr[data-kind=detection]")).to_contain_text("SOS call")

    assert problems == []
