"""Drills whose player died are noticed without a person: their heartbeat goes stale.

Real PostgreSQL. Drill rows are written as players write them (``start_drill_row``, then
heartbeats); the clock is injected, so "two minutes without a heartbeat" takes no time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from psycopg import AsyncConnection

from config.settings import load
from console import create_app
from console.users import Role
from shouwang.bus import MemoryBus
from shouwang.models import Severity
from shouwang.store import connect
from simulators.drill import held
from simulators.drill_purge import abandon_drill, purge_drill
from simulators.drill_record import get_drill
from simulators.drill_watch import STALE_AFTER_S, beat, keep_beating, sweep_orphans
from simulators.models import GroundTruth
from simulators.scorecard import start_drill_row
from tests.integration.console_auth import add_user
from tests.integration.e2e import eventually

pytestmark = pytest.mark.integration

NOW = time.time()
STARTED = NOW - 900.0
ONSET = STARTED + 30.0


async def _running(conn: AsyncConnection[Any], device: str,  # Any: tuple rows
                   heartbeat: float | None, player: str = "") -> int:
    truth = GroundTruth(scenario="fast_gas_leak", device_id=device, site="s1", hazard="gas",
                        severity=Severity.RED, onset_ts=ONSET)
    drill_id = await start_drill_row(conn, scenario="fast_gas_leak", site="s1",
                                     started_at=STARTED, device_id=device, devices=[device],
                                     truths=[truth], ends_at=STARTED + 1800)
    if heartbeat is not None:
        assert await beat(conn, drill_id, now=heartbeat, player=player)
    return drill_id


async def _alert(conn: AsyncConnection[Any], device: str,  # Any: tuple rows
                 opened: float) -> int:
    cur = await conn.execute(
        "INSERT INTO alerts (site, device_id, hazard, kind, severity, status, opened_at, drill) "
        "VALUES ('s1', %s, 'gas', 'hazard', 4, 'open', to_timestamp(%s), true) RETURNING id",
        (device, opened))
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_a_drill_whose_heartbeat_is_stale_is_abandoned_and_scored_a_live_one_is_not(
        pg_dsn: str, db_schema: str) -> None:
    conn = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        dead = await _running(conn, "d1", NOW - STALE_AFTER_S - 60, "console-a pid 41")
        live = await _running(conn, "d2", NOW - 5, "console-b pid 42")
        legacy = await _running(conn, "d3", None)  # started before heartbeats existed
        alert_id = await _alert(conn, "d1", ONSET + 12.5)  # the dead drill got this far

        assert sorted(await sweep_orphans(conn, now=NOW)) == [dead, legacy]

        record = await get_drill(conn, dead)
        assert record is not None and record.status == "failed"
        assert record.finished_at == pytest.approx(NOW, abs=1e-3)
        assert record.error.startswith("abandoned: its player (console-a pid 41) stopped "
                                       "heart-beating 120 s before")
        # Scored with what happened so far, as `shouwang drill --abandon` does.
        assert record.scorecard is not None
        (row,) = record.scorecard.rows
        assert (row.alert_id, row.severity, row.detected_s) == (alert_id, "red", 12.5)
        legacy_record = await get_drill(conn, legacy)
        assert legacy_record is not None and legacy_record.status == "failed"
        assert legacy_record.scorecard is not None and legacy_record.scorecard.missed

        alive = await get_drill(conn, live)
        assert alive is not None and alive.status == "running" and alive.finished_at is None
        # The lock re-reads the heartbeat: a sweep that listed the drill before its player
        # beat again leaves it alone.
        assert not await abandon_drill(conn, live, now=NOW, reason="raced",
                                       silent_since=NOW - STALE_AFTER_S)
        assert await sweep_orphans(conn, now=NOW) == []  # nothing is ended twice
        # The dead drill's player, were it to come back, learns its drill has ended.
        assert not await beat(conn, dead, now=NOW)
        assert await beat(conn, live, now=NOW)
        # An abandoned drill can be purged like any finished one.
        assert (await purge_drill(conn, dead, now=NOW)).alerts == 1
        # The live drill lasts as long as its heartbeat does.
        assert await sweep_orphans(conn, now=NOW + STALE_AFTER_S - 1) == []
        assert await sweep_orphans(conn, now=NOW + STALE_AFTER_S + 1) == [live]
    finally:
        await conn.close()


async def test_a_player_beats_and_stops_once_its_drill_was_ended_elsewhere(
        pg_dsn: str, db_schema: str) -> None:
    conn = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        drill_id = await _running(conn, "d1", None)
        ticks = iter(NOW + n for n in range(1_000_000))
        stop, halt = asyncio.Event(), asyncio.Event()
        player_conn = await connect(pg_dsn, db_schema, autocommit=True)
        player = asyncio.create_task(
            keep_beating(drill_id, held(player_conn), stop=stop, halt=halt,
                         clock=lambda: next(ticks), every_s=0.01), name="test.heartbeat")

        async def beaten() -> bool:
            cur = await conn.execute("SELECT extract(epoch FROM heartbeat_at) FROM drills "
                                     "WHERE id = %s", (drill_id,))
            row = await cur.fetchone()
            return row is not None and row[0] is not None and float(row[0]) >= NOW + 2

        await eventually(beaten, timeout_s=20, what="heartbeats from the injected clock")
        assert await sweep_orphans(conn, now=NOW) == []
        assert not halt.is_set()
        await abandon_drill(conn, drill_id, now=NOW, reason="a person decided so")
        assert await asyncio.wait_for(player, 20) is False
        assert halt.is_set()

        # A player asked to stop says so too, and its drill stays as it was.
        other = await _running(conn, "d2", NOW)
        stop_other, halt_other = asyncio.Event(), asyncio.Event()
        stop_other.set()
        assert await keep_beating(other, held(conn), stop=stop_other, halt=halt_other,
                                  clock=lambda: NOW) is True
        assert halt_other.is_set()
        still = await get_drill(conn, other)
        assert still is not None and still.status == "running"
    finally:
        stop.set()
        await player_conn.close()
        await conn.close()


async def test_a_console_abandons_orphaned_drills_when_it_starts(
        pg_dsn: str, db_schema: str) -> None:
    conn = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        orphan = await _running(conn, "d1", NOW - 3600, "crashed-console pid 7")
        live = await _running(conn, "d2", NOW, "other-console pid 8")
        # Silent for 20 s: alive by the default 60 s, lost by this site's 15 s.
        quiet = await _running(conn, "d3", NOW - 20, "stalled-console pid 9")
        await add_user(conn, "值班", Role.DUTY_OFFICER, ("s1",))  # no first admin to create
        settings = load(None, database={"dsn": pg_dsn, "schema_name": db_schema},
                        simulator={"enabled": False},
                        drills={"heartbeat_s": 2.0, "stale_after_s": 15.0})
        async with MemoryBus() as bus:
            app = create_app(settings, pg_dsn, bus, schema=db_schema, clock=lambda: NOW + 1)
            async with app.router.lifespan_context(app):
                async def abandoned() -> bool:
                    records = [await get_drill(conn, d) for d in (orphan, quiet)]
                    return all(r is not None and r.status == "failed" for r in records)

                await eventually(abandoned, timeout_s=30, what="the console's first sweep")
        record = await get_drill(conn, orphan)
        assert record is not None and "crashed-console pid 7" in record.error
        still = await get_drill(conn, live)
        assert still is not None and still.status == "running"
    finally:
        await conn.close()
