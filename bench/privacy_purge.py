"""Health-data retention: how fast the batched purge deletes expired wearable readings.

    .venv/bin/python -m bench.privacy_purge [--dsn DSN] [--wearables 10] [--days 45]
        [--interval 60] [--retention 30] [--batch 5000]

Migrates a fresh schema on --dsn (default: the PostgreSQL of scripts/services.sh), writes
heart rate and blood oxygen of --wearables wearables and one gas sensor's lel every
--interval seconds over --days days (server-side ``generate_series``), analyses, then
runs ``shouwang.privacy.purge_health`` once with --retention days and --batch rows per
statement and checks the result: no expired health reading left, every recent one and
every gas reading kept. The schema is dropped at the end. The last line is the headline.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
import uuid
from typing import Any

from psycopg import AsyncConnection, sql

from bench._services import service_env
from config.settings import load
from shouwang.privacy import purge_health
from shouwang.store import connect, migrate
from shouwang.store.registry import sync_registry

log = logging.getLogger("bench.privacy_purge")

_DAY = 86_400.0
_FILL = """
INSERT INTO readings (ts, device_id, metric, value, seq, received_at)
SELECT to_timestamp(%(end)s - n * %(interval)s), %(device)s, %(metric)s, 60 + n %% 40, n,
       to_timestamp(%(end)s - n * %(interval)s)
FROM generate_series(1, %(count)s) AS n
"""


async def _count(conn: AsyncConnection[Any], query: str,  # Any: tuple rows
                 *args: float) -> int:
    cur = await conn.execute(query, args)
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def main(args: argparse.Namespace) -> None:
    dsn = args.dsn or service_env()["SHOUWANG_TEST_PG_DSN"]
    schema = f"bench_purge_{uuid.uuid4().hex[:8]}"
    wearables = [f"wear-{i}" for i in range(args.wearables)]
    settings = load(None, sites=[{"id": "bench", "name": "bench"}],
                    devices=[*({"id": w, "type": "wearable", "site": "bench"} for w in wearables),
                             {"id": "gas-0", "type": "gas", "site": "bench"}],
                    privacy={"health_retention_days": args.retention,
                             "purge_batch": args.batch})
    conn = await connect(dsn, schema, autocommit=True)
    try:
        await migrate(conn, schema)
        await sync_registry(conn, settings.site_map().values(), settings.device_map().values())
        end = time.time()
        count = int(args.days * _DAY / args.interval)
        for device, metric in [*((w, m) for w in wearables for m in ("heart_rate", "spo2")),
                               ("gas-0", "lel")]:
            await conn.execute(_FILL, {"end": end, "interval": args.interval, "device": device,
                                       "metric": metric, "count": count})
        await conn.execute("ANALYZE readings")
        cutoff = end - args.retention * _DAY
        total = await _count(conn, "SELECT count(*) FROM readings")
        expired = await _count(conn, "SELECT count(*) FROM readings WHERE device_id <> 'gas-0' "
                                     "AND ts < to_timestamp(%s)", cutoff)
        log.info("loaded %d readings, %d of them expired health readings", total, expired)
        started = time.perf_counter()
        result = await purge_health(conn, settings, now=end, actor="bench")
        took = time.perf_counter() - started
        left = await _count(conn, "SELECT count(*) FROM readings WHERE device_id <> 'gas-0' "
                                  "AND ts < to_timestamp(%s)", cutoff)
        kept = await _count(conn, "SELECT count(*) FROM readings")
        assert result.deleted == expired and left == 0, (result, expired, left)
        assert kept == total - expired, (kept, total, expired)
        print(f"purged {result.deleted:,} expired health readings of {args.wearables} "
              f"wearables in {took:.2f} s ({result.deleted / took:,.0f} rows/s, "
              f"{result.batches} statements of <= {args.batch}); kept {kept:,} rows "
              f"(recent health and all gas)")
    finally:
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
            sql.Identifier(schema)))
        await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=None)
    parser.add_argument("--wearables", type=int, default=10)
    parser.add_argument("--days", type=float, default=45.0)
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--retention", type=int, default=30)
    parser.add_argument("--batch", type=int, default=5000)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(main(parser.parse_args()))
