"""Replayed old messages over real Mosquitto, ingest, PostgreSQL, detectors and alerting:
a captured gas alarm published again is stored once and raises nothing a second time, and
a capture older than the horizon is rejected as ``stale``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import orjson
import pytest

from alerting.service import AlertingService
from config.settings import Settings, load
from detectors.service import DetectorService
from ingest import DatabaseHop, IngestService
from shouwang.bus import MemoryBus
from shouwang.codec import decode_detection
from shouwang.models import AlertStatus, Detection
from shouwang.sink import LocalSink
from shouwang.store import ReadingStore, connect
from shouwang.store.alerts import transition
from shouwang.wiring import ServiceRunner, ingest_service, mqtt_source, prepare_store
from tests.integration.db_query import db_scalar
from tests.integration.e2e import eventually, services_running
from tests.integration.mqtt_util import publish_all

pytestmark = pytest.mark.integration

SITE = "sunshine"
DEVICE = "gas-1"
NORMAL = {"lel": 1.0, "battery": 90.0}


@contextlib.asynccontextmanager
async def _stack(settings: Settings, pg_dsn: str,
                 schema: str) -> AsyncIterator[tuple[IngestService, list[Detection]]]:
    """Ingest, detectors and alerting on one in-process bus; also every detection made."""
    stop = asyncio.Event()
    detections: list[Detection] = []
    await prepare_store(pg_dsn, settings)
    async with MemoryBus() as bus, ReadingStore(pg_dsn, schema) as store, \
            mqtt_source(settings, settings.mqtt.host or "", settings.mqtt.port) as source:
        ingest = ingest_service(settings, source, DatabaseHop(store, bus), dsn=pg_dsn)

        async def watch(stop: asyncio.Event) -> None:
            async with bus.consumer(["detections"], "test-watch") as consumer:
                while not stop.is_set():
                    for message in await consumer.batch(100, 0.1):
                        detections.append(decode_detection(message.value))

        runner = ServiceRunner(stop)
        runner.add("ingest", ingest.run)
        runner.add("detectors", DetectorService(settings, bus).run)
        runner.add("alerting", AlertingService(settings, bus, pg_dsn, schema=schema).run)
        runner.add("watch", watch)
        async with services_running(runner, stop, "test.replay-stack"):
            yield ingest, detections


async def test_a_replayed_alarm_is_stored_once_and_raises_nothing_again(
        pg_dsn: str, db_schema: str, mqtt_addr: tuple[str, int], run_id: str,
        sink: LocalSink) -> None:
    settings = load(
        None, database={"dsn": pg_dsn, "schema_name": db_schema},
        mqtt={"host": mqtt_addr[0], "port": mqtt_addr[1], "client_id": f"{run_id}-ingest",
              "topic_root": f"{run_id}/v1"},
        sites=[{"id": SITE, "name": "阳光小区"}],
        devices=[{"id": DEVICE, "type": "gas", "site": SITE, "building": "2号楼",
                  "report_interval_s": 600}],
        alerting={"receivers": [{"name": "sms", "channel": "sms",
                                 "urls": [f"json://127.0.0.1:{sink.port}/sms"]}],
                  "routes": [{"hazards": ["*"], "min_severity": "orange",
                              "receivers": ["sms"]}]})
    topic = f"{run_id}/v1/{SITE}/{DEVICE}/telemetry"
    base = time.time() - 1000

    def message(seq: int, ts: float, **values: float) -> tuple[str, bytes]:
        return topic, orjson.dumps({"ts": ts, "seq": seq, "values": {**NORMAL, **values}})

    alarm = message(3, base + 3, lel=55.0)  # the capture an attacker keeps
    async with _stack(settings, pg_dsn, db_schema) as (ingest, detections):
        first = [message(n, base + n) for n in range(3)] + [alarm] + \
                [message(n, base + n) for n in range(4, 8)]
        assert publish_all(mqtt_addr, first) == len(first)

        async def alerted() -> bool:
            return len(sink.received("sms")) == 1
        await eventually(alerted, 30, "the gas alert's message")
        alert_id = await db_scalar(pg_dsn, db_schema, "SELECT id FROM alerts WHERE hazard = "
                                   "'gas'")
        conn = await connect(pg_dsn, db_schema, autocommit=True)
        try:
            await transition(conn, alert_id, AlertStatus.RESOLVED, actor="duty", source="test",
                             note="valve shut", now=time.time())
        finally:
            await conn.close()

        # The device goes on reporting; ten minutes later the capture is played again.
        later = [message(n, base + 600 + n) for n in range(8, 12)]
        assert publish_all(mqtt_addr, later) == len(later)
        assert publish_all(mqtt_addr, [alarm, alarm]) == 2
        # A marker behind the replay on the same device: a low battery (blue, not routed).
        marker = message(12, base + 613, battery=10.0)
        assert publish_all(mqtt_addr, [marker]) == 1

        async def marker_seen() -> bool:
            return any(d.hazard == "battery_low" and d.firing for d in detections)
        await eventually(marker_seen, 30, "the marker's detection")

        assert ingest.messages == len(first) + len(later) + 3  # the replay reached ingest
        rows = await db_scalar(pg_dsn, db_schema, "SELECT count(*) FROM readings")
        distinct_messages = len(first) + len(later) + 1  # the marker; not the replay
        assert rows == distinct_messages * len(NORMAL), "the replay added no row"
        assert await db_scalar(pg_dsn, db_schema, "SELECT count(*) FROM readings WHERE seq = 3 "
                               "AND metric = 'lel'") == 1
        gas = [d for d in detections if d.hazard == "gas" and d.firing]
        assert len(gas) == 1, gas
        assert await db_scalar(pg_dsn, db_schema, "SELECT count(*) FROM alerts WHERE hazard = "
                               "'gas'") == 1
        assert await db_scalar(pg_dsn, db_schema, "SELECT status FROM alerts WHERE id = %s",
                               alert_id) == "resolved"
        assert len(sink.received("sms")) == 1

        # A capture older than the horizon (7 days) is not even stored: a stale reject.
        ancient = message(2, time.time() - 8 * 86400, lel=55.0)
        assert publish_all(mqtt_addr, [ancient]) == 1

        async def stale_rejected() -> bool:
            return await db_scalar(pg_dsn, db_schema, "SELECT count(*) FROM rejects WHERE "
                                   "reason = 'stale' AND device_id = %s", DEVICE) == 1
        await eventually(stale_rejected, 30, "the stale reject")
        assert await db_scalar(pg_dsn, db_schema, "SELECT count(*) FROM readings") == rows
