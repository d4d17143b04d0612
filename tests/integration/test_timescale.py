"""TimescaleDB: readings becomes a compressed hypertable with policies; writes stay idempotent.

CI has no TimescaleDB (Debian ships no package for it), so this module runs only when
SHOUWANG_TEST_TIMESCALE_DSN names a database on a server that preloads TimescaleDB
(``shared_preload_libraries = 'timescaledb'``, PostgreSQL 15 or newer). To run it locally,
for example with the official image::

    docker run -d --name shouwang-tsdb -p 127.0.0.1:56999:5432 \\
        -e POSTGRES_USER=shouwang -e POSTGRES_HOST_AUTH_METHOD=trust \\
        timescale/timescaledb:latest-pg16
    SHOUWANG_TEST_TIMESCALE_DSN=postgresql://shouwang@127.0.0.1:56999/shouwang \\
        .venv/bin/pytest -q tests/integration/test_timescale.py

Give the same DSN as SHOUWANG_TEST_PG_DSN to run the whole suite on the TimescaleDB path.
Each test migrates its own schema and drops it; the extension itself stays in ``public``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from psycopg import AsyncConnection, sql

from shouwang.models import Reading
from shouwang.store import ReadingWriter, connect, migrate
from shouwang.store.schema import has_timescaledb
from tests.integration.timescale import TIMESCALE_DSN, needs_timescale

pytestmark = needs_timescale

DAY = 86_400.0


def _readings(start: float, count: int, device_id: str = "gas-1") -> list[Reading]:
    return [Reading(ts=start + i * 60, device_id=device_id, site="north", metric="lel",
                    value=float(i), seq=i, received_at=start + i * 60) for i in range(count)]


async def _drop(schema: str) -> None:
    conn = await connect(TIMESCALE_DSN, schema, autocommit=True)
    try:
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
            sql.Identifier(schema)))
    finally:
        await conn.close()


@pytest.fixture
async def schema(run_id: str) -> AsyncIterator[str]:
    """A fresh schema migrated on the TimescaleDB server; dropped afterwards."""
    name = run_id[:60]
    conn = await connect(TIMESCALE_DSN, name)
    try:
        assert await has_timescaledb(conn), f"TimescaleDB is not preloaded at {TIMESCALE_DSN}"
        assert await migrate(conn, name) > 0
        await conn.commit()
        yield name
    finally:
        await conn.close()
        await _drop(name)


@pytest.fixture
async def conn(schema: str) -> AsyncIterator[AsyncConnection[Any]]:  # Any: tuple rows
    connection = await connect(TIMESCALE_DSN, schema)
    try:
        yield connection
    finally:
        await connection.close()


async def _rows(conn: AsyncConnection[Any], query: str | sql.Composed,
                *params: object) -> list[Any]:
    cur = await conn.execute(query.encode() if isinstance(query, str) else query, params)
    rows = await cur.fetchall()
    await conn.commit()
    return rows


async def _jobs(conn: AsyncConnection[Any], schema: str) -> dict[str, Any]:
    rows = await _rows(conn, "SELECT proc_name, config FROM timescaledb_information.jobs "
                             "WHERE hypertable_schema = %s AND hypertable_name = 'readings'",
                       schema)
    assert len(rows) == len({name for name, _ in rows}), rows
    return dict(rows)


async def _chunk_query(conn: AsyncConnection[Any], query: str) -> sql.Composed:
    """``query`` with ``{ext}`` naming the extension's schema, which is not on search_path."""
    [(extension_schema,)] = await _rows(
        conn, "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n "
              "ON n.oid = e.extnamespace WHERE e.extname = 'timescaledb'")
    return sql.SQL(query).format(ext=sql.Identifier(extension_schema))


async def _count(conn: AsyncConnection[Any]) -> int:
    [(count,)] = await _rows(conn, "SELECT count(*) FROM readings")
    return int(count)


