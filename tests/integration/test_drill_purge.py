"""Purging a drill removes exactly its own rows: never real data, never another drill's.

The database is seeded by hand around one finished drill on device d1 (window
[T0, T0 + 600]): its drill readings and alert (with history, messages and escalation) go;
real readings and a real alert on the same device in the same window stay, as do drill
rows outside the window and another device's drill rows. The scorecard stays too.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import Any

import pytest
from psycopg import AsyncConnection

from config.settings import DrillSettings
from shouwang.store import connect, migrate
from simulators.drill import held
from simulators.drill_purge import (
    DrillNotFinished,
    UnknownDrill,
    abandon_drill,
    purge_drill,
    purge_expired,
    retire,
)
from simulators.scorecard import (
    Scorecard,
    ScoreRow,
    load_scorecard,
    save_scorecard,
    start_drill_row,
)

pytestmark = pytest.mark.integration

T0 = time.time() - 7200.0
END = T0 + 600.0


async def _drill(conn: AsyncConnection[Any], started: float, finished: float | None,
                 devices: list[str]) -> int:  # Any: tuple rows
    drill_id = await start_drill_row(conn, scenario="fast_gas_leak", site="s1",
                                     started_at=started, device_id=devices[0],
                                     devices=devices)
    if finished is not None:
        card = Scorecard(drill_id=drill_id, scenario="fast_gas_leak", site="s1",
                         device_id=devices[0], started_at=started, onset_ts=started + 3,
                         rows=(ScoreRow(device_id=devices[0], hazard="gas",
                                        expected_severity="red", alert_id=1,
                                        severity="red", detected_s=5.0),),
                         unexpected=())
        await save_scorecard(conn, card, finished)
    return drill_id


async def _reading(conn: AsyncConnection[Any], ts: float, device: str, metric: str,
                   drill: bool) -> None:  # Any: tuple rows
    await conn.execute("INSERT INTO readings (ts, device_id, metric, value, seq, received_at, "
                       "drill) VALUES (to_timestamp(%s), %s, %s, 1.0, 1, now(), %s)",
                       (ts, device, metric, drill))


async def _alert(conn: AsyncConnection[Any], device: str, hazard: str, opened: float,
                 drill: bool) -> int:  # Any: tuple rows
    cur = await conn.execute(
        "INSERT INTO alerts (site, device_id, hazard, kind, severity, status, opened_at, drill) "
        "VALUES ('s1', %s, %s, 'hazard', 4, 'resolved', to_timestamp(%s), %s) RETURNING id",
        (device, hazard, opened, drill))
    row = await cur.fetchone()
    assert row is not None
    alert_id = int(row[0])
    for action in ("opened", "acknowledged"):
        await conn.execute("INSERT INTO alert_events (alert_id, at, actor, action, to_status) "
                           "VALUES (%s, to_timestamp(%s), 'x', %s, %s)",
                           (alert_id, opened + 1, action, action))
    await conn.execute(
        "INSERT INTO notifications (alert_id, receiver, channel, body, status, created_at, "
        "next_attempt_at, sent_at) VALUES (%s, 'station', 'sms', 'b', 'sent', "
        "to_timestamp(%s), to_timestamp(%s), to_timestamp(%s))",
        (alert_id, opened, opened, opened + 1))
    await conn.execute("INSERT INTO escalations (alert_id, policy, next_step, due_at) "
                       "VALUES (%s, 'p', 1, to_timestamp(%s))", (alert_id, opened + 60))
    return alert_id


async def _rows(conn: AsyncConnection[Any], query: str) -> list[tuple[Any, ...]]:  # Any: rows
    cur = await conn.execute(query)
    return list(await cur.fetchall())


async def test_purge_removes_exactly_the_drills_rows(pg_dsn: str, db_schema: str) -> None:
    conn = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        await migrate(conn, db_schema)
        drill_id = await _drill(conn, T0, END, ["d1"])
        # Going: d1's drill readings in the window.
        for n in range(3):
            await _reading(conn, T0 + 10 + n, "d1", "lel", True)
        # Staying: a real reading in the window, d1 drill data outside it, d2's drill data.
        await _reading(conn, T0 + 10, "d1", "battery", False)
        await _reading(conn, T0 - 100, "d1", "lel", True)
        await _reading(conn, END + 100, "d1", "lel", True)
        await _reading(conn, T0 + 10, "d2", "lel", True)
        gone = await _alert(conn, "d1", "gas", T0 + 20, True)
        kept = [await _alert(conn, "d1", "co", T0 + 30, False),   # a real alarm meanwhile
                await _alert(conn, "d2", "gas", T0 + 20, True),   # another device's drill
                await _alert(conn, "d1", "gas", END + 300, True)]  # a later drill's
        before = {table: await _rows(conn, f"SELECT * FROM {table} ORDER BY 1, 2")
                  for table in ("alert_events", "notifications", "escalations")}

        counts = await purge_drill(conn, drill_id, now=time.time())

        expected = {"drill_id": drill_id, "readings": 3, "alerts": 1, "alert_events": 2,
                    "notifications": 1, "escalations": 1}
        found = counts.to_json()
        # Other tables pointing at alerts (found from the schema) had nothing of this drill.
        assert {k: found.pop(k) for k in expected} == expected and set(found.values()) <= {0}
        remaining = await _rows(conn, f"SELECT device_id, metric, drill, "
                                      f"round(extract(epoch FROM ts) - {T0}) FROM readings "
                                      f"ORDER BY 1, 4, 2")
        assert remaining == [("d1", "lel", True, -100), ("d1", "battery", False, 10),
                             ("d1", "lel", True, 700), ("d2", "lel", True, 10)]
        assert [r[0] for r in await _rows(conn, "SELECT id FROM alerts ORDER BY id")] == kept
        for table, rows in before.items():
            after = await _rows(conn, f"SELECT * FROM {table} ORDER BY 1, 2")
            alert_column = 0 if table == "escalations" else 1
            assert after == [r for r in rows if r[alert_column] != gone], table
        card = await load_scorecard(conn, drill_id)
        assert card is not None and card.rows[0].detected_s == 5.0  # the report stays
        (purged_at,) = (await _rows(conn, f"SELECT purged_at FROM drills WHERE id = {drill_id}"))
        assert purged_at[0] is not None

        again = await purge_drill(conn, drill_id, now=time.time())
        assert (again.readings, again.alerts) == (0, 0)
        with pytest.raises(UnknownDrill):
            await purge_drill(conn, 9999, now=time.time())
        running = await _drill(conn, time.time(), None, ["d3"])
        with pytest.raises(DrillNotFinished):
            await purge_drill(conn, running, now=time.time())
    finally:
        await conn.close()


async def test_drill_data_is_purged_automatically_when_not_kept(pg_dsn: str,
                                                                 db_schema: str) -> None:
    now = time.time()
    conn = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        await migrate(conn, db_schema)
        old = await _drill(conn, now - 7200, now - 6000, ["old"])
        recent = await _drill(conn, now - 100, now - 10, ["recent"])
        await _reading(conn, now - 7000, "old", "lel", True)
        await _reading(conn, now - 50, "recent", "lel", True)

        done = await purge_expired(conn, now=now, purge_after_s=3600)
        assert [c.drill_id for c in done] == [old]
        assert await _rows(conn, "SELECT device_id FROM readings") == [("recent",)]

        stop = asyncio.Event()
        await retire(held(conn), DrillSettings(keep=True, purge_after_s=0),
                     finished_at=now - 10, stop=stop, clock=time.time)
        assert await _rows(conn, "SELECT device_id FROM readings") == [("recent",)]  # kept
        await retire(held(conn), DrillSettings(keep=False, purge_after_s=0),
                     finished_at=now - 10, stop=stop, clock=time.time)
        assert await _rows(conn, "SELECT device_id FROM readings") == []
        purged = await _rows(conn, "SELECT id FROM drills WHERE purged_at IS NOT NULL "
                                   "ORDER BY id")
        assert purged == [(old,), (recent,)]
    finally:
        await conn.close()


async def test_cli_purge(pg_dsn: str, db_schema: str) -> None:
    conn = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        await migrate(conn, db_schema)
        drill_id = await _drill(conn, T0, END, ["d1"])
        await _reading(conn, T0 + 10, "d1", "lel", True)
        await _reading(conn, T0 + 10, "d1", "battery", False)
    finally:
        await conn.close()
    env = {**os.environ, "SHOUWANG_DATABASE__DSN": pg_dsn,
           "SHOUWANG_DATABASE__SCHEMA_NAME": db_schema}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "shouwang.cli", "drill", *args],
                              capture_output=True, text=True, env=env, timeout=60,
                              check=False)

    done = await asyncio.to_thread(cli, "--purge", str(drill_id))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"drill_id={drill_id} readings=1 alerts=0")
    missing = await asyncio.to_thread(cli, "--purge", "9999")
    assert missing.returncode != 0 and "no drill 9999" in missing.stderr
    conn = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        assert await _rows(conn, "SELECT metric, drill FROM readings") == [("battery", False)]
    finally:
        await conn.close()


async def test_an_abandoned_drill_can_be_purged(pg_dsn: str, db_schema: str) -> None:
    """A drill whose player was killed stays running until someone abandons it."""
    conn = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        await migrate(conn, db_schema)
        stuck = await _drill(conn, T0, None, ["d1"])
        await _reading(conn, T0 + 10, "d1", "lel", True)
        with pytest.raises(DrillNotFinished):
            await purge_drill(conn, stuck, now=time.time())
        await abandon_drill(conn, stuck, now=END, reason="its player stopped")
        with pytest.raises(ValueError, match="already finished"):
            await abandon_drill(conn, stuck, now=END, reason="again")
        with pytest.raises(UnknownDrill):
            await abandon_drill(conn, 9999, now=END, reason="none")
        counts = await purge_drill(conn, stuck, now=time.time())
        assert (counts.readings, counts.alerts) == (1, 0)
        [(report,)] = await _rows(conn, f"SELECT report FROM drills WHERE id = {stuck}")
        assert report["status"] == "failed" and report["error"].startswith("abandoned: ")
    finally:
        await conn.close()
