"""The board's escalation countdown, assign action and configured site plan, in real
headless Chromium against a running stack (real Mosquitto, alerting's own escalator).

A gas leak opens a red alert under a two-step policy (fire station at once, the duty
officers 12 s later): the board counts down to step 2, shows step 2 when the escalator
fires it (pushed over the live stream), the duty officer assigns the alert to the fire
station with a note, acknowledges it, and the countdown stops. The site plan is the one
in the config, with the alert on its floor and room.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext, Locator, expect

from shouwang.codec import encode_detection
from shouwang.models import Detection, DetectionKind, Severity
from shouwang.store import connect
from tests.browser.stack import XSS_NAME, log_in, running_stack
from tests.integration.e2e import LEAK_DEVICE

pytestmark = pytest.mark.integration

WAIT_MS = 15_000  # generous ceiling for a loaded CI box
STEP_2_AFTER_S = 12


def _escalation_and_plan(shape: dict[str, Any]) -> None:  # Any: YAML-shaped settings
    shape["alerting"]["groups"] = [
        {"name": "fire_station", "recipients": [
            {"name": "李队长", "receivers": ["fire-station-sms"]}]},
        {"name": "duty_officers", "recipients": [
            {"name": "张主任", "receivers": ["fire-station-sms"]}]},
    ]
    shape["alerting"]["policies"] = [{
        "name": "gas", "hazards": ["gas"], "min_severity": "orange",
        "steps": [{"groups": ["fire_station"]},
                  {"after_s": STEP_2_AFTER_S, "groups": ["duty_officers"]}],
        "remind_every_s": 600, "max_reminders": 1,
    }]
    shape["sites"][0]["plan"] = {
        "width": 600, "height": 320,
        "buildings": [
            {"name": "1号楼", "x": 20, "y": 30, "width": 250, "height": 260},
            {"name": "2号楼", "label": "2号楼 (东)", "x": 320, "y": 30, "width": 250,
             "height": 260,
             "floors": [{"name": "1"}, {"name": "2"}, {"name": "3", "rooms": ["301", "302"]},
                        {"name": "4"}]},
        ],
    }


def _seconds(text: str) -> int:
    match = re.fullmatch(r"(\d+):(\d\d)", text.strip())
    assert match, f"not a countdown: {text!r}"
    return int(match[1]) * 60 + int(match[2])


async def _countdown(row: Locator) -> int:
    return _seconds(await row.locator(".countdown").inner_text())


async def test_countdown_step_fired_live_assign_and_configured_plan(
        browser: BrowserContext, artifacts: Path, pg_dsn: str, db_schema: str,
        mqtt_addr: tuple[str, int], run_id: str) -> None:
    problems: list[str] = []
    async with running_stack(pg_dsn, db_schema, mqtt_addr, run_id,
                             adjust=_escalation_and_plan) as stack:
        base = stack.console.url
        page = await browser.new_page()
        page.on("pageerror", lambda e: problems.append(str(e)))
        await log_in(page, base, "王值班", "/")
        await expect(page.locator("#link.link-up")).to_be_visible(timeout=WAIT_MS)

        # The configured plan: buildings where the config puts them, floors and rooms.
        plan = page.locator("#plan svg.plan-configured")
        await expect(plan.locator("g[data-building='2号楼'] .plan-label")).to_have_text(
            "2号楼 (东)", timeout=WAIT_MS)
        await expect(plan.locator(".plan-room-label")).to_have_text(["301", "302"])
        # A device in a building the plan does not have is listed (as text), not lost.
        await expect(page.locator(".plan-unplaced")).to_contain_text(XSS_NAME)
        assert await page.evaluate("window.__pwned === undefined")

        # A leak: red alert, step 1 of 2 paged the fire station, step 2 counts down.
        await asyncio.to_thread(stack.publish, LEAK_DEVICE, {"lel": 62.0})
        row = page.locator("tr.alert", has_text=LEAK_DEVICE)
        await expect(row).to_be_visible(timeout=WAIT_MS)
        await expect(row.locator(".esc-step")).to_contain_text("第1/2级", timeout=WAIT_MS)
        await expect(row.locator(".esc-step")).to_contain_text("微型消防站")
        await expect(row.locator(".esc-next")).to_contain_text("下一级 2/2")
        await expect(row.locator(".esc-next")).to_contain_text("值班员")
        first = await _countdown(row)
        assert 0 < first <= STEP_2_AFTER_S
        async with asyncio.timeout(WAIT_MS / 1000):  # it ticks down, without a reload
            while await _countdown(row) >= first:
                await asyncio.sleep(0.2)
        dot = plan.locator(f"g[data-building='2号楼'] circle.plan-alert.sev-red"
                           f"[data-device-id='{LEAK_DEVICE}']")
        await expect(dot).to_have_count(1)
        await page.screenshot(path=str(artifacts / "board-countdown-plan.png"), full_page=True)

        # The escalator fires step 2: the board hears it on the live stream.
        await expect(row.locator(".esc-step")).to_contain_text(
            "第2/2级", timeout=(STEP_2_AFTER_S + 15) * 1000)
        await expect(row.locator(".status")).to_contain_text("已升级")
        await expect(row.locator(".esc-next")).to_contain_text("提醒 1/1")

        # Assign to the fire station's console user, with a note.
        await row.locator("button.act-assign").click()
        dialog = page.locator("dialog#assign")
        await expect(dialog).to_be_visible()
        await expect(dialog.locator("#assign-who option")).to_have_count(4)  # 2 users, 2 people
        await dialog.locator("#assign-who").select_option("阳光微站")
        await dialog.locator("#assign-note").fill("带灭火器去2号楼3层")
        await dialog.locator("#assign-submit").click()
        await expect(dialog).to_be_hidden()
        await expect(row.locator(".assignee")).to_contain_text("阳光微站")

        # Acknowledge: the countdown stops, the step reached stays.
        await row.locator("button.act-ack").click()
        await expect(row.locator(".status")).to_contain_text("已确认")
        await expect(row.locator(".countdown")).to_have_count(0)
        await expect(row.locator(".esc-step")).to_contain_text("第2/2级")

        # After a reload everything comes back from the server, and the history has it.
        await page.reload()
        row = page.locator("tr.alert", has_text=LEAK_DEVICE)
        await expect(row.locator(".assignee")).to_contain_text("阳光微站", timeout=WAIT_MS)
        await expect(row.locator(".countdown")).to_have_count(0)
        await row.locator("button.act-history").click()
        await expect(page.locator("#history-rows")).to_contain_text(
            "→ 阳光微站: 带灭火器去2号楼3层")
        await page.screenshot(path=str(artifacts / "board-assigned-history.png"), full_page=True)

        db = await connect(stack.dsn, stack.schema, autocommit=True)
        try:
            cur = await db.execute("SELECT assignee, assigned_by, note, source "
                                   "FROM alert_assignments")
            assert await cur.fetchall() == [("阳光微站", "王值班", "带灭火器去2号楼3层",
                                             "console 127.0.0.1")]
            cur = await db.execute("SELECT actor, action FROM alert_events ORDER BY id")
            assert await cur.fetchall() == [("system", "opened"), ("system", "escalated"),
                                            ("王值班", "assigned"), ("王值班", "acknowledged")]
        finally:
            await db.close()

        # Unusual readings (learned anomaly) wait behind the toggle, counted.
        await page.locator("#history-close").click()
        unusual = Detection(ts=time.time(), device_id=LEAK_DEVICE, site="sunshine",
                            hazard="co_anomaly", kind=DetectionKind.ANOMALY,
                            severity=Severity.BLUE, firing=True, metric="co", value=31.0)
        await stack.bus.publish("detections", [(LEAK_DEVICE, encode_detection(unusual))])
        await expect(page.locator("#anomaly-count")).to_have_text("1", timeout=WAIT_MS)
        anomaly_row = page.locator("tr.alert.sev-blue", has_text=LEAK_DEVICE)
        await expect(anomaly_row).to_have_count(0)
        await page.locator("#show-anomalies").check()
        await expect(anomaly_row).to_have_count(1)
        await page.locator("#show-anomalies").uncheck()
        await expect(anomaly_row).to_have_count(0)
    assert problems == []
