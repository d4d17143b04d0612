"""Noticing drills whose player died, without waiting for a person.

A drill is played by one process (a console, or ``shouwang drill``), which writes who it is
(host and pid) into the drill's row and refreshes ``heartbeat_at`` every ``heartbeat_s``
(``drills`` settings; defaults below) while the drill plays and is scored. A running drill
whose heartbeat is older than ``stale_after_s`` has lost its player: every console sweeps
for such drills when it starts and every ``sweep_s`` after, and abandons them as
``shouwang drill --abandon`` does (failed, scored with what happened so far). Several
consoles sharing one database may sweep at once: the abandon locks the row and checks the
heartbeat again, so a drill is ended once, and never while its heartbeat is fresh.

Heartbeats and sweeps use each process's clock: hosts must agree on the time to well within
``stale_after_s`` (NTP does), and every process must use the same settings. A player that
finds its drill already ended (its heartbeat could not be written for too long, say) stops
playing and leaves the stored result alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import psycopg
from psycopg import AsyncConnection

from config.settings import DrillSettings
from simulators.drill_purge import DrillAlreadyFinished, UnknownDrill, abandon_drill

__all__ = ["HEARTBEAT_S", "STALE_AFTER_S", "SWEEP_S", "beat", "keep_beating", "player_name",
           "sweep_orphans", "watch_orphans"]

log = logging.getLogger(__name__)

# For callers without settings: the ``drills`` section's defaults (stale after twelve
# missed heartbeats: a slow database is not a dead player).
_DEFAULTS = DrillSettings()
HEARTBEAT_S = _DEFAULTS.heartbeat_s
STALE_AFTER_S = _DEFAULTS.stale_after_s
SWEEP_S = _DEFAULTS.sweep_s

# Any: tuple rows. Lends a connection for a moment (a pool's, or one held for the drill).
_Connector = Callable[[], AbstractAsyncContextManager[AsyncConnection[Any]]]


def player_name() -> str:
    """This process, as a person reading the drill's row would look for it."""
    return f"{socket.gethostname()} pid {os.getpid()}"


async def beat(conn: AsyncConnection[Any], drill_id: int, *,  # Any: tuple rows
               now: float, player: str | None = None) -> bool:
    """Say the drill's player is alive at ``now``; False when the drill has already ended
    (abandoned by a sweep, or by a person)."""
    if player is None:
        cur = await conn.execute(
            "UPDATE drills SET heartbeat_at = to_timestamp(%s) "
            "WHERE id = %s AND finished_at IS NULL", (now, drill_id))
    else:
        cur = await conn.execute(
            "UPDATE drills SET heartbeat_at = to_timestamp(%s), player = %s "
            "WHERE id = %s AND finished_at IS NULL", (now, player, drill_id))
    return cur.rowcount == 1


async def keep_beating(drill_id: int, connection: _Connector, *, stop: asyncio.Event,
                       halt: asyncio.Event, clock: Callable[[], float],
                       every_s: float = HEARTBEAT_S) -> bool:
    """Beat until ``stop``, then set ``halt``; set it too, and return False, as soon as
    the drill turns out to have been ended elsewhere.

    A beat that cannot be written (the database away for a moment) is retried at the next
    one; the drill itself notices a database that stays away.
    """
    while not stop.is_set():
        try:
            async with connection() as conn:
                alive = await beat(conn, drill_id, now=clock())
        except (psycopg.Error, OSError) as err:
            log.warning("drill %d: heartbeat not written: %s", drill_id, err)
        else:
            if not alive:
                log.error("drill %d was ended while it played (no heartbeat for too long?); "
                          "it stops and its stored result stays", drill_id)
                halt.set()
                return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
    halt.set()
    return True


async def sweep_orphans(conn: AsyncConnection[Any], *, now: float,  # Any: tuple rows
                        stale_after_s: float = STALE_AFTER_S) -> list[int]:
    """Abandon every running drill whose heartbeat is older than ``stale_after_s``; the ids
    abandoned here (not those another sweep ended first)."""
    silent_since = now - stale_after_s
    cur = await conn.execute(
        "SELECT id, player, extract(epoch FROM coalesce(heartbeat_at, started_at)) "
        "FROM drills WHERE finished_at IS NULL "
        "AND coalesce(heartbeat_at, started_at) < to_timestamp(%s) ORDER BY id",
        (silent_since,))
    abandoned = []
    for drill_id, player, beat_at in await cur.fetchall():
        reason = (f"its player ({player or 'unknown'}) stopped heart-beating "
                  f"{now - float(beat_at):.0f} s before")
        with contextlib.suppress(DrillAlreadyFinished, UnknownDrill):
            if await abandon_drill(conn, int(drill_id), now=now, reason=reason,
                                   silent_since=silent_since):
                abandoned.append(int(drill_id))
    return abandoned


async def watch_orphans(connection: _Connector, *, stop: asyncio.Event,
                        clock: Callable[[], float], every_s: float = SWEEP_S,
                        stale_after_s: float = STALE_AFTER_S) -> None:
    """Sweep now and every ``every_s`` until ``stop``; a database away is tried again later."""
    while not stop.is_set():
        try:
            async with connection() as conn:
                await sweep_orphans(conn, now=clock(), stale_after_s=stale_after_s)
        except (psycopg.Error, OSError) as err:
            log.warning("orphaned drills not swept: %s", err)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
