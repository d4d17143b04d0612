"""The bulk writer: readings and rejects into PostgreSQL with binary COPY, idempotently.

Rows are copied into a per-connection temporary table and moved with
``INSERT ... ON CONFLICT DO NOTHING``, so a batch redelivered after a crash lands once.
Timestamps travel as float8 and are converted in SQL: building a Python datetime per
row would cost more than the COPY itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import AsyncConnection

from shouwang.models import Reading, ReadingKind, Reject
from shouwang.store.db import StoreError, connect

__all__ = ["ReadingStore", "ReadingWriter"]

_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS readings_in (
    ts float8, device_id text, metric text, value float8, seq int8, received_at float8,
    drill bool
) ON COMMIT DELETE ROWS
"""
_COPY = ("COPY readings_in (ts, device_id, metric, value, seq, received_at, drill) "
         "FROM STDIN (FORMAT BINARY)")
_TYPES = ("float8", "text", "text", "float8", "int8", "float8", "bool")
_MOVE = """
INSERT INTO readings (ts, device_id, metric, value, seq, received_at, drill)
SELECT to_timestamp(ts), device_id, metric, value, seq, to_timestamp(received_at), drill
FROM readings_in
ON CONFLICT DO NOTHING
"""
# Device liveness and battery, one statement per batch.
_DEVICES = """
UPDATE devices AS d SET
    last_seen = greatest(d.last_seen, to_timestamp(v.last_seen)),
    battery = coalesce(v.battery, d.battery),
    status = coalesce(v.status, 'online'),
    updated_at = now()
FROM unnest(%s::text[], %s::float8[], %s::float8[], %s::text[])
    AS v(id, last_seen, battery, status)
WHERE d.id = v.id
"""
_REJECT = """
INSERT INTO rejects (received_at, topic, device_id, reason, detail, payload)
VALUES (to_timestamp(%s), %s, %s, %s, %s, %s)
ON CONFLICT DO NOTHING
"""


class ReadingWriter:
    """Writes batches on one connection it does not own; each ``write`` is one transaction."""

    def __init__(self, conn: AsyncConnection[Any]) -> None:  # Any: tuple rows
        self._conn = conn
        self._staged = False

    async def write(self, readings: Sequence[Reading],
                    rejects: Sequence[Reject] = ()) -> int:
        """Commit readings (and rejects) together; returns how many readings were new."""
        inserted = 0
        async with self._conn.transaction():
            if readings:
                inserted = await self._copy(readings)
                await self._touch_devices(readings)
            if rejects:
                async with self._conn.cursor() as cur:
                    await cur.executemany(_REJECT, [
                        (r.received_at, r.topic, r.device_id, r.reason, r.detail, r.payload)
                        for r in rejects])
        return inserted

    async def _copy(self, readings: Sequence[Reading]) -> int:
        async with self._conn.cursor() as cur:
            if not self._staged:
                await cur.execute(_STAGE)
                self._staged = True
            async with cur.copy(_COPY) as copy:
                copy.set_types(_TYPES)
                for r in readings:
                    await copy.write_row((r.ts, r.device_id, r.metric, r.value, r.seq,
                                          r.received_at, r.drill))
            await cur.execute(_MOVE)
            return cur.rowcount

    async def _touch_devices(self, readings: Sequence[Reading]) -> None:
        latest: dict[str, list[Any]] = {}  # Any: [last_seen, battery, status]
        for r in readings:
            entry = latest.setdefault(r.device_id, [r.received_at, None, None])
            entry[0] = max(entry[0], r.received_at)
            if r.metric == "battery":
                entry[1] = r.value
            elif r.kind is ReadingKind.STATUS:
                entry[2] = "online" if r.value >= 0.5 else "offline"
        ids = list(latest)
        async with self._conn.cursor() as cur:
            await cur.execute(_DEVICES, (ids, [latest[i][0] for i in ids],
                                         [latest[i][1] for i in ids],
                                         [latest[i][2] for i in ids]))


class ReadingStore:
    """A ``ReadingWriter`` that owns its connection and reconnects after a failure.

    A failed ``write`` closes the connection and raises ``StoreError``; the caller keeps
    its batch and calls ``write`` again later, which reconnects first.
    """

    def __init__(self, dsn: str, schema: str = "public") -> None:
        self._dsn = dsn
        self._schema = schema
        self._conn: AsyncConnection[Any] | None = None
        self._writer: ReadingWriter | None = None

    async def __aenter__(self) -> ReadingStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._drop()

    async def _drop(self) -> None:
        if self._conn is not None:
            await self._conn.close()
        self._conn = self._writer = None

    async def write(self, readings: Sequence[Reading], rejects: Sequence[Reject] = ()) -> int:
        if self._writer is None:
            self._conn = await connect(self._dsn, self._schema)
            self._writer = ReadingWriter(self._conn)
        try:
            return await self._writer.write(readings, rejects)
        except psycopg.Error as err:
            await self._drop()
            raise StoreError(f"writing {len(readings)} readings failed: {err}") from err
