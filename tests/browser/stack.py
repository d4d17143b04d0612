"""A running Shouwang stack for browser tests, all in this process.

MQTT (real Mosquitto) -> ingest -> detectors -> alerting -> console on an in-memory bus and
a fresh PostgreSQL schema, with the users 王值班 (duty officer) and 阳光微站 (fire station).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from playwright.async_api import Page, expect

from alerting.service import AlertingService
from config.settings import Settings, load
from console.service import ConsoleService
from console.users import Role
from detectors.service import DetectorService
from ingest import DatabaseHop
from shouwang.bus import MemoryBus
from shouwang.sink import LocalSink
from shouwang.store import ReadingStore, connect
from shouwang.wiring import ServiceRunner, ingest_service, mqtt_source, prepare_store
from tests.integration.console_auth import PASSWORD, add_user
from tests.integration.e2e import community, services_running
from tests.integration.mqtt_util import publish_all

__all__ = ["XSS_DEVICE", "XSS_NAME", "Stack", "log_in", "running_stack"]

XSS_DEVICE = "xss-smoke"
XSS_NAME = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


@dataclass
class Stack:
    settings: Settings
    console: ConsoleService
    mqtt: tuple[str, int]
    root: str
    dsn: str
    schema: str
    bus: MemoryBus

    def publish(self, device: str, values: dict[str, float], ago_s: float = 0.0) -> None:
        now = time.time()
        payload = orjson.dumps({"ts": now - ago_s, "seq": int((now - ago_s) * 1000),
                                "values": values})
        assert publish_all(self.mqtt, [(f"{self.root}/sunshine/{device}/telemetry",
                                        payload)]) == 1

    async def status(self, device: str) -> list[str]:
        conn = await connect(self.dsn, self.schema, autocommit=True)
        try:
            cur = await conn.execute("SELECT status FROM alerts WHERE device_id = %s", (device,))
            return [row[0] for row in await cur.fetchall()]
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def running_stack(pg_dsn: str, schema: str, mqtt_addr: tuple[str, int], run_id: str,
                        adjust: Callable[[dict[str, Any]], None] | None = None,
                        ) -> AsyncIterator[Stack]:
    """``adjust`` may change the YAML-shaped settings before they are loaded."""
    stop = asyncio.Event()
    sink = LocalSink("127.0.0.1", 0)
    sink_task = asyncio.create_task(sink.run(stop), name="test.sink")
    await asyncio.wait_for(sink.ready.wait(), 10)
    shape = community(sink.port)
    shape["sites"][0]["address"] = "上海市浦东新区阳光路 88 号"
    shape["devices"].append({"id": XSS_DEVICE, "type": "smoke", "site": "sunshine",
                             "name": XSS_NAME, "building": "5号楼", "report_interval_s": 600})
    if adjust is not None:
        adjust(shape)
    root = f"{run_id}/v1"
    settings = load(None, **shape,
                    database={"dsn": pg_dsn, "schema_name": schema},
                    mqtt={"host": mqtt_addr[0], "port": mqtt_addr[1],
                          "client_id": f"{run_id}-ingest", "topic_root": root},
                    console={"host": "127.0.0.1", "port": 0})
    await prepare_store(pg_dsn, settings)
    db = await connect(pg_dsn, schema, autocommit=True)
    try:
        await add_user(db, "王值班", Role.DUTY_OFFICER, ("sunshine",))
        await add_user(db, "阳光微站", Role.FIRE_STATION, ("sunshine",))
    finally:
        await db.close()
    try:
        async with MemoryBus() as bus, ReadingStore(pg_dsn, schema) as store, \
                mqtt_source(settings, *mqtt_addr) as source:
            console = ConsoleService(settings, bus, pg_dsn, schema=schema)
            runner = ServiceRunner(stop)
            runner.add("ingest", ingest_service(settings, source, DatabaseHop(store, bus)).run)
            runner.add("detectors", DetectorService(settings, bus).run)
            runner.add("alerting", AlertingService(settings, bus, pg_dsn, schema=schema).run)
            runner.add("console", console.run)
            async with services_running(runner, stop, "test.stack"):
                await asyncio.wait_for(console.ready.wait(), 20)
                yield Stack(settings, console, mqtt_addr, root, pg_dsn, schema, bus)
    finally:
        stop.set()
        await sink_task


async def log_in(page: Page, base: str, name: str, landing: str) -> None:
    await page.goto(base + "/")
    await expect(page).to_have_url(base + "/login")
    await page.fill("#name", name)
    await page.fill("#password", PASSWORD)
    await page.click("#login-submit")
    await expect(page).to_have_url(base + landing)
