"""A payload cannot claim another device: identity comes from the topic, which the ACL binds.

The broker guarantees a device publishes only under ``{site}/{its own id}``; ingest takes the
device and site from that topic and ignores any ``device_id``/``site`` inside the payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator

import orjson
import pytest

from ingest import DatabaseHop, IngestService, MqttSource
from ingest.decoder import Decoder
from ingest.models import RawMessage
from shouwang.bus import MemoryBus
from shouwang.catalog import DeviceType
from shouwang.models import Device, ReadingKind, Site
from shouwang.store import ReadingStore, connect
from shouwang.store.registry import sync_registry
from tests.security.conftest import AuthBroker
from tests.security.mqtt_client import Client

NOW = 1795660800.0
CLAIMS = {"device_id": "g2", "deviceId": "g2", "device": "g2", "id": "g2", "site": "s2",
          "site_id": "s2", "topic": "shouwang/v1/s2/g2/telemetry"}


def _decoder() -> Decoder:
    return Decoder({"g1": Device(id="g1", type=DeviceType.GAS, site="s1"),
                    "g2": Device(id="g2", type=DeviceType.WEARABLE, site="s2")})


@pytest.mark.parametrize(("channel", "payload"), [
    ("telemetry", {**CLAIMS, "values": {"lel": 3.0}}),
    ("telemetry", [{**CLAIMS, "values": {"lel": 3.0}}, {"device_id": "g2", "values": {"co": 1}}]),
    ("event", {**CLAIMS, "event": "sos", "values": {"heart_rate": 90}}),
    ("status", {**CLAIMS, "status": "offline"}),
])
def test_identity_claims_inside_a_payload_are_ignored(channel: str, payload: object) -> None:
    result = _decoder().decode(RawMessage(topic=f"shouwang/v1/s1/g1/{channel}",
                                          payload=orjson.dumps(payload), received_at=NOW))
    assert result.reject is None
    assert {(r.device_id, r.site) for r in result.readings} == {("g1", "s1")}
    if channel == "status":
        assert [(r.kind, r.value) for r in result.readings] == [(ReadingKind.STATUS, 0.0)]


def test_a_topic_naming_a_device_on_another_site_is_rejected() -> None:
    # Without an ACL this is the last line: the registry's site must match the topic's.
    result = _decoder().decode(RawMessage(topic="shouwang/v1/s1/g2/telemetry",
                                          payload=b'{"values": {"heart_rate": 70}}',
                                          received_at=NOW))
    assert result.reject is not None and result.reject.reason == "site_mismatch"


@contextlib.asynccontextmanager
async def _ingest(pg_dsn: str, schema: str, broker: AuthBroker, run_id: str,
                  devices: dict[str, Device]) -> AsyncIterator[None]:
    conn = await connect(pg_dsn, schema)
    await sync_registry(conn, [Site(id=s, name=s) for s in {d.site for d in devices.values()}],
                        devices.values())
    await conn.commit()
    await conn.close()
    stop = asyncio.Event()
    async with MemoryBus() as bus, ReadingStore(pg_dsn, schema) as store, \
            MqttSource(host=broker.host, port=broker.port, client_id=f"{run_id}-ingest",
                       topic_root="shouwang/v1", username="test-ingest",
                       password=broker.passwords["test-ingest"]) as source:
        service = IngestService(source, DatabaseHop(store, bus), devices,
                                topic_root="shouwang/v1", max_payload_bytes=4096,
                                max_readings_per_message=50, batch_max_messages=1000,
                                flush_ms=20)
        task = asyncio.create_task(service.run(stop), name="test.ingest")
        try:
            yield
        finally:
            stop.set()
            await task


@pytest.mark.integration
async def test_through_broker_and_ingest_a_device_lands_only_as_itself(
        pg_dsn: str, db_schema: str, mqtt_auth: AuthBroker, run_id: str) -> None:
    devices = {user: Device(id=user, type=DeviceType.GAS, site=site)
               for user, site in mqtt_auth.sites.items()}
    base = random.randrange(1, 2**40)  # tells this run's rows from any concurrent run's
    now = time.time()
    async with _ingest(pg_dsn, db_schema, mqtt_auth, run_id, devices):
        with Client(mqtt_auth.host, mqtt_auth.port, username="test-dev-a1",
                    password=mqtt_auth.passwords["test-dev-a1"]) as device:
            for i in range(5):
                forged = {"device_id": "test-dev-a2", "site": "test-site-b", "seq": base + i,
                          "ts": now + i, "values": {"lel": float(i)}}
                # Through its own topic the claim is ignored; through another's, the ACL drops it.
                device.publish("shouwang/v1/test-site-a/test-dev-a1/telemetry",
                               orjson.dumps(forged))
                device.publish("shouwang/v1/test-site-a/test-dev-a2/telemetry",
                               orjson.dumps({**forged, "seq": base + 100 + i}))
        deadline = time.monotonic() + 20
        rows: list[tuple[str, int]] = []
        while len(rows) < 5 and time.monotonic() < deadline:
            conn = await connect(pg_dsn, db_schema, autocommit=True)
            try:
                cur = await conn.execute(
                    "SELECT device_id, seq FROM readings WHERE seq BETWEEN %s AND %s "
                    "ORDER BY seq", (base, base + 200))
                rows = [(str(d), int(s)) for d, s in await cur.fetchall()]
            finally:
                await conn.close()
            await asyncio.sleep(0.1)
        # Let anything forged that slipped through arrive before the final look.
        await asyncio.sleep(0.5)
    conn = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        cur = await conn.execute("SELECT device_id, seq FROM readings WHERE seq BETWEEN %s AND %s"
                                 " ORDER BY seq", (base, base + 200))
        rows = [(str(d), int(s)) for d, s in await cur.fetchall()]
    finally:
        await conn.close()
    assert rows == [("test-dev-a1", base + i) for i in range(5)]
