"""Kill -9 the ingest process mid-stream: nothing lost, nothing doubled (ack after commit)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import yaml

from shouwang.store import connect
from tests.integration.mqtt_util import publish_all

pytestmark = pytest.mark.integration

DEVICES = 20
MESSAGES_PER_DEVICE = 1000
METRICS = {"lel": 1.5, "co": 2.0, "battery": 90.0}


def _config(path: Path, pg_dsn: str, schema: str, mqtt_addr: tuple[str, int],
            run_id: str) -> Path:
    path.write_text(yaml.safe_dump({
        "database": {"dsn": pg_dsn, "schema_name": schema},
        "mqtt": {"host": mqtt_addr[0], "port": mqtt_addr[1], "client_id": f"{run_id}-ingest",
                 "topic_root": f"{run_id}/v1"},
        "bus": {"kind": "memory"},
        "sites": [{"id": "north", "name": "North"}],
        "devices": [{"id": f"gas-{i}", "type": "gas", "site": "north"} for i in range(DEVICES)],
    }))
    return path


def _start_ingest(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "shouwang.cli", "ingest", "--config", str(config)],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, env={**os.environ})


async def _rows(pg_dsn: str, schema: str) -> tuple[int, int]:
    conn = await connect(pg_dsn, schema, autocommit=True)
    try:
        cur = await conn.execute(
            "SELECT count(*), count(DISTINCT (device_id, metric, seq)) FROM readings")
        row = await cur.fetchone()
        assert row is not None
        return int(row[0]), int(row[1])
    finally:
        await conn.close()


async def _wait_rows(pg_dsn: str, schema: str, at_least: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        total, _ = await _rows(pg_dsn, schema)
        if total >= at_least:
            return total
        await asyncio.sleep(0.05)
    return (await _rows(pg_dsn, schema))[0]


async def test_kill_9_mid_stream_loses_and_doubles_nothing(
        tmp_path: Path, pg_dsn: str, db_schema: str, mqtt_addr: tuple[str, int],
        run_id: str) -> None:
    config = _config(tmp_path / "ingest.yaml", pg_dsn, db_schema, mqtt_addr, run_id)
    log = tmp_path / "ingest.log"
    root = f"{run_id}/v1"
    base_ts = time.time() - 3600
    probe = [(f"{root}/north/gas-0/telemetry",
              orjson.dumps({"ts": base_ts - 1, "seq": 0, "values": {"lel": 0.0}}))]
    stream = [
        (f"{root}/north/gas-{d}/telemetry",
         orjson.dumps({"ts": base_ts + n * 0.01, "seq": n + 1, "values": METRICS}))
        for n in range(MESSAGES_PER_DEVICE) for d in range(DEVICES)
    ]
    expected = 1 + len(stream) * len(METRICS)

    ingest = _start_ingest(config, log)
    try:
        # The probe lands only once the persistent session exists and ingest writes.
        for _ in range(300):
            publish_all(mqtt_addr, probe)
            if await _wait_rows(pg_dsn, db_schema, 1, 0.2) >= 1:
                break
        else:
            pytest.fail(f"ingest never wrote the probe; log:\n{log.read_text()[-3000:]}")

        publishing = asyncio.create_task(asyncio.to_thread(publish_all, mqtt_addr, stream))
        landed_before_kill = await _wait_rows(pg_dsn, db_schema, expected // 4, 60)
        ingest.send_signal(signal.SIGKILL)
        ingest.wait(10)
        assert landed_before_kill < expected, "the kill must happen mid-stream"
        acknowledged = await publishing
        assert acknowledged == len(stream), "the broker must have taken every message"

        ingest = _start_ingest(config, log)
        total = await _wait_rows(pg_dsn, db_schema, expected, 120)
        await asyncio.sleep(1.0)  # anything extra would show up now
        total, distinct = await _rows(pg_dsn, db_schema)
        assert total == expected, f"lost {expected - total} readings"
        assert distinct == total
    finally:
        ingest.send_signal(signal.SIGTERM)
        try:
            ingest.wait(20)
        except subprocess.TimeoutExpired:
            ingest.kill()
