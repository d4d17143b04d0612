"""Detector state in PostgreSQL (``detector_state``), so a moved partition resumes, not restarts.

One row per device and detector family; the engine's whole per-device state is one
``bytea`` (``DetectorEngine.snapshot``). A worker saves the devices it changed every
``snapshot_interval_s``, and all of its devices when it loses their partitions or
stops; the worker that gains them loads their rows before reading their messages.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import psycopg
from psycopg import AsyncConnection

from shouwang.store import connect
from shouwang.store.db import StoreError

__all__ = ["ENGINE_STATE", "StateStore"]

ENGINE_STATE = "engine"  # the ``detector`` column of the engine's rows

_UPSERT = """
    INSERT INTO detector_state (device_id, detector, state, updated_at)
    VALUES (%s, %s, %s, %s)
    ON CONFLICT (device_id, detector) DO UPDATE
    SET state = EXCLUDED.state, updated_at = EXCLUDED.updated_at
"""
_SELECT = """
    SELECT device_id, state FROM detector_state
    WHERE detector = %s AND device_id = ANY(%s)
"""


class StateStore:
    """Saves and loads per-device state blobs; one connection, one writer at a time.

    Parameters
    ----------
    dsn, schema
        Where the ``detector_state`` table is (already migrated).
    detector
        The ``detector`` column value this store reads and writes.
    """

    def __init__(self, dsn: str, schema: str = "public", *,
                 detector: str = ENGINE_STATE) -> None:
        self._dsn = dsn
        self._schema = schema
        self._detector = detector
        self._conn: AsyncConnection[Any] | None = None  # Any: tuple rows

    async def __aenter__(self) -> Self:
        self._conn = await connect(self._dsn, self._schema)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def save(self, states: Sequence[tuple[str, bytes]], now: float) -> None:
        """Upsert ``(device_id, state)`` rows in one transaction."""
        if not states:
            return
        conn = await self._live()
        at = datetime.fromtimestamp(now, UTC)
        try:
            async with conn.transaction(), conn.cursor() as cur:
                await cur.executemany(
                    _UPSERT, [(device_id, self._detector, blob, at) for device_id, blob in states])
        except psycopg.Error as err:
            await self._drop()
            raise StoreError(f"saving detector state failed: {err}") from err

    async def load(self, device_ids: Sequence[str]) -> dict[str, bytes]:
        """The saved state of those devices that have one."""
        if not device_ids:
            return {}
        conn = await self._live()
        try:
            async with conn.transaction(), conn.cursor() as cur:
                await cur.execute(_SELECT, (self._detector, list(device_ids)))
                rows = await cur.fetchall()
        except psycopg.Error as err:
            await self._drop()
            raise StoreError(f"loading detector state failed: {err}") from err
        return {device_id: bytes(state) for device_id, state in rows}

    async def _live(self) -> AsyncConnection[Any]:
        """The connection, reopened if a failure dropped it (the database restarted)."""
        if self._conn is None:
            self._conn = await connect(self._dsn, self._schema)
        return self._conn

    async def _drop(self) -> None:
        # A failed statement may have broken the connection; the next call opens a new one.
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                await self._conn.close()
            self._conn = None
