"""Health readings' own retention: delete them after ``privacy.health_retention_days``.

TimescaleDB's retention policy drops whole chunks, every metric of every device at once,
so it cannot keep a gas sensor's year while dropping a wearer's month; the same batched
deletion therefore runs on TimescaleDB and on plain PostgreSQL, every
``privacy.purge_interval_s`` inside the process that writes readings (``shouwang run``,
or ``shouwang ingest`` in its writer role) and at once with ``shouwang privacy purge``.
A session advisory lock lets only one purge run at a time, however many processes try.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from prometheus_client import Counter
from psycopg import AsyncConnection

from config.settings import Settings
from shouwang.audit import AuditCategory, record
from shouwang.privacy.health import delete_health_readings, wearable_ids
from shouwang.store import connect

__all__ = ["PURGED", "HealthRetentionService", "PurgeResult", "purge_health"]

log = logging.getLogger(__name__)

PURGED = Counter("shouwang_health_readings_purged_total",
                 "wearable health readings deleted after their retention period")
_LOCK_ID = 0x5348_5052  # "SHPR"
_DAY_S = 86_400.0


@dataclass(frozen=True, slots=True, kw_only=True)
class PurgeResult:
    deleted: int
    batches: int
    cutoff: float  # epoch seconds: readings before it were deleted
    ran: bool  # False: another process held the purge lock


async def purge_health(conn: AsyncConnection[Any], settings: Settings, *,  # Any: tuple rows
                       now: float, actor: str) -> PurgeResult:
    """Delete health readings older than the retention period; ``conn`` in autocommit."""
    privacy = settings.privacy
    cutoff = now - privacy.health_retention_days * _DAY_S
    cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_ID,))
    row = await cur.fetchone()
    if not (row and row[0]):
        log.info("health purge skipped: another process is purging")
        return PurgeResult(deleted=0, batches=0, cutoff=cutoff, ran=False)
    try:
        started = time.monotonic()
        deleted, batches = await delete_health_readings(
            conn, await wearable_ids(conn), privacy.health_metrics, before=cutoff,
            batch=privacy.purge_batch)
        PURGED.inc(deleted)
        log.info("health purge: deleted=%d batches=%d older_than_days=%d took_s=%.2f",
                 deleted, batches, privacy.health_retention_days,
                 time.monotonic() - started)
        if deleted:
            await record(conn, category=AuditCategory.PRIVACY, action="health_purged",
                         actor=actor, now=now, subject="readings",
                         detail={"deleted": deleted, "cutoff": cutoff,
                                 "retention_days": privacy.health_retention_days})
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return PurgeResult(deleted=deleted, batches=batches, cutoff=cutoff, ran=True)


class HealthRetentionService:
    """Purges expired health readings at start and every ``privacy.purge_interval_s``."""

    def __init__(self, settings: Settings, dsn: str, *, schema: str = "public",
                 clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._dsn = dsn
        self._schema = schema
        self._clock = clock
        self.runs = 0

    async def _once(self) -> None:
        conn = await connect(self._dsn, self._schema, autocommit=True)
        try:
            await purge_health(conn, self._settings, now=self._clock(),
                               actor="service:health-retention")
        finally:
            await conn.close()

    async def run(self, stop: asyncio.Event) -> None:
        failing = False
        while not stop.is_set():
            try:
                await self._once()
                failing = False
            except (psycopg.Error, OSError) as err:
                if not failing:  # once per outage, not every interval
                    log.warning("health purge failed, retrying next interval: %s", err)
                failing = True
            self.runs += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._settings.privacy.purge_interval_s)


