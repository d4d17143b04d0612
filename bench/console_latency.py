"""Console latency: MQTT publish of a hazardous reading -> the alert's row in 20 browsers.

    .venv/bin/python -m bench.console_latency [--browsers 20] [--samples 30]

The pipeline runs in this process as the embedded default wires it (ingest with
DatabaseHop on a MemoryBus, detectors, alerting, console) against the real PostgreSQL and
Mosquitto of scripts/services.sh. Debian's headless Chromium (Playwright) opens
--browsers tabs of the duty board, all logged in. Each sample is a fresh gas device that
publishes 62 %LEL (a red alert); the start is the moment just before the QoS 1 publish, the
end is when a MutationObserver in each tab first sees that device's row (Date.now(), same
host clock). A few warm-up samples are not counted. The last line is the headline.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
import uuid
from typing import Any

import numpy as np
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from playwright.async_api import Page, async_playwright
from psycopg import sql

from alerting.service import AlertingService
from bench._services import host_port, service_env
from config.settings import load
from console.service import ConsoleService
from console.users import Role, create_user
from detectors.service import DetectorService
from ingest import DatabaseHop
from shouwang.bus import MemoryBus
from shouwang.store import ReadingStore, connect
from shouwang.wiring import ServiceRunner, ingest_service, mqtt_source, prepare_store

log = logging.getLogger("bench.console_latency")

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-background-timer-throttling", "--disable-renderer-backgrounding"]
PASSWORD = "bench-password-123"
WARM_UP = 3
# Stamps the first time each device's alert row is in the page.
OBSERVER = """
window.__seen = {};
const mark = () => {
  for (const row of document.querySelectorAll("tr.alert[data-device-id]")) {
    if (!(row.dataset.deviceId in window.__seen)) window.__seen[row.dataset.deviceId] = Date.now();
  }
};
document.addEventListener("DOMContentLoaded", () => {
  new MutationObserver(mark).observe(document.body, {childList: true, subtree: true});
  mark();
});
"""


class Publisher:
    """One MQTT connection for every sample: connection set-up is not part of the latency."""

    def __init__(self, address: tuple[str, int]) -> None:
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"bench-{uuid.uuid4().hex[:8]}")
        self._client.connect(*address)
        self._client.loop_start()

    def publish(self, topic: str, payload: bytes) -> float:
        started = time.time()
        self._client.publish(topic, payload, qos=1).wait_for_publish(10)
        return started

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


async def _open_board(page: Page, base: str) -> None:
    await page.goto(base + "/login")
    await page.fill("#name", "bench")
    await page.fill("#password", PASSWORD)
    await page.click("#login-submit")
    await page.wait_for_url(base + "/")
    await page.wait_for_selector("#link.link-up", timeout=30_000)


async def measure(browsers: int, samples: int, spacing_s: float) -> list[float]:
    env = service_env()
    dsn = env["SHOUWANG_TEST_PG_DSN"]
    mqtt_addr = host_port(env["SHOUWANG_TEST_MQTT"])
    run = f"bench_console_{uuid.uuid4().hex[:6]}"
    root = f"{run}/v1"
    total = samples + WARM_UP
    settings = load(
        None,
        sites=[{"id": "bench", "name": "基准小区"}],
        devices=[{"id": f"leak-{n}", "type": "gas", "site": "bench", "building": "1号楼",
                  "room": f"R{n}", "report_interval_s": 600} for n in range(total)],
        # data_dir: the first admin's password file goes here, not into .shouwang/.
        database={"dsn": dsn, "schema_name": run,
                  "data_dir": tempfile.mkdtemp(prefix="shouwang-bench-") + "/pg"},
        mqtt={"host": mqtt_addr[0], "port": mqtt_addr[1], "client_id": f"{run}-ingest",
              "topic_root": root},
        console={"host": "127.0.0.1", "port": 0},
        alerting={"receivers": [], "routes": []},
        simulator={"enabled": False}, sink={"enabled": False},
    )
    await prepare_store(dsn, settings)
    conn = await connect(dsn, run, autocommit=True)
    await create_user(conn, name="bench", password=PASSWORD, role=Role.VIEWER, sites=["*"])
    latencies: list[float] = []
    stop = asyncio.Event()
    try:
        async with MemoryBus() as bus, ReadingStore(dsn, run) as store, \
                mqtt_source(settings, *mqtt_addr) as source:
            console = ConsoleService(settings, bus, dsn, schema=run)
            runner = ServiceRunner(stop)
            runner.add("ingest", ingest_service(settings, source, DatabaseHop(store, bus)).run)
            runner.add("detectors", DetectorService(settings, bus).run)
            runner.add("alerting", AlertingService(settings, bus, dsn, schema=run).run)
            runner.add("console", console.run)
            running = asyncio.create_task(runner.run(), name="bench.stack")
            publisher = Publisher(mqtt_addr)
            try:
                await asyncio.wait_for(console.ready.wait(), 30)
                latencies = await _drive(console.url, browsers, total, spacing_s, publisher,
                                         root)
            finally:
                publisher.close()
                stop.set()
                await running
    finally:
        await conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(run)))
        await conn.close()
    return latencies


async def _drive(base: str, browsers: int, total: int, spacing_s: float,
                 publisher: Publisher, root: str) -> list[float]:
    latencies: list[float] = []
    async with async_playwright() as playwright:
        # One context per board: Chromium allows 6 connections per host per profile, and
        # every board holds one open for its live stream.
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                   args=FLAGS)
        try:
            pages = []
            for _ in range(browsers):
                context = await browser.new_context()
                await context.add_init_script(OBSERVER)
                pages.append(await context.new_page())
            for page in pages:
                await _open_board(page, base)
            log.info("%d boards open and live", browsers)
            for n in range(total):
                device = f"leak-{n}"
                payload = orjson.dumps({"ts": time.time(), "seq": 1,
                                        "values": {"lel": 62.0}})
                started = await asyncio.to_thread(
                    publisher.publish, f"{root}/bench/{device}/telemetry", payload)
                seen: list[Any] = await asyncio.gather(*(
                    page.wait_for_function("d => window.__seen && window.__seen[d]",
                                           arg=device, timeout=30_000)
                    for page in pages))
                stamps = [float(await handle.json_value()) / 1000 for handle in seen]
                if n >= WARM_UP:
                    latencies += [stamp - started for stamp in stamps]
                await asyncio.sleep(spacing_s)
        finally:
            await browser.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--browsers", type=int, default=20)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--spacing-s", type=float, default=0.5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
    log.setLevel(logging.INFO)
    latencies = np.array(asyncio.run(measure(args.browsers, args.samples, args.spacing_s)))
    ms = latencies * 1000
    log.info("samples=%d (%d alerts x %d browsers)", len(ms), args.samples, args.browsers)
    print(f"publish -> row in browser, {args.browsers} browsers: "
          f"p50 {np.percentile(ms, 50):.0f} ms, p90 {np.percentile(ms, 90):.0f} ms, "
          f"p99 {np.percentile(ms, 99):.0f} ms, max {ms.max():.0f} ms, n={len(ms)}")


if __name__ == "__main__":
    main()
