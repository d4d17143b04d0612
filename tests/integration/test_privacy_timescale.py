"""Health retention on TimescaleDB: the batched purge deletes expired health readings from
compressed chunks of the readings hypertable and keeps everything else.

Runs when SHOUWANG_TEST_TIMESCALE_DSN names a server that preloads TimescaleDB (see
tests/integration/test_timescale.py); CI has none, so it is skipped there, like that module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from psycopg import AsyncConnection, sql

from shouwang.privacy import purge_health
from shouwang.store import connect, migrate
from shouwang.store.schema import has_timescaledb
from tests.integration.privacy_seed import DAY, NOW, privacy_settings, seed
from tests.integration.timescale import TIMESCALE_DSN, needs_timescale

pytestmark = needs_timescale


@pytest.fixture
async def db(run_id: str) -> AsyncIterator[AsyncConnection[Any]]:  # Any: tuple rows
    schema = run_id[:60]
    conn = await connect(TIMESCALE_DSN, schema, autocommit=True)
    try:
        assert await has_timescaledb(conn), f"TimescaleDB is not preloaded at {TIMESCALE_DSN}"
        await migrate(conn, schema)
        yield conn
    finally:
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
            sql.Identifier(schema)))
        await conn.close()


async def _one(db: AsyncConnection[Any], query: str, *args: Any) -> Any:  # Any: a cell
    cur = await db.execute(query, args)
    row = await cur.fetchone()
    assert row is not None
    return row[0]


async def test_purge_deletes_from_compressed_chunks(db: AsyncConnection[Any]) -> None:
    settings = privacy_settings()
    await seed(db, settings)
    ext = await _one(db, "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n "
                         "ON n.oid = e.extnamespace WHERE e.extname = 'timescaledb'")
    # What the 7-day compression policy would have done by now.
    cur = await db.execute(sql.SQL(
        "SELECT {ext}.compress_chunk(c, if_not_compressed => true) FROM "
        "{ext}.show_chunks('readings'::regclass, older_than => to_timestamp(%s)) c").format(
            ext=sql.Identifier(ext)), (NOW - 7 * DAY,))
    assert len(await cur.fetchall()) >= 1
    assert await _one(db, sql.SQL(
        "SELECT count(*) FROM {ext}.chunk_compression_stats('readings'::regclass) "
        "WHERE compression_status = 'Compressed'").format(ext=sql.Identifier(ext))) >= 1

    result = await purge_health(db, settings, now=NOW, actor="test")

    assert result.deleted == 8
    assert await _one(db, "SELECT count(*) FROM readings WHERE device_id LIKE 'wear-%%' "
                          "AND metric <> 'battery' AND ts < to_timestamp(%s)",
                      NOW - 30 * DAY) == 0
    assert await _one(db, "SELECT count(*) FROM readings WHERE metric = 'heart_rate'") == 6
    assert await _one(db, "SELECT count(*) FROM readings WHERE metric IN ('battery', 'lel')") \
        == 2
