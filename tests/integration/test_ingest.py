"""Ingest against real Mosquitto and PostgreSQL: bad input is kept with its reason."""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson
import pytest

from ingest import DatabaseHop, IngestService, MqttSource
from shouwang.bus import MemoryBus
from shouwang.catalog import DeviceType
from shouwang.models import Device, Site
from shouwang.store import ReadingStore, connect
from shouwang.store.registry import sync_registry
from tests.integration.mqtt_util import publish_all

pytestmark = pytest.mark.integration

DEVICES = {
    "gas-1": Device(id="gas-1", type=DeviceType.GAS, site="north"),
    "water-1": Device(id="water-1", type=DeviceType.WATER, site="north"),
}


async def _count(dsn: str, schema: str, query: str) -> int:
    conn = await connect(dsn, schema, autocommit=True)
    try:
        cur = await conn.execute(query)
        row = await cur.fetchone()
        return int(row[0]) if row else 0
    finally:
        await conn.close()


async def _wait_for(dsn: str, schema: str, query: str, expected: int,
                    timeout_s: float = 20.0) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        got = await _count(dsn, schema, query)
        if got >= expected or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def running_ingest(pg_dsn: str, db_schema: str, mqtt_addr: tuple[str, int], root: str):
    conn = await connect(pg_dsn, db_schema)
    await sync_registry(conn, [Site(id="north", name="North")], DEVICES.values())
    await conn.commit()
    await conn.close()
    stop = asyncio.Event()
    async with MemoryBus() as bus, ReadingStore(pg_dsn, db_schema) as store, \
            MqttSource(host=mqtt_addr[0], port=mqtt_addr[1], client_id=f"{root}-ingest",
                       topic_root=root) as source:
        service = IngestService(source, DatabaseHop(store, bus), DEVICES, topic_root=root,
                                max_payload_bytes=4096, max_readings_per_message=50,
                                batch_max_messages=1000, flush_ms=20)
        task = asyncio.create_task(service.run(stop), name="test.ingest")
        try:
            yield service
        finally:
            stop.set()
            await task


BAD = {
    "unknown_device": ("north/ghost-9/telemetry", b'{"values": {"lel": 1}}'),
    "site_mismatch": ("south/gas-1/telemetry", b'{"values": {"lel": 1}}'),
    "malformed_json": ("north/gas-1/telemetry", b'{"values": {"lel": 1'),
    "wrong_type": ("north/gas-1/telemetry", b'{"values": {"lel": "high"}}'),
    "non_finite": ("north/gas-1/telemetry", b'{"values": {"lel": NaN}}'),
    "oversized": ("north/gas-1/telemetry",
                  b'{"values": {"lel": 1}, "pad": "' + b"x" * 5000 + b'"}'),
    "bad_timestamp": ("north/gas-1/telemetry", b'{"ts": "yesterday", "values": {"lel": 1}}'),
    "unknown_event": ("north/gas-1/event", b'{"event": "party"}'),
    "bad_status": ("north/gas-1/status", b'sleepy'),
    "bad_topic": ("north/gas-1/telemtry", b'{"values": {"lel": 1}}'),
}


async def test_each_bad_kind_is_rejected_with_its_reason_and_ingest_keeps_running(
        pg_dsn: str, db_schema: str, mqtt_addr: tuple[str, int], run_id: str) -> None:
    root = f"{run_id}/v1"
    async with running_ingest(pg_dsn, db_schema, mqtt_addr, root) as service:
        now = time.time()
        good = [(f"{root}/north/gas-1/telemetry",
                 orjson.dumps({"ts": now + i, "seq": i, "values": {"lel": 1.0, "co": 2.0}}))
                for i in range(5)]
        bad = [(f"{root}/{topic}", payload) for topic, payload in BAD.values()]
        # Bad input first, then good input: the good readings must still land.
        assert publish_all(mqtt_addr, bad + good) == len(bad) + len(good)
        rows = await _wait_for(pg_dsn, db_schema, "SELECT count(*) FROM readings", 10)
        rejected = await _wait_for(pg_dsn, db_schema, "SELECT count(*) FROM rejects", len(BAD))
        assert rows == 10
        assert rejected == len(BAD)
        conn = await connect(pg_dsn, db_schema, autocommit=True)
        cur = await conn.execute("SELECT reason, topic, payload FROM rejects")
        stored = {reason: (topic, bytes(payload)) for reason, topic, payload in
                  await cur.fetchall()}
        await conn.close()
        assert set(stored) == set(BAD)
        for reason, (topic, payload) in BAD.items():
            assert stored[reason][0] == f"{root}/{topic}"
            assert stored[reason][1] == payload[:4096], "the raw payload is kept for inspection"
        assert service.rejects == len(BAD)


async def test_redelivered_readings_land_once(
        pg_dsn: str, db_schema: str, mqtt_addr: tuple[str, int], run_id: str) -> None:
    root = f"{run_id}/v1"
    message = (f"{root}/north/water-1/telemetry",
               orjson.dumps([{"ts": "2026-11-26T02:40:00.123Z", "seq": 1, "values": {"level": 0.1}},
                             {"ts": 1795660801123, "seq": 2, "values": {"level": 0.2}}]))
    async with running_ingest(pg_dsn, db_schema, mqtt_addr, root):
        assert publish_all(mqtt_addr, [message, message, message]) == 3
        assert await _wait_for(pg_dsn, db_schema, "SELECT count(*) FROM readings", 2) == 2
        await asyncio.sleep(0.5)
    assert await _count(pg_dsn, db_schema, "SELECT count(*) FROM readings") == 2
    assert await _count(pg_dsn, db_schema,
                        "SELECT count(*) FROM devices WHERE id = 'water-1' AND status = 'online'"
                        ) == 1
