"""The Mosquitto overload trap: a subscriber that falls behind loses QoS 1 messages silently.

With Mosquitto's defaults (max_queued_messages 1000) a persistent QoS 1 session that is
away or slow keeps only the first 1000 messages; the rest are dropped without telling
anyone. The shipped broker settings (config/mosquitto/mosquitto.conf) raise the queue so
ingest's persistent session loses nothing, and ingest only acknowledges after the database
commit. Where a broker does drop, the readings' ``seq`` makes the loss visible: the
detectors' health check counts the hole exactly and raises ``seq_gap``.

Each test runs a private broker (tests/faults/broker.py) with real ingest and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import orjson
import pytest

from config.settings import HealthSettings
from detectors.health import DeviceHealth
from ingest import MqttSource
from shouwang.models import Detection, Reading
from tests.faults.broker import SHIPPED_SETTINGS, PrivateMosquitto
from tests.faults.pipeline import DEVICE, ROOT, TOPIC, register, running_ingest, wait_settled
from tests.integration.mqtt_util import publish_all

pytestmark = pytest.mark.integration

BURST = 5000  # five times Mosquitto's default queue


def _messages(first: int, count: int) -> list[tuple[str, bytes]]:
    now = time.time()
    return [(TOPIC, orjson.dumps({"ts": now + (seq - first) * 0.001, "seq": seq,
                                  "values": {"lel": 1.0}}))
            for seq in range(first, first + count)]


async def _burst_while_ingest_is_away(pg_dsn: str, schema: str, broker: PrivateMosquitto,
                                      client_id: str) -> int:
    """Ingest subscribes, goes away (a crash, a long GC, a slow disk), devices burst."""
    await register(pg_dsn, schema)
    async with MqttSource(host="127.0.0.1", port=broker.port, client_id=client_id,
                          topic_root=ROOT):
        pass  # the persistent session and its subscriptions stay on the broker
    return await asyncio.to_thread(publish_all, ("127.0.0.1", broker.port),
                                   _messages(0, BURST))


def _health(seqs: list[int]) -> list[Detection]:
    health = DeviceHealth({}, HealthSettings())
    out: list[Detection] = []
    for i, seq in enumerate(seqs):
        health.observe(Reading(ts=1_795_660_800.0 + i, device_id=DEVICE.id, site=DEVICE.site,
                               metric="lel", value=1.0, seq=seq), out)
    return out


async def test_the_trap_default_mosquitto_drops_and_seq_gaps_count_it_exactly(
        pg_dsn: str, db_schema: str, tmp_path: Path, run_id: str) -> None:
    with PrivateMosquitto(tmp_path / "default", settings=["persistence true"]) as broker:
        acked = await _burst_while_ingest_is_away(pg_dsn, db_schema, broker, run_id)
        assert acked == BURST  # the broker acknowledged every message to the device...
        async with running_ingest(pg_dsn, db_schema, broker.port, run_id):
            landed = await wait_settled(pg_dsn, db_schema)
            lost = BURST - len(landed)
            # ...and silently dropped most of them: the trap is real on this broker.
            assert 0 < len(landed) < BURST, len(landed)
            assert landed == list(range(len(landed)))  # the newest were dropped
            # The device keeps reporting; its next messages reveal the hole.
            await asyncio.to_thread(publish_all, ("127.0.0.1", broker.port),
                                    _messages(BURST, 60))
            after = await wait_settled(pg_dsn, db_schema, until=BURST + 59)
    assert after == landed + list(range(BURST, BURST + 60))
    gaps = [d for d in _health(after) if d.hazard == "seq_gap" and d.firing]
    assert len(gaps) == 1
    counted = re.search(r"丢失 (\d+) 条", gaps[0].message)
    assert counted is not None and int(counted.group(1)) == lost, gaps[0].message


async def test_the_shipped_broker_config_and_ingest_lose_nothing_under_overload(
        pg_dsn: str, db_schema: str, tmp_path: Path, run_id: str) -> None:
    assert any(s.startswith("max_queued_messages") for s in SHIPPED_SETTINGS)
    with PrivateMosquitto(tmp_path / "shipped", settings=SHIPPED_SETTINGS) as broker:
        acked = await _burst_while_ingest_is_away(pg_dsn, db_schema, broker, run_id)
        assert acked == BURST
        async with running_ingest(pg_dsn, db_schema, broker.port, run_id):
            landed = await wait_settled(pg_dsn, db_schema, until=BURST - 1)
    published, lost, duplicated = BURST, BURST - len(set(landed)), len(landed) - len(set(landed))
    assert (lost, duplicated) == (0, 0), (published, lost, duplicated)
    assert landed == list(range(BURST))
    assert not [d for d in _health(landed) if d.hazard in ("seq_gap", "seq_duplicate")]
