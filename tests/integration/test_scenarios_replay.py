"""Replay: a recorded scenario (CSV) back through the real pipeline at N× speed, and read
back from the database for the next replay."""

from __future__ import annotations

import asyncio
import csv
import time
from pathlib import Path

import pytest

from ingest.decoder import Decoder
from ingest.models import RawMessage
from shouwang.models import ReadingKind
from shouwang.store import connect
from simulators import Community, MqttPublisher
from simulators.replay import play, read_csv, read_db, replay_schedule
from simulators.testbed import hazard_testbed
from tests.integration.e2e import eventually
from tests.integration.test_scenarios import SITE, _rows, _settings, pipeline

pytestmark = pytest.mark.integration


def _record(path: Path) -> tuple[list[tuple[str, str]], int]:
    """Yesterday's gas leaks and SOS as a CSV of readings; returns (expected, row count)."""
    devices, runs = hazard_testbed(SITE)
    keep = {"fast-gas-leak", "slow-gas-leak", "sos", "bystander-gas"}
    devices = [d for d in devices if d.id in keep]
    runs = [r for r in runs if r.device_id in keep]
    span_s = 1800.0
    community = Community(devices, seed=4, epoch0=time.time() - 86_400.0, runs=runs)
    decoder = Decoder({d.id: d for d in devices})
    rows = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ts", "device_id", "site", "metric", "value", "seq"])
        for m in community.due(span_s):
            result = decoder.decode(RawMessage(topic=m.topic, payload=m.payload,
                                               received_at=time.time()))
            for r in result.readings:
                if r.kind is not ReadingKind.STATUS:
                    writer.writerow([r.ts, r.device_id, r.site, r.metric, r.value, r.seq])
                    rows += 1
    expected = sorted({(t.device_id, t.hazard) for t in community.ground_truth()})
    return expected, rows


async def test_a_recorded_csv_replays_into_the_same_alerts(
        pg_dsn: str, db_schema: str, mqtt_addr: tuple[str, int], run_id: str,
        tmp_path: Path) -> None:
    recording = tmp_path / "day.csv"
    expected, rows = _record(recording)
    readings = read_csv(recording)
    assert len(readings) == rows
    devices, _ = hazard_testbed(SITE)
    settings = _settings(pg_dsn, db_schema, mqtt_addr, run_id, devices)
    # 1,800 recorded seconds at 600x: three seconds of wall time.
    schedule = replay_schedule(readings, topic_root=settings.mqtt.topic_root, speed=600.0,
                               epoch0=time.time())
    started = time.time()
    async with pipeline(settings, pg_dsn):
        async with MqttPublisher(*mqtt_addr) as publisher:
            sent = await play(schedule, publisher, asyncio.Event())
            assert await publisher.flush(30.0) and sent == len(schedule)
        assert time.time() - started >= 2.5  # it kept the recording's rhythm, sped up

        async def all_raised() -> bool:
            found = await _rows(pg_dsn, db_schema, "SELECT DISTINCT device_id, hazard "
                                "FROM alerts WHERE kind = 'hazard'")
            return {(str(d), str(h)) for d, h in found} >= set(expected)

        await eventually(all_raised, 60, f"alerts {expected} from the replay")

        async def all_landed() -> bool:
            count = await _rows(pg_dsn, db_schema, "SELECT count(*) FROM readings")
            return count[0][0] == rows

        await eventually(all_landed, 60, "every replayed reading stored")

    conn = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        again = await read_db(conn, site=SITE, since_ts=started - 60, until_ts=time.time() + 60)
    finally:
        await conn.close()
    assert len(again) == rows  # the database mode reads back what the CSV mode replayed
    assert sorted(r.metric for r in again) == sorted(r.metric for r in readings)
    quiet = await _rows(pg_dsn, db_schema, "SELECT hazard FROM alerts WHERE device_id = "
                        "'bystander-gas' AND kind = 'hazard'")
    assert quiet == []
