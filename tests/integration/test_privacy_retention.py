"""Wearable health readings have their own retention, on a real PostgreSQL schema."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import REGISTRY
from psycopg import AsyncConnection

from shouwang.privacy import HealthRetentionService, purge_health
from shouwang.store import connect
from tests.integration.privacy_seed import DAY, NOW, privacy_settings, seed

pytestmark = pytest.mark.integration


def _purged() -> float:
    return REGISTRY.get_sample_value("shouwang_health_readings_purged_total") or 0.0


async def _counts(db: AsyncConnection[Any]) -> dict[tuple[str, str], int]:
    cur = await db.execute("SELECT device_id, metric, count(*) FROM readings "
                           "GROUP BY device_id, metric")
    return {(r[0], r[1]): int(r[2]) for r in await cur.fetchall()}


async def _old(db: AsyncConnection[Any], device: str, metric: str) -> int:
    cur = await db.execute("SELECT count(*) FROM readings WHERE device_id = %s AND metric = %s "
                           "AND ts < to_timestamp(%s)", (device, metric, NOW - 30 * DAY))
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_old_health_rows_go_recent_and_other_rows_stay(pg_dsn: str,
                                                             db_schema: str) -> None:
    settings = privacy_settings()
    db = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        await seed(db, settings)
        before = await _counts(db)
        purged_before = _purged()

        result = await purge_health(db, settings, now=NOW, actor="test")

        after = await _counts(db)
        # 3 + 3 old heart rates, 1 old spo2, 1 old SOS event; batches of 2 rows.
        assert result.ran and result.deleted == 8
        assert result.batches > result.deleted // settings.privacy.purge_batch
        assert _purged() - purged_before == 8
        for device, metric in (("wear-a", "heart_rate"), ("wear-b", "heart_rate"),
                               ("wear-a", "spo2"), ("wear-a", "sos")):
            assert await _old(db, device, metric) == 0, (device, metric)
        # The last day's heart rates stay; the device's battery and the gas sensor's
        # old readings follow the general retention.
        assert after[("wear-a", "heart_rate")] == 3 and after[("wear-b", "heart_rate")] == 3
        assert after[("wear-a", "battery")] == before[("wear-a", "battery")] == 1
        assert after[("gas-1", "lel")] == before[("gas-1", "lel")] == 1
        cur = await db.execute("SELECT actor, action, detail FROM audit_log "
                               "WHERE category = 'privacy'")
        assert [(r[0], r[1], r[2]["deleted"]) for r in await cur.fetchall()] == [
            ("test", "health_purged", 8)]

        again = await purge_health(db, settings, now=NOW, actor="test")
        assert again.deleted == 0
        cur = await db.execute("SELECT count(*) FROM audit_log WHERE category = 'privacy'")
        assert (await cur.fetchone()) == (1,)  # nothing deleted, nothing to audit
    finally:
        await db.close()


async def test_the_period_comes_from_config(pg_dsn: str, db_schema: str) -> None:
    settings = privacy_settings(privacy={"health_retention_days": 50})
    db = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        await seed(db, settings)
        result = await purge_health(db, settings, now=NOW, actor="test")
        assert result.deleted == 0  # 40 days old is within 50
        result = await purge_health(db, settings, now=NOW + 11 * DAY, actor="test")
        assert result.deleted == 8
    finally:
        await db.close()


async def test_one_purge_at_a_time(pg_dsn: str, db_schema: str) -> None:
    settings = privacy_settings()
    db = await connect(pg_dsn, db_schema, autocommit=True)
    other = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        await seed(db, settings)
        await other.execute("SELECT pg_advisory_lock(%s)", (0x5348_5052,))
        result = await purge_health(db, settings, now=NOW, actor="test")
        assert not result.ran and result.deleted == 0
        await other.execute("SELECT pg_advisory_unlock(%s)", (0x5348_5052,))
        assert (await purge_health(db, settings, now=NOW, actor="test")).deleted == 8
    finally:
        await other.close()
        await db.close()


async def test_the_service_purges_at_start_and_stops(pg_dsn: str, db_schema: str) -> None:
    settings = privacy_settings(database={"schema_name": db_schema})
    db = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        await seed(db, settings)
        service = HealthRetentionService(settings, pg_dsn, schema=db_schema, clock=lambda: NOW)
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop), name="test.health-retention")
        async with asyncio.timeout(30):
            while service.runs == 0:
                await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 10)  # waits out the hour-long interval at once
        assert await _old(db, "wear-a", "heart_rate") == 0
        assert (await _counts(db))[("gas-1", "lel")] == 1
    finally:
        await db.close()
