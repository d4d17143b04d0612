"""The loudspeakers' rendered clips, kept in PostgreSQL (table ``broadcast_audio``).

The database is the one store the alerting workers and the console already share, so a
clip rendered by any alerting worker is served by any console, on any host, with no
shared directory. A clip's name is the hash of its voice and text: saving one that is
there already only marks it used again, which is what a retry or a second worker does.
Only the ``keep`` most recently used clips stay.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

__all__ = ["clip_size", "load_clip", "load_clip_part", "reuse_clip", "save_clip"]

# greatest(): workers' clocks differ a little; a clip's last use never moves back.
_REUSE = """
UPDATE broadcast_audio SET used_at = greatest(used_at, to_timestamp(%s))
WHERE name = %s RETURNING duration_s
"""
_SAVE = """
INSERT INTO broadcast_audio (name, wav, duration_s, created_at, used_at)
VALUES (%s, %s, %s, to_timestamp(%s), to_timestamp(%s))
ON CONFLICT (name) DO UPDATE SET used_at = greatest(broadcast_audio.used_at,
                                                    EXCLUDED.used_at)
"""
_PRUNE = """
DELETE FROM broadcast_audio WHERE name IN (
    SELECT name FROM broadcast_audio ORDER BY used_at DESC, name DESC OFFSET %s)
"""
_LOAD = "SELECT wav FROM broadcast_audio WHERE name = %s"
_SIZE = "SELECT octet_length(wav) FROM broadcast_audio WHERE name = %s"
# substring() counts from 1; the console asks for a 0-based offset, as HTTP ranges do.
_LOAD_PART = """
SELECT substring(wav FROM %s::int + 1 FOR %s::int) FROM broadcast_audio WHERE name = %s
"""


async def reuse_clip(conn: AsyncConnection[Any], name: str,  # Any: tuple rows
                     now: float) -> float | None:
    """The stored clip's duration, marked used at ``now``; None when it is not stored."""
    cur = await conn.execute(_REUSE, (now, name))
    row = await cur.fetchone()
    return None if row is None else float(row[0])


async def save_clip(conn: AsyncConnection[Any], name: str, wav: bytes,  # Any: tuple rows
                    duration_s: float, *, now: float, keep: int) -> None:
    """Store ``wav`` as ``name`` (or mark it used if a twin stored it first) and drop all
    but the ``keep`` most recently used clips."""
    async with conn.transaction():
        await conn.execute(_SAVE, (name, wav, duration_s, now, now))
        await conn.execute(_PRUNE, (keep,))


async def load_clip(conn: AsyncConnection[Any], name: str) -> bytes | None:  # Any: tuple rows
    """The WAV bytes of ``name``; None when there is no such clip."""
    # Binary: bytea as its bytes, not as hex text twice the size to decode.
    cur = await conn.execute(_LOAD, (name,), binary=True)
    row = await cur.fetchone()
    return None if row is None else bytes(row[0])


async def clip_size(conn: AsyncConnection[Any], name: str) -> int | None:  # Any: tuple rows
    """The byte length of ``name`` without reading it; None when there is no such clip."""
    cur = await conn.execute(_SIZE, (name,))
    row = await cur.fetchone()
    return None if row is None else int(row[0])


async def load_clip_part(conn: AsyncConnection[Any], name: str,  # Any: tuple rows
                         offset: int, length: int) -> bytes | None:
    """``length`` bytes of ``name`` from ``offset`` (0-based), read from the database alone,
    not the whole clip; None when there is no such clip."""
    cur = await conn.execute(_LOAD_PART, (offset, length, name), binary=True)
    row = await cur.fetchone()
    return None if row is None else bytes(row[0])
