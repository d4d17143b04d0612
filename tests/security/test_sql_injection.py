"""SQL injection through every text field that reaches the database: stored verbatim, no effect.

Each hostile string goes in through the real path (registry sync, the reading store's COPY
and rejects insert, the alert upsert and lifecycle, the console API with a logged-in user)
and must come back byte for byte; a canary table and the schema's tables and row counts
show that nothing else ran.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from psycopg import AsyncConnection

from config.settings import DeviceConfig, Settings, SiteConfig
from console import create_app
from console.users import Role
from shouwang.bus import MemoryBus
from shouwang.catalog import DeviceType
from shouwang.models import (
    AlertStatus,
    Detection,
    DetectionKind,
    Device,
    Location,
    Reading,
    Reject,
    Severity,
    Site,
)
from shouwang.store import ReadingStore, connect
from shouwang.store.alerts import list_events, transition, upsert_live
from shouwang.store.registry import sync_registry
from tests.integration.console_app import asgi_client, open_alert
from tests.integration.console_auth import add_user, log_in

pytestmark = pytest.mark.integration

NOW = 1_795_660_800.0
INJECTIONS = (
    "'; DROP TABLE canary; --",
    "\"; DROP TABLE canary; --",
    "' OR '1'='1",
    "1); DELETE FROM canary; --",
    "Robert'); DROP TABLE canary;--",
    "$$; DROP TABLE canary; $$",
    "$tag$ DELETE FROM canary $tag$",
    "\\'; SELECT pg_sleep(10); --",
    "x' UNION SELECT current_user, version() --",
    "%s %(name)s {} {0} %%",
    "ʼ; DROP TABLE canary; --",
    "E'\\x27'; TRUNCATE canary; --",
    "/* */ ; COPY canary TO PROGRAM 'true'; --",
    "\\.\n'; DROP TABLE canary; --\t\r\n",  # COPY's end-of-data marker and escapes
    "王值班'; --",
)


async def _snapshot(db: AsyncConnection[Any], schema: str) -> dict[str, int]:
    # Tables only: a view over readings (TimescaleDB's readings_1m) changes with them.
    cur = await db.execute("SELECT table_name FROM information_schema.tables "
                           "WHERE table_schema = %s AND table_type = 'BASE TABLE' "
                           "ORDER BY table_name", (schema,))
    tables = [str(row[0]) for row in await cur.fetchall()]
    counts: dict[str, int] = {}
    for table in tables:
        cur = await db.execute(f'SELECT count(*) FROM "{table}"')  # names from the catalog
        row = await cur.fetchone()
        counts[table] = int(row[0]) if row else -1
    return counts


@pytest.fixture
async def db(pg_dsn: str, db_schema: str) -> AsyncIterator[AsyncConnection[Any]]:
    conn = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        await conn.execute("CREATE TABLE canary (id int PRIMARY KEY, note text)")
        await conn.execute("INSERT INTO canary VALUES (1, 'still here')")
        yield conn
    finally:
        await conn.close()


async def _canary_intact(db: AsyncConnection[Any]) -> None:
    cur = await db.execute("SELECT id, note FROM canary")
    assert await cur.fetchall() == [(1, "still here")]


async def test_registry_fields(db: AsyncConnection[Any], db_schema: str) -> None:
    before = await _snapshot(db, db_schema)
    sites = [Site(id=f"s{i}", name=text, address=text) for i, text in enumerate(INJECTIONS)]
    devices = [Device(id=f"d{i}", type=DeviceType.GAS, site=f"s{i}", name=text,
                      location=Location(building=text, unit=text, floor=text, room=text))
               for i, text in enumerate(INJECTIONS)]
    await sync_registry(db, sites, devices)
    cur = await db.execute("SELECT s.name, s.address, d.name, d.building, d.unit, d.floor, "
                           "d.room FROM devices d JOIN sites s ON s.id = d.site ORDER BY "
                           "length(d.id), d.id")
    assert await cur.fetchall() == [(t,) * 7 for t in INJECTIONS]
    after = await _snapshot(db, db_schema)
    assert after == {**before, "sites": before["sites"] + len(INJECTIONS),
                     "devices": before["devices"] + len(INJECTIONS)}
    await _canary_intact(db)


async def test_reading_and_reject_fields(db: AsyncConnection[Any], pg_dsn: str,
                                        db_schema: str) -> None:
    await sync_registry(db, [Site(id="s1", name="s1")],
                        [Device(id="d1", type=DeviceType.GAS, site="s1")])
    before = await _snapshot(db, db_schema)
    # Metric names come straight from payload keys; topics and details from the wire.
    readings = [Reading(ts=NOW + i, device_id="d1", site="s1", metric=text, value=float(i),
                        received_at=NOW) for i, text in enumerate(INJECTIONS)]
    rejects = [Reject(received_at=NOW, topic=f"shouwang/v1/{text}/x/telemetry", reason=text,
                      payload=text.encode(), device_id=text, detail=text) for text in INJECTIONS]
    async with ReadingStore(pg_dsn, db_schema) as store:
        await store.write(readings, rejects)
    cur = await db.execute("SELECT metric FROM readings ORDER BY ts")
    assert [row[0] for row in await cur.fetchall()] == list(INJECTIONS)
    cur = await db.execute("SELECT topic, reason, payload, device_id, detail FROM rejects "
                           "ORDER BY id")
    assert [(t, r, bytes(p), d, x) for t, r, p, d, x in await cur.fetchall()] == [
        (f"shouwang/v1/{t}/x/telemetry", t, t.encode(), t, t) for t in INJECTIONS]
    after = await _snapshot(db, db_schema)
    assert after == {**before, "readings": before["readings"] + len(INJECTIONS),
                     "rejects": before["rejects"] + len(INJECTIONS)}
    await _canary_intact(db)


async def test_alert_and_audit_fields(db: AsyncConnection[Any], db_schema: str) -> None:
    await sync_registry(db, [Site(id="s1", name="s1")],
                        [Device(id="d1", type=DeviceType.GAS, site="s1")])
    for i, text in enumerate(INJECTIONS):
        detection = Detection(ts=NOW, device_id="d1", site="s1", hazard=f"h{i}{text}",
                              kind=DetectionKind.HAZARD, severity=Severity.RED, firing=True,
                              metric=text, value=1.0, level=1, message=text)
        async with db.transaction(), db.cursor() as cur:
            alert, created, _ = await upsert_live(cur, detection, NOW)
        assert created and alert.hazard == f"h{i}{text}" and alert.message == text
        acked = await transition(db, alert.id, AlertStatus.ACKNOWLEDGED, actor=text,
                                 source=text, note=text, now=NOW + 1)
        assert acked.status is AlertStatus.ACKNOWLEDGED
        events = await list_events(db, alert.id)
        assert [(e.actor, e.source, e.note) for e in events][-1] == (text, text, text)
        cur2 = await db.execute("SELECT acknowledged_by FROM alerts WHERE id = %s", (alert.id,))
        assert await cur2.fetchone() == (text,)
    counts = await _snapshot(db, db_schema)
    assert counts["alerts"] == len(INJECTIONS)
    assert counts["alert_events"] == 2 * len(INJECTIONS)  # opened + acknowledged
    await _canary_intact(db)


async def test_console_api_fields(db: AsyncConnection[Any], pg_dsn: str, db_schema: str) -> None:
    settings = Settings(sites=(SiteConfig(id="s1", name="s1"),),
                        devices=(DeviceConfig(id="d1", type=DeviceType.GAS, site="s1"),))
    await sync_registry(db, settings.site_map().values(), settings.device_map().values())
    officer = INJECTIONS[0]  # the user's own name is the actor of the audit rows
    await add_user(db, officer, Role.DUTY_OFFICER, ("s1",))
    alert_id = await open_alert(db, "d1", "s1", "gas", at=NOW, value=60.0)
    before = await _snapshot(db, db_schema)
    async with MemoryBus() as bus:
        app = create_app(settings, pg_dsn, bus, schema=db_schema, clock=time.time)
        async with asgi_client(app) as client:
            for name in ("' OR '1'='1", "admin'--", f"{officer}' OR '1'='1"):
                response = await client.post("/api/login", json={"name": name,
                                                                 "password": "' OR '1'='1"})
                assert response.status_code in (401, 403, 429), (name, response.text)
            await log_in(client, officer)
            for text in INJECTIONS:
                response = await client.get("/api/alerts", params={"site": text})
                assert response.status_code == 200 and response.json() == []
                response = await client.get("/api/alerts", params={"status": text})
                assert response.status_code == 422
            note = "\n".join(INJECTIONS)
            response = await client.post(f"/api/alerts/{alert_id}/ack", json={"note": note})
            assert response.status_code == 200, response.text
            response = await client.post(f"/api/alerts/{alert_id}/resolve",
                                         json={"note": INJECTIONS[3]})
            assert response.status_code == 200, response.text
    events = await list_events(db, alert_id)
    assert [(e.actor, e.note) for e in events][-2:] == [(officer, note),
                                                        (officer, INJECTIONS[3])]
    after = await _snapshot(db, db_schema)
    # Two audit rows; login sessions or rate-limit rows may come and go, nothing else.
    changed = {t for t in after if after[t] != before.get(t)}
    assert after["alert_events"] == before["alert_events"] + 2
    assert all(t == "alert_events" or "session" in t or "login" in t for t in changed), changed
    assert set(before) == set(after)
    await _canary_intact(db)