async def test_readings_is_a_compressed_hypertable_with_policies(
        conn: AsyncConnection[Any], schema: str) -> None:
    hypertables = await _rows(
        conn, "SELECT compression_enabled FROM timescaledb_information.hypertables "
              "WHERE hypertable_schema = %s AND hypertable_name = 'readings'", schema)
    assert hypertables == [(True,)]
    dimensions = await _rows(
        conn, "SELECT column_name, time_interval FROM timescaledb_information.dimensions "
              "WHERE hypertable_schema = %s AND hypertable_name = 'readings'", schema)
    assert dimensions == [("ts", timedelta(days=1))]
    settings = await _rows(
        conn, "SELECT attname, segmentby_column_index, orderby_column_index "
              "FROM timescaledb_information.compression_settings "
              "WHERE hypertable_schema = %s AND hypertable_name = 'readings' "
              "AND (segmentby_column_index IS NOT NULL OR orderby_column_index IS NOT NULL) "
              "ORDER BY attname", schema)
    assert settings == [("device_id", 1, None), ("metric", 2, None), ("ts", None, 1)]
    jobs = await _jobs(conn, schema)
    assert set(jobs) == {"policy_compression", "policy_retention"}
    assert jobs["policy_compression"]["compress_after"] == "7 days"
    assert jobs["policy_retention"]["drop_after"] == "400 days"
    # The extension must not live in the migrated schema: dropping that would drop it.
    [(extension_schema,)] = await _rows(
        conn, "SELECT extnamespace::regnamespace::text FROM pg_extension "
              "WHERE extname = 'timescaledb'")
    assert extension_schema != schema


async def test_migrate_twice_changes_nothing(conn: AsyncConnection[Any], schema: str) -> None:
    before = await _jobs(conn, schema)
    assert await migrate(conn, schema) == 0
    await conn.commit()
    assert await _jobs(conn, schema) == before
    hypertables = await _rows(
        conn, "SELECT count(*) FROM timescaledb_information.hypertables "
              "WHERE hypertable_schema = %s", schema)
    assert hypertables == [(1,)]


async def test_redelivered_readings_land_once(conn: AsyncConnection[Any]) -> None:
    writer = ReadingWriter(conn)
    batch = _readings(time.time() - 2 * DAY, 100)  # spans two daily chunks
    assert await writer.write(batch) == 100
    assert await writer.write(batch) == 0
    assert await writer.write(batch[40:] + _readings(time.time(), 5)) == 5
    assert await _count(conn) == 105
    chunks = await _rows(conn, await _chunk_query(
        conn, "SELECT count(*) FROM {ext}.show_chunks('readings')"))
    assert chunks[0][0] >= 2


async def test_redelivery_into_a_compressed_chunk_is_ignored(
        conn: AsyncConnection[Any]) -> None:
    writer = ReadingWriter(conn)
    old = _readings(time.time() - 10 * DAY, 50)  # older than the compression policy's 7 days
    assert await writer.write(old) == 50
    compressed = await _rows(conn, await _chunk_query(
        conn, "SELECT {ext}.compress_chunk(c) FROM {ext}.show_chunks('readings') AS c"))
    assert compressed
    stats = await _rows(conn, await _chunk_query(
        conn, "SELECT count(*) FROM {ext}.chunk_compression_stats('readings') "
              "WHERE compression_status = 'Compressed'"))
    assert stats[0][0] >= 1
    # A device that buffered while offline sends the same old readings again, plus one more.
    late = _readings(time.time() - 10 * DAY + 50 * 60, 1, device_id="gas-1")
    assert await writer.write(old + late) == 1
    assert await _count(conn) == 51
    values = await _rows(conn, "SELECT value FROM readings ORDER BY ts")
    assert [v for (v,) in values] == [float(i) for i in range(50)] + [0.0]


async def test_several_schemas_share_one_extension(schema: str, run_id: str) -> None:
    other = f"{run_id[:54]}_other"
    other_conn = await connect(TIMESCALE_DSN, other)
    try:
        assert await migrate(other_conn, other) > 0
        await other_conn.commit()
        await _drop(schema)  # the first schema goes, as after a test; the extension stays
        assert await ReadingWriter(other_conn).write(_readings(time.time(), 3)) == 3
        assert await _count(other_conn) == 3
        assert set(await _jobs(other_conn, other)) == {"policy_compression", "policy_retention"}
    finally:
        await other_conn.close()
        await _drop(other)
