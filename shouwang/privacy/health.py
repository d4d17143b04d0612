"""Which stored readings are health data, and deleting them in small batches.

Health data = readings of a wearable whose metric is in ``privacy.health_metrics`` (heart
rate, blood oxygen, steps, position, falls and SOS calls); a wearable's battery, signal
and online status describe the device, not its wearer. Deleting per (device, metric)
walks the readings' unique index, and on a TimescaleDB hypertable compressed by
(device_id, metric) it touches only that segment.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from psycopg import AsyncConnection

__all__ = ["delete_health_readings", "wearable_ids"]

# One batch: the oldest ``batch`` rows before the cutoff (the key is unique, so ts is exact).
_DELETE_BATCH = """
DELETE FROM readings WHERE device_id = %(device)s AND metric = %(metric)s AND ts IN (
    SELECT ts FROM readings
    WHERE device_id = %(device)s AND metric = %(metric)s AND ts < to_timestamp(%(cutoff)s)
    ORDER BY ts LIMIT %(batch)s)
"""


async def wearable_ids(conn: AsyncConnection[Any]) -> list[str]:  # Any: tuple rows
    cur = await conn.execute("SELECT id FROM devices WHERE type = 'wearable' ORDER BY id")
    return [str(row[0]) for row in await cur.fetchall()]


async def delete_health_readings(conn: AsyncConnection[Any],  # Any: tuple rows
                                 devices: Iterable[str], metrics: Iterable[str], *,
                                 before: float, batch: int) -> tuple[int, int]:
    """Delete ``metrics`` readings of ``devices`` older than ``before`` (epoch s; ``inf`` =
    all). Each batch commits on its own (``conn`` in autocommit), so locks stay short and
    an interrupted run resumes where it stopped. Returns (rows deleted, batches)."""
    deleted = batches = 0
    wanted = tuple(metrics)
    for device in devices:
        for metric in wanted:
            while True:
                cur = await conn.execute(_DELETE_BATCH, {"device": device, "metric": metric,
                                                         "cutoff": before, "batch": batch})
                batches += 1
                deleted += max(cur.rowcount, 0)
                if cur.rowcount < batch:
                    break
    return deleted, batches
