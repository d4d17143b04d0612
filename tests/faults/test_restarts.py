"""Faults mid-stream under a steady device load: Mosquitto restarts, PostgreSQL stops for 30 s.

Counted at the end: published (acknowledged to the device), landed (distinct seqs stored),
lost (published and never landed) and duplicated (stored more than once). Lost and
duplicated must both be zero. Each fault hits a private instance (own broker, own
PostgreSQL cluster) so the shared services other tests use are never disturbed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import pytest
from psycopg import sql

from shouwang.embedded import EmbeddedPostgres
from shouwang.store import connect, migrate
from tests.faults.broker import SHIPPED_SETTINGS, PrivateMosquitto, free_port
from tests.faults.load import DevicePublisher
from tests.faults.pipeline import (
    TOPIC,
    register,
    running_ingest,
    wait_for_rows,
    wait_settled,
)

pytestmark = pytest.mark.integration

log = logging.getLogger(__name__)

LOAD = 3000
# The 30 s, in CI too (~36 s); shorter by hand: SHOUWANG_FAULT_PG_OUTAGE_S=10
PG_OUTAGE_S = float(os.environ.get("SHOUWANG_FAULT_PG_OUTAGE_S", "30"))


def _count(published: set[int], landed: list[int]) -> tuple[int, int, int, int]:
    distinct = set(landed)
    return (len(published), len(distinct), len(published - distinct),
            len(landed) - len(distinct))


async def test_mosquitto_restarts_mid_stream_nothing_lost_or_duplicated(
        pg_dsn: str, db_schema: str, run_id: str, broker: PrivateMosquitto) -> None:
    await register(pg_dsn, db_schema)
    async with running_ingest(pg_dsn, db_schema, broker.port, run_id):
        device = DevicePublisher(broker.port, TOPIC, LOAD, chunk=50, pause_s=0.02)
        device.start()
        await wait_for_rows(pg_dsn, db_schema, LOAD // 4)
        # Graceful restart: the broker saves sessions and queued messages to disk.
        await asyncio.to_thread(broker.stop)
        assert len(device.acked) < LOAD, "the restart must come mid-stream"
        await asyncio.to_thread(broker.start)
        await asyncio.to_thread(device.join)
        landed = await wait_settled(pg_dsn, db_schema, until=LOAD - 1)
        landed = await wait_settled(pg_dsn, db_schema, quiet_s=1.0)
    published, distinct, lost, duplicated = _count(device.acked, landed)
    assert published == LOAD
    assert (lost, duplicated) == (0, 0), (published, distinct, lost, duplicated)
    assert distinct == LOAD


async def test_postgres_stopped_nothing_lost_or_duplicated(
        data_root: Path, tmp_path: Path, run_id: str) -> None:
    """Ingest holds its batch and retries; MQTT acks wait, so the broker keeps the rest."""
    schema = "faults"
    # A fixed port: the restarted server must be where ingest's DSN points.
    async with EmbeddedPostgres(data_root / "pg", port=free_port()) as pg:
        dsn = pg.dsn
        conn = await connect(dsn, schema)
        await migrate(conn, schema)
        await conn.commit()
        await conn.close()
        await register(dsn, schema)
        with PrivateMosquitto(tmp_path / "mqtt", SHIPPED_SETTINGS) as broker:
            async with running_ingest(dsn, schema, broker.port, run_id) as ingest:
                device = DevicePublisher(broker.port, TOPIC, LOAD, pause_s=0.02)
                device.start()
                await wait_for_rows(dsn, schema, LOAD // 5)
                await pg.stop()
                stopped_at = time.monotonic()
                # The outage is wall time on purpose; devices keep publishing throughout.
                await asyncio.sleep(PG_OUTAGE_S)
                during = ingest.messages
                await pg.start()
                restarted_at = time.monotonic()
                outage_s = restarted_at - stopped_at
                await asyncio.to_thread(device.join)
                landed = await wait_settled(dsn, schema, until=LOAD - 1, timeout_s=120)
                log.info("postgres outage %.1f s; backlog drained %.1f s after the restart",
                         outage_s, time.monotonic() - restarted_at)
                landed = await wait_settled(dsn, schema, quiet_s=1.0)
        conn = await connect(dsn, schema, autocommit=True)
        await conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        await conn.close()
    published, distinct, lost, duplicated = _count(device.acked, landed)
    assert outage_s >= PG_OUTAGE_S
    assert during < LOAD, "ingest cannot have finished while the database was down"
    assert published == LOAD
    assert (lost, duplicated) == (0, 0), (published, distinct, lost, duplicated)
