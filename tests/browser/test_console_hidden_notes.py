"""The board keeps what care staff wrote about a resident from the fire station, in real
headless Chromium against the console and a real PostgreSQL schema.

Care staff acknowledge and assign a resident's SOS with notes about her health; the duty
officer acknowledges a gas leak with a note. On the board, the fire station sees who acted
on the SOS and when, with "(备注仅护理人员可见 / note visible to care staff only)" where
the notes were, and the gas leak's note as written.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, expect

from console import ConsoleService
from console.users import Role
from shouwang.bus import MemoryBus
from shouwang.store import connect
from tests.browser.stack import log_in
from tests.integration.console_auth import add_user, logged_in
from tests.integration.privacy_seed import privacy_settings, seed
from tests.integration.test_console_stream import running

pytestmark = pytest.mark.integration

WAIT_MS = 15_000  # generous ceiling for a loaded CI box
MARKER = "(备注仅护理人员可见 / note visible to care staff only)"
SOS_NOTE = "已含服硝酸甘油 took nitroglycerin"
ASSIGN_NOTE = "带上她的药盒 bring her pill box"
GAS_NOTE = "已关闭燃气总阀 valve closed"


async def test_fire_station_board_shows_the_marker_instead_of_care_notes(
        browser: BrowserContext, artifacts: Path, pg_dsn: str, db_schema: str) -> None:
    settings = privacy_settings(console={"host": "127.0.0.1", "port": 0})
    db = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        seeded = await seed(db, settings)
        for name, role in (("护理员", Role.CARE), ("值班员", Role.DUTY_OFFICER),
                           ("微站", Role.FIRE_STATION)):
            await add_user(db, name, role, ("s1",))
    finally:
        await db.close()
    problems: list[str] = []
    async with MemoryBus() as bus:
        service = ConsoleService(settings, bus, pg_dsn, schema=db_schema)
        async with running(service), \
                logged_in(service.url, "护理员", "值班员") as (care, duty):
            for client, url, body in (
                    (care, f"/api/alerts/{seeded.sos_alert}/ack", {"note": SOS_NOTE}),
                    (care, f"/api/alerts/{seeded.sos_alert}/assign",
                     {"assignee": "护理员", "note": ASSIGN_NOTE}),
                    (duty, f"/api/alerts/{seeded.gas_alert}/ack", {"note": GAS_NOTE})):
                response = await client.post(url, json=body)
                assert response.status_code == 200, response.text

            page = await browser.new_page()
            page.on("pageerror", lambda e: problems.append(str(e)))
            await log_in(page, service.url, "微站", "/station")
            await page.goto(service.url + "/")
            sos = page.locator("tr.alert", has_text="wear-a").filter(has_text="紧急呼叫")
            await expect(sos).to_have_count(1, timeout=WAIT_MS)
            assignee = sos.locator(".assignee")
            await expect(assignee).to_contain_text("护理员")
            assert await assignee.get_attribute("title") == MARKER

            await sos.locator("button.act-history").click()
            rows = page.locator("#history-rows")
            await expect(rows).to_contain_text("护理员", timeout=WAIT_MS)
            await expect(rows.locator("tr", has_text="确认")).to_contain_text(MARKER)
            await expect(rows.locator("tr", has_text="指派")).to_contain_text(MARKER)
            assert "nitroglycerin" not in await page.content()
            await page.screenshot(path=str(artifacts / "board-hidden-notes.png"),
                                  full_page=True)
            await page.locator("#history-close").click()

            gas = page.locator("tr.alert", has_text="gas-1")
            await gas.locator("button.act-history").click()
            await expect(rows).to_contain_text(GAS_NOTE, timeout=WAIT_MS)
            await expect(rows).not_to_contain_text(MARKER)
    assert problems == []
