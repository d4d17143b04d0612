"""Kill -9 the alerting process mid-escalation (Kafka bus, real clock, real HTTP sink).

The fire station's SMS goes out, the process is SIGKILLed before the duty officer's
step is due and started again: the step fires at its due time, not before, and
nobody gets anything twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from shouwang.bus.kafka import KafkaBus
from shouwang.codec import encode_detection
from shouwang.models import Detection, DetectionKind, Severity
from shouwang.sink import LocalSink
from shouwang.store import connect
from tests.integration.test_alerting_service import eventually

pytestmark = pytest.mark.integration

ESCALATE_AFTER_S = 3.0


def _config(path: Path, pg_dsn: str, schema: str, kafka: str, run_id: str, port: int) -> Path:
    def receiver(name: str) -> dict[str, object]:
        return {"name": name, "channel": "sms", "urls": [f"json://127.0.0.1:{port}/{name}"]}
    path.write_text(yaml.safe_dump({
        "database": {"dsn": pg_dsn, "schema_name": schema},
        "bus": {"kind": "kafka", "kafka_bootstrap": kafka, "topic_prefix": f"{run_id}.",
                "partitions": 1},
        "sites": [{"id": "sunshine", "name": "阳光小区"}],
        "devices": [{"id": "gas-1", "type": "gas", "site": "sunshine", "building": "3"}],
        "alerting": {
            "group": f"{run_id}-alerting",
            "receivers": [receiver("station"), receiver("duty")],
            "groups": [
                {"name": "fire_station", "recipients": [{"name": "zhang",
                                                         "receivers": ["station"]}]},
                {"name": "duty_officers", "recipients": [{"name": "wang",
                                                          "receivers": ["duty"]}]}],
            "policies": [{"name": "all", "max_reminders": 0, "steps": [
                {"groups": ["fire_station"]},
                {"after_s": ESCALATE_AFTER_S, "groups": ["duty_officers"]}]}],
        },
    }, allow_unicode=True))
    return path


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "shouwang.cli", "alert", "--config", str(config)],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, env={**os.environ})


async def test_kill_9_mid_escalation(tmp_path: Path, pg_dsn: str, db_schema: str,
                                     kafka_bootstrap: str, run_id: str,
                                     sink: LocalSink) -> None:
    config = _config(tmp_path / "alert.yaml", pg_dsn, db_schema, kafka_bootstrap, run_id,
                     sink.port)
    log = tmp_path / "alert.log"
    process = _start(config, log)
    try:
        async with KafkaBus(kafka_bootstrap, topic_prefix=f"{run_id}.", partitions=1) as bus:
            detection = Detection(ts=time.time(), device_id="gas-1", site="sunshine",
                                  hazard="gas", kind=DetectionKind.HAZARD,
                                  severity=Severity.ORANGE, firing=True, metric="lel",
                                  value=30.0, level=1)
            await bus.publish("detections", [("gas-1", encode_detection(detection))])

        db = await connect(pg_dsn, db_schema, autocommit=True)
        try:
            # Killed after the station's SMS is recorded as sent: this test is about the
            # escalation step still to come. (A kill between the gateway's answer and that
            # record resends the SMS once the send's lease runs out: at-least-once.)
            async def station_told() -> bool:
                assert process.poll() is None, log.read_text()[-3000:]
                cur = await db.execute("SELECT count(*) FROM notifications "
                                       "WHERE receiver = 'station' AND status = 'sent'")
                return len(sink.received("station")) >= 1 and await cur.fetchone() == (1,)
            await eventually(station_told, "the fire station's SMS", timeout_s=40)
            process.send_signal(signal.SIGKILL)
            process.wait(10)

            cur = await db.execute("SELECT extract(epoch FROM due_at) FROM escalations")
            [(due_at,)] = await cur.fetchall()
            assert due_at > time.time(), "killed before the step was due"

            process = _start(config, log)
            await eventually(lambda: _has(sink, "duty"), "the duty officer's SMS",
                             timeout_s=40)
            [duty] = sink.received("duty")
            assert duty.received_at >= float(due_at)  # not early
            await asyncio.sleep(1.5)  # time for any duplicate to show
            assert [m.channel for m in sink.messages] == ["station", "duty"]
            cur = await db.execute("SELECT receiver, status, attempts FROM notifications "
                                   "ORDER BY step")
            assert await cur.fetchall() == [("station", "sent", 1), ("duty", "sent", 1)]
        finally:
            await db.close()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


async def _has(sink: LocalSink, channel: str) -> bool:
    return len(sink.received(channel)) >= 1
