"""Device chart query: the TimescaleDB 1-minute continuous aggregate against raw readings.

    .venv/bin/python -m bench.console_chart [--dsn DSN] [--devices 10] [--days 7]
        [--interval 10] [--runs 20]

Migrates a fresh schema on --dsn (default SHOUWANG_TEST_TIMESCALE_DSN, else the PostgreSQL
of scripts/services.sh), writes --devices gas detectors' lel every --interval seconds for
--days days with the store's COPY writer, refreshes the aggregate as its policy would, then
times the console's chart query (``console.device_detail.reading_buckets``) for one device:
24 h and 7 d in 120 buckets, from the aggregate and from the raw readings (``date_bin``),
--runs times each after one warm-up; both answers must agree. The schema is dropped at the
end. Both tables are analysed first, as autovacuum would. On plain PostgreSQL only the raw
path exists. The last line is the headline.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import time
import uuid

from psycopg import sql

from bench._services import service_env
from console.device_detail import Bucket, has_minute_aggregate, reading_buckets
from shouwang.models import Reading
from shouwang.store import ReadingWriter, connect, migrate

log = logging.getLogger("bench.console_chart")

_BATCH = 20_000


async def _load(dsn: str, schema: str, devices: int, days: float, interval: float,
                end: float) -> int:
    conn = await connect(dsn, schema)
    try:
        writer = ReadingWriter(conn)
        count = int(days * 86_400 / interval)
        written = 0
        for d in range(devices):
            batch: list[Reading] = []
            for i in range(count):
                ts = end - (count - i) * interval
                batch.append(Reading(ts=ts, device_id=f"gas-{d}", site="bench", metric="lel",
                                     value=float((i * 7 + d) % 40), seq=i, received_at=ts))
                if len(batch) == _BATCH:
                    written += await writer.write(batch)
                    batch = []
            written += await writer.write(batch)
        await conn.commit()
        return written
    finally:
        await conn.close()


async def _time(dsn: str, schema: str, *, hours: float, aggregate: bool, runs: int,
                end: float) -> tuple[float, list[Bucket]]:
    conn = await connect(dsn, schema, autocommit=True)
    try:
        times = []
        found: list[Bucket] = []
        for run in range(runs + 1):
            started = time.perf_counter()
            found = await reading_buckets(conn, "gas-0", "lel", start=end - hours * 3600,
                                          end=end, bucket_s=hours * 3600 / 120,
                                          aggregate=aggregate)
            if run:  # the first one warms the cache
                times.append((time.perf_counter() - started) * 1000)
        return statistics.median(times), found
    finally:
        await conn.close()


async def main(args: argparse.Namespace) -> None:
    dsn = args.dsn or os.environ.get("SHOUWANG_TEST_TIMESCALE_DSN") or \
        service_env()["SHOUWANG_TEST_PG_DSN"]
    schema = f"bench_chart_{uuid.uuid4().hex[:8]}"
    end = float(int(time.time()) // 60 * 60)
    conn = await connect(dsn, schema, autocommit=True)
    try:
        await migrate(conn, schema)
        started = time.perf_counter()
        rows = await _load(dsn, schema, args.devices, args.days, args.interval, end)
        log.info("wrote %d readings in %.1f s", rows, time.perf_counter() - started)
        timescale = await has_minute_aggregate(conn)
        if timescale:
            cur = await conn.execute("SELECT extnamespace::regnamespace::text FROM "
                                     "pg_extension WHERE extname = 'timescaledb'")
            row = await cur.fetchone()
            assert row is not None
            started = time.perf_counter()
            await conn.execute(sql.SQL("CALL {}.refresh_continuous_aggregate({}::regclass, "
                                       "NULL, NULL)").format(
                sql.Identifier(row[0]), sql.Literal(f"{schema}.readings_1m")))
            log.info("aggregate refreshed in %.1f s", time.perf_counter() - started)
            cur = await conn.execute(
                "SELECT materialization_hypertable_schema, materialization_hypertable_name "
                "FROM timescaledb_information.continuous_aggregates "
                "WHERE view_schema = %s AND view_name = 'readings_1m'", (schema,))
            materialized = await cur.fetchone()
            assert materialized is not None
            await conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(*materialized)))
        await conn.execute("ANALYZE readings")  # as autovacuum would, for both paths
        results = []
        for hours in (24.0, 24.0 * 7):
            raw_ms, raw = await _time(dsn, schema, hours=hours, aggregate=False,
                                      runs=args.runs, end=end)
            line = f"{hours / 24:g} d in 120 buckets: raw date_bin p50 {raw_ms:.1f} ms"
            if timescale:
                agg_ms, agg = await _time(dsn, schema, hours=hours, aggregate=True,
                                          runs=args.runs, end=end)
                if [(b.start, b.count) for b in agg] != [(b.start, b.count) for b in raw]:
                    raise SystemExit(f"{hours} h: the aggregate's buckets differ from raw")
                line += f", continuous aggregate p50 {agg_ms:.1f} ms ({raw_ms / agg_ms:.0f}x)"
            results.append(line)
            print(line)
        print(f"chart query, one device of {args.devices} x {args.days:g} d at "
              f"{args.interval:g} s ({rows} readings, "
              f"{'TimescaleDB' if timescale else 'plain PostgreSQL'}): " + "; ".join(results))
    finally:
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
            sql.Identifier(schema)))
        await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default="")
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=20)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    asyncio.run(main(parser.parse_args()))
