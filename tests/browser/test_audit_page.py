"""The admin's audit page in real headless Chromium: the config change and the
acknowledgement are listed, the category filter works, and a viewer is refused. Also: a
fire-station user's device page of a resident's wearable offers no heart-rate chart."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, expect

from console import ConsoleService
from console.users import Role
from shouwang.audit import record_config
from shouwang.bus import MemoryBus
from shouwang.store import connect
from tests.browser.stack import log_in
from tests.integration.console_auth import add_user
from tests.integration.privacy_seed import NOW, privacy_settings, seed
from tests.integration.test_console_stream import running

pytestmark = pytest.mark.integration

WAIT_MS = 15_000


async def test_admin_reads_the_trail_viewer_is_refused_station_sees_no_heart_rate(
        browser: BrowserContext, artifacts: Path, pg_dsn: str, db_schema: str) -> None:
    settings = privacy_settings(console={"host": "127.0.0.1", "port": 0})
    db = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        await seed(db, settings)
        await record_config(db, settings, actor="os:ops@host", now=NOW - 900)
        changed = privacy_settings(console={"host": "127.0.0.1", "port": 0},
                                   privacy={"health_retention_days": 14})
        await record_config(db, changed, actor="os:ops@host", now=NOW - 800)
        for name, role in (("管理员", Role.ADMIN), ("访客", Role.VIEWER),
                           ("消防站", Role.FIRE_STATION)):
            await add_user(db, name, role, ("s1",))
    finally:
        await db.close()
    problems: list[str] = []
    async with MemoryBus() as bus:
        service = ConsoleService(settings, bus, pg_dsn, schema=db_schema)
        async with running(service):
            base = service.url
            page = await browser.new_page()
            page.on("pageerror", lambda e: problems.append(str(e)))
            await log_in(page, base, "管理员", "/")
            await page.goto(base + "/audit")
            rows = page.locator("#audit-rows tr")
            await expect(rows.filter(has_text="config_changed")).to_have_count(1,
                                                                               timeout=WAIT_MS)
            await expect(rows.filter(has_text="config_changed")).to_contain_text(
                "privacy.health_retention_days: 30 → 14")
            await expect(rows.filter(has_text="王值班")).to_contain_text("acknowledged")
            await page.select_option("#category", "config")
            await expect(rows).to_have_count(2, timeout=WAIT_MS)
            await page.screenshot(path=str(artifacts / "audit.png"), full_page=True)
            await page.context.clear_cookies()

            await log_in(page, base, "访客", "/")
            await page.goto(base + "/audit")
            await expect(page.locator("#problem")).to_contain_text("Admins only",
                                                                   timeout=WAIT_MS)
            await expect(rows).to_have_count(0)
            await page.context.clear_cookies()

            await log_in(page, base, "消防站", "/station")  # its own landing page
            await expect(page.locator("body")).to_contain_text("心率过高", timeout=WAIT_MS)
            await expect(page.locator("body")).not_to_contain_text("心率 160")
            await page.goto(base + "/device?id=wear-a")
            metrics = page.locator("#metric option")
            await expect(metrics.first).to_be_attached(timeout=WAIT_MS)
            offered = await metrics.evaluate_all("options => options.map(o => o.value)")
            assert "heart_rate" not in offered and "battery" in offered
    assert problems == []
