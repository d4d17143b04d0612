"""The console's charts on TimescaleDB: the 1-minute continuous aggregate ``readings_1m``.

Runs only with SHOUWANG_TEST_TIMESCALE_DSN (a PostgreSQL that preloads TimescaleDB; see
tests/integration/test_timescale.py for how to get one), like the store's own TimescaleDB
tests: CI has none. The plain-PostgreSQL path (and the aggregate query, over a stand-in
view) is tested in CI by tests/integration/test_console_board.py.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import pytest
from psycopg import AsyncConnection, errors, sql

from console.device_detail import Bucket, has_minute_aggregate, reading_buckets
from shouwang.models import Reading
from shouwang.store import ReadingWriter, connect, migrate
from shouwang.store.schema import MIGRATIONS, has_timescaledb
from tests.integration.timescale import TIMESCALE_DSN, needs_timescale

pytestmark = needs_timescale


@pytest.fixture
async def conn(run_id: str) -> AsyncIterator[AsyncConnection[Any]]:  # Any: tuple rows
    schema = f"c{run_id[:58]}"
    connection = await connect(TIMESCALE_DSN, schema, autocommit=True)
    try:
        assert await has_timescaledb(connection), f"TimescaleDB is not preloaded at {TIMESCALE_DSN}"
        assert await migrate(connection, schema) > 0
        yield connection
    finally:
        await connection.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
            sql.Identifier(schema)))
        await connection.close()


async def _schema(conn: AsyncConnection[Any]) -> str:
    cur = await conn.execute("SELECT current_schema()")
    row = await cur.fetchone()
    assert row is not None
    return str(row[0])


async def _aggregate(conn: AsyncConnection[Any]) -> list[tuple[Any, ...]]:
    cur = await conn.execute(
        "SELECT materialized_only FROM timescaledb_information.continuous_aggregates "
        "WHERE view_schema = %s AND view_name = 'readings_1m'", (await _schema(conn),))
    return await cur.fetchall()


def _expected(readings: list[Reading], bucket_s: int) -> list[Bucket]:
    groups: dict[float, list[float]] = defaultdict(list)
    for r in readings:
        groups[r.ts // bucket_s * bucket_s].append(r.value)
    return [Bucket(start=start, low=min(v), mean=sum(v) / len(v), high=max(v), count=len(v))
            for start, v in sorted(groups.items())]


async def test_a_new_schema_gets_a_real_time_minute_aggregate_with_a_refresh_policy(
        conn: AsyncConnection[Any]) -> None:
    assert await _aggregate(conn) == [(False,)]  # recent readings show before a refresh
    assert await has_minute_aggregate(conn)
    cur = await conn.execute(
        "SELECT proc_name, schedule_interval FROM timescaledb_information.jobs "
        "WHERE hypertable_schema = %s AND hypertable_name = 'readings_1m'",
        (await _schema(conn),))
    [(proc, interval)] = await cur.fetchall()
    assert proc == "policy_refresh_continuous_aggregate"
    assert interval.total_seconds() == 60


async def test_a_database_migrated_before_gets_it_from_its_migration(
        conn: AsyncConnection[Any]) -> None:
    # As a database whose readings were a hypertable before this migration existed.
    await conn.execute("DROP MATERIALIZED VIEW readings_1m")
    assert not await has_minute_aggregate(conn)
    [migration] = [m for m in MIGRATIONS if "readings_1m" in m]
    async with conn.transaction():  # as migrate() runs it
        await conn.execute(migration.encode())
    assert await _aggregate(conn) == [(False,)]
    async with conn.transaction():  # run again (another schema's turn): nothing changes
        await conn.execute(migration.encode())
    assert await _aggregate(conn) == [(False,)]


async def test_chart_buckets_come_from_the_aggregate_and_match_the_readings(
        conn: AsyncConnection[Any]) -> None:
    end = float(int(time.time()) // 60 * 60)
    start = end - 3600
    readings = [Reading(ts=start + 20 * i, device_id="g1", site="s1", metric="lel",
                        value=float(i % 17), seq=i, received_at=start + 20 * i)
                for i in range(180)]
    assert await ReadingWriter(conn).write(readings) == 180
    expected = _expected(readings, 300)
    # Before any refresh (real-time part of the aggregate), then materialized.
    assert await reading_buckets(conn, "g1", "lel", start=start, end=end,
                                 bucket_s=300) == expected
    [(ext,)] = await (await conn.execute(
        "SELECT extnamespace::regnamespace::text FROM pg_extension "
        "WHERE extname = 'timescaledb'")).fetchall()
    refresh = sql.SQL("CALL {}.refresh_continuous_aggregate({}::regclass, NULL, NULL)").format(
        sql.Identifier(ext), sql.Literal(f"{await _schema(conn)}.readings_1m"))
    deadline = time.monotonic() + 30
    while True:
        try:
            await conn.execute(refresh)
            break
        except errors.LockNotAvailable:  # the refresh policy's own job is at it
            assert time.monotonic() < deadline, "the aggregate stayed locked for 30 s"
            await asyncio.sleep(0.2)
    cur = await conn.execute("SELECT sum(n) FROM readings_1m")
    assert await cur.fetchone() == (180,)
    # Proof that the aggregate is what the chart reads: change a reading behind its back.
    await conn.execute("UPDATE readings SET value = 1000 WHERE ts = to_timestamp(%s)",
                       (start,))
    stale = await reading_buckets(conn, "g1", "lel", start=start, end=end, bucket_s=300)
    assert stale == expected
