"""The ``device_quarantine`` table: quarantines in force survive a restart, and an operator
can end one (``shouwang devices release ID``), which ingest sees at its next sync.

Ingest goes on without it when the database is away: the quarantine is enforced from
memory and written once the database answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import psycopg

from ingest.flood_guard import QuarantineChange
from shouwang.store import StoreError, connect

__all__ = ["QuarantineStore", "QuarantineStoreError", "release_device"]

log = logging.getLogger(__name__)

_TIMEOUT_S = 5.0  # one slow statement must not stall the receive loop for long

_QUARANTINE = """
INSERT INTO device_quarantine (device_id, site, quarantined_at, reason, detail, dropped,
                               released_at, released_by)
VALUES (%s, %s, to_timestamp(%s), 'flooding', %s, 0, NULL, '')
ON CONFLICT (device_id) DO UPDATE SET site = excluded.site,
    quarantined_at = excluded.quarantined_at, detail = excluded.detail, dropped = 0,
    released_at = NULL, released_by = ''
WHERE device_quarantine.released_at IS NOT NULL
"""
# A release another instance (or an operator) wrote first keeps its time and author; this
# instance's drops are added all the same.
_RELEASE = """
UPDATE device_quarantine SET released_at = coalesce(released_at, to_timestamp(%s)),
    released_by = CASE WHEN released_at IS NULL THEN %s ELSE released_by END,
    dropped = dropped + %s
WHERE device_id = %s
"""
_DROPPED = ("UPDATE device_quarantine SET dropped = dropped + %s "
            "WHERE device_id = %s AND released_at IS NULL")
_RELEASED_BY = ("SELECT device_id, released_by FROM device_quarantine "
                "WHERE device_id = ANY(%s) AND released_at IS NOT NULL")
_ACTIVE = ("SELECT device_id, extract(epoch FROM quarantined_at) FROM device_quarantine "
           "WHERE released_at IS NULL")


class QuarantineStoreError(RuntimeError):
    """The database could not be reached or refused a statement; try again later."""


class QuarantineStore:
    """One lazily opened autocommit connection; any failure closes it for the next try."""

    def __init__(self, dsn: str, schema: str) -> None:
        self._dsn = dsn
        self._schema = schema
        self._conn: psycopg.AsyncConnection[Any] | None = None  # Any: tuple rows
        self._added: dict[str, int] = {}  # device -> its drops already added to the row

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._close()

    async def active(self) -> dict[str, float]:
        """Quarantines in force: device id -> when it began (epoch s)."""
        rows = await self._run(self._select)
        return {str(device_id): float(at) for device_id, at in rows}

    async def released_by(self, device_ids: Sequence[str]) -> dict[str, str]:
        """Who ended these devices' quarantines (``auto``: an ingest instance), for those
        the table says have ended."""
        async def select(conn: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
            cur = await conn.execute(_RELEASED_BY, (list(device_ids),))
            return await cur.fetchall()
        return {str(device_id): str(by) for device_id, by in await self._run(select)}

    async def record(self, changes: Sequence[QuarantineChange],
                     dropped: Mapping[str, int]) -> None:
        """Write quarantines, releases and this instance's ``dropped`` counts.

        Ingest instances on a shared subscription share a row: each adds what it dropped
        since its last write instead of setting its own total, which would overwrite the
        others' (an instance that learnt the quarantine from the table has dropped 0). For
        the same reason a quarantine leaves a row another instance has already made active.
        """
        added = dict(self._added)

        async def write(conn: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
            async with conn.transaction():
                for c in changes:
                    if c.quarantined:
                        await conn.execute(_QUARANTINE, (c.device_id, c.site, c.at, c.detail))
                        added[c.device_id] = 0
                    else:
                        more = max(c.dropped - added.pop(c.device_id, 0), 0)
                        await conn.execute(_RELEASE, (c.at, c.by, more, c.device_id))
                for device_id, count in dropped.items():
                    more = count - added.get(device_id, 0)
                    if more > 0:
                        await conn.execute(_DROPPED, (more, device_id))
                    added[device_id] = count
            return []

        await self._run(write)
        self._added = added  # only once committed: a failed write is added again next time

    @staticmethod
    async def _select(conn: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
        cur = await conn.execute(_ACTIVE)
        return await cur.fetchall()

    async def _run(self, work: Any) -> list[tuple[Any, ...]]:  # Any: a coroutine function
        try:
            if self._conn is None:
                self._conn = await asyncio.wait_for(
                    connect(self._dsn, self._schema, autocommit=True), _TIMEOUT_S)
            result: list[tuple[Any, ...]] = await asyncio.wait_for(work(self._conn),
                                                                   _TIMEOUT_S)
            return result
        except (psycopg.Error, StoreError, OSError, TimeoutError) as err:
            await self._close()
            raise QuarantineStoreError(str(err)) from err

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):  # already broken: nothing to free
                await conn.close()


async def release_device(dsn: str, schema: str, device_id: str, *, by: str) -> bool:
    """End ``device_id``'s quarantine now; False if it was not quarantined."""
    conn = await connect(dsn, schema, autocommit=True)
    try:
        cur = await conn.execute(
            "UPDATE device_quarantine SET released_at = now(), released_by = %s "
            "WHERE device_id = %s AND released_at IS NULL", (by, device_id))
        return cur.rowcount > 0
    finally:
        await conn.close()
