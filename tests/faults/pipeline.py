"""The ingest half of the pipeline for fault tests: real ingest into a real PostgreSQL schema,
and ways to count what landed."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from ingest import DatabaseHop, IngestService, MqttSource
from shouwang.bus import MemoryBus
from shouwang.catalog import DeviceType
from shouwang.models import Device, Site
from shouwang.store import ReadingStore, connect
from shouwang.store.registry import sync_registry

__all__ = ["DEVICE", "ROOT", "TOPIC", "landed_seqs", "register", "running_ingest",
           "wait_for_rows", "wait_settled"]

DEVICE = Device(id="gas-1", type=DeviceType.GAS, site="north")
ROOT = "shouwang/v1"
TOPIC = f"{ROOT}/north/gas-1/telemetry"


async def register(pg_dsn: str, schema: str) -> None:
    conn = await connect(pg_dsn, schema)
    try:
        await sync_registry(conn, [Site(id="north", name="North")], [DEVICE])
        await conn.commit()
    finally:
        await conn.close()


async def landed_seqs(pg_dsn: str, schema: str) -> list[int]:
    """Every stored reading's seq, duplicates included (the table has one row per reading)."""
    conn = await connect(pg_dsn, schema, autocommit=True)
    try:
        cur = await conn.execute("SELECT seq FROM readings ORDER BY seq")
        return [int(row[0]) for row in await cur.fetchall()]
    finally:
        await conn.close()


async def wait_for_rows(pg_dsn: str, schema: str, at_least: int, timeout_s: float = 60) -> None:
    """Until at least ``at_least`` readings are stored (a fault is injected mid-stream)."""
    deadline = time.monotonic() + timeout_s
    while len(await landed_seqs(pg_dsn, schema)) < at_least:
        assert time.monotonic() < deadline, f"fewer than {at_least} readings landed"
        await asyncio.sleep(0.02)


async def wait_settled(pg_dsn: str, schema: str, *, until: int | None = None,
                       quiet_s: float = 3.0, timeout_s: float = 90.0) -> list[int]:
    """Readings once seq ``until`` has landed, or once nothing new lands for ``quiet_s``."""
    deadline = time.monotonic() + timeout_s
    seen: list[int] = []
    changed = time.monotonic()
    while time.monotonic() < deadline:
        try:
            now_seen = await landed_seqs(pg_dsn, schema)
        except OSError:
            now_seen = seen  # the database itself may be the fault under test
        if until is not None and until in now_seen:
            return now_seen
        if len(now_seen) != len(seen):
            seen, changed = now_seen, time.monotonic()
        elif until is None and time.monotonic() - changed > quiet_s:
            return seen
        await asyncio.sleep(0.1)
    return seen


@contextlib.asynccontextmanager
async def running_ingest(pg_dsn: str, schema: str, port: int,
                         client_id: str) -> AsyncIterator[IngestService]:
    stop = asyncio.Event()
    async with MemoryBus() as bus, ReadingStore(pg_dsn, schema) as store, \
            MqttSource(host="127.0.0.1", port=port, client_id=client_id,
                       topic_root=ROOT) as source:
        service = IngestService(source, DatabaseHop(store, bus), {DEVICE.id: DEVICE},
                                topic_root=ROOT, max_payload_bytes=4096,
                                max_readings_per_message=50, batch_max_messages=500,
                                flush_ms=20)
        task = asyncio.create_task(service.run(stop), name="test.ingest")
        try:
            yield service
        finally:
            stop.set()
            await task
