"""Channel faults on the scale-out (Kafka) path, under the same steady load with one gas
leak as ``test_kafka_path.py``: an SMS provider answering 500 for a minute, and a receiver
whose far end accepts the connection and never answers.

The pipeline is the real one (MQTT -> ingest -> Kafka -> writer -> PostgreSQL, detectors
and alerting consuming Kafka); only the far ends are local: ``LocalSink`` recorders and the
hung peer of ``tests/integration/local_servers.py``. Counted at the end as for the other
faults, with every message each alerting config should deliver.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shouwang.store import connect
from tests.faults.fleet import Fleet
from tests.faults.stack import Stack, assert_exact, pipeline, settle, until
from tests.integration.e2e import sink_receivers
from tests.integration.local_servers import hanging_server, running_sink

pytestmark = pytest.mark.integration

log = logging.getLogger(__name__)

RATE_HZ = 10.0  # rounds a second; a round is 10 messages, 19 readings (+1 reject every 10)
LEAK_ROUND = 30
# The outage is 60 s: SHOUWANG_FAULT_SMS_OUTAGE_S shortens it for a quick run.
SMS_OUTAGE_S = float(os.environ.get("SHOUWANG_FAULT_SMS_OUTAGE_S", "60"))
FALLBACK_S = 10.0  # the fire station's WeCom stands in when its SMS is not through by then
# A loaded 2-core box: the escalator polls every 0.2 s, but a tick may wait on the database.
FALLBACK_SLACK_S = 5.0
HANG_TIMEOUT_S = 3.0  # the webhook channel's send timeout
HANG_ATTEMPTS = 3  # max_attempts: then the hung receiver's message is given up and audited
_FAILING = 1_000_000  # LocalSink.fail_next while the provider is down: every request fails


async def _outbox(stack: Stack) -> dict[str, dict[str, Any]]:  # Any: column values
    """The gas alert's notification rows by receiver."""
    conn = await connect(stack.dsn, stack.schema, autocommit=True)
    try:
        cur = await conn.execute(
            "SELECT n.receiver, n.status, n.attempts, n.last_error, "
            "extract(epoch FROM n.created_at), extract(epoch FROM n.sent_at) "
            "FROM notifications n JOIN alerts a ON a.id = n.alert_id WHERE a.hazard = 'gas'")
        return {r[0]: {"status": r[1], "attempts": r[2], "error": r[3],
                       "created": float(r[4]), "sent": None if r[5] is None else float(r[5])}
                for r in await cur.fetchall()}
    finally:
        await conn.close()


async def _delivery_failures(stack: Stack) -> list[str]:
    conn = await connect(stack.dsn, stack.schema, autocommit=True)
    try:
        cur = await conn.execute("SELECT note FROM alert_events WHERE action = 'delivery_failed'")
        return [r[0] for r in await cur.fetchall()]
    finally:
        await conn.close()


def _sms_outage_alerting(sms_port: int) -> Callable[[int], dict[str, Any]]:
    def section(sink_port: int) -> dict[str, Any]:  # Any: YAML-shaped
        return {
            "receivers": [
                {"name": "fire-station-sms", "channel": "sms",
                 "urls": [f"json://127.0.0.1:{sms_port}/sms"]},
                {"name": "fire-station-wecom", "channel": "wecom",
                 "urls": [f"json://127.0.0.1:{sink_port}/wecom"]},
                {"name": "loudspeakers", "channel": "broadcast",
                 "urls": [f"json://127.0.0.1:{sink_port}/broadcast"]},
            ],
            "groups": [{"name": "fire_station", "recipients": [
                {"name": "fire-station", "receivers": ["fire-station-sms", "fire-station-wecom"],
                 "fallback_after_s": FALLBACK_S},
                {"name": "loudspeakers", "receivers": ["loudspeakers"]},
            ]}],
            "policies": [{"name": "gas", "hazards": ["gas"], "min_severity": "orange",
                          "max_reminders": 0, "steps": [{"groups": ["fire_station"]}]}],
            # Retries every 0.5-4 s: the SMS goes within 4 s of the provider's recovery, and
            # 100 attempts outlast the outage.
            "retry_base_s": 1.0, "retry_max_s": 4.0, "max_attempts": 100,
        }
    return section


async def test_sms_provider_failing_for_a_minute(
        pg_dsn: str, db_schema: str, mqtt_addr: tuple[str, int], kafka_bootstrap: str,
        tmp_path: Path, run_id: str) -> None:
    """The SMS provider answers 500 from before the leak until ``SMS_OUTAGE_S`` later. The
    loudspeakers are told at once, the fire station's WeCom once the SMS is
    ``FALLBACK_S`` late, and the SMS itself, retried with backoff, once after recovery."""
    rounds = int((SMS_OUTAGE_S + 4) * RATE_HZ)  # the load outlasts the outage
    async with running_sink() as provider, pipeline(
            tmp_path, dsn=pg_dsn, schema=db_schema, mqtt_port=mqtt_addr[1],
            kafka=kafka_bootstrap, run_id=run_id,
            alerting=_sms_outage_alerting(provider.port), far_ends=(provider,),
            messages_expected=3) as stack:
        fleet = Fleet(mqtt_addr[1], f"{run_id}/v1", rounds, rate_hz=RATE_HZ,
                      leak_round=LEAK_ROUND, timeout_s=SMS_OUTAGE_S + 60)
        provider.fail_next = _FAILING
        outage_ends = time.monotonic() + SMS_OUTAGE_S
        fleet.start()

        async def fallback_sent() -> bool:
            return len(stack.sink.received("wecom")) > 0
        await until(fallback_sent, "the WeCom fallback", timeout_s=SMS_OUTAGE_S)
        assert [m.channel for m in stack.sink.messages] == ["broadcast", "wecom"]
        await asyncio.sleep(max(0.0, outage_ends - time.monotonic()))
        assert provider.messages == [], "nothing gets through the outage"
        failures = _FAILING - provider.fail_next
        provider.fail_next = 0  # the provider recovers
        recovered_at = time.time()
        log.info("sms outage over after %.0f s: %d requests answered 500, load at round %d "
                 "of %d", SMS_OUTAGE_S, failures, fleet.rounds_acked, rounds)
        assert fleet.rounds_acked < rounds, "the load must outlast the outage"
        published = await asyncio.to_thread(fleet.join)
        counts = await settle(stack, published)
        rows = await _outbox(stack)
    log.info("sms outage outbox: %s", rows)
    sms, wecom, speaker = (rows["fire-station-sms"], rows["fire-station-wecom"],
                           rows["loudspeakers"])
    # The SMS: retried through the outage, delivered once, after the recovery.
    assert [m.channel for m in provider.messages] == ["sms"]
    assert provider.messages[0].received_at >= recovered_at
    assert failures >= 3, failures  # retried through the outage, with backoff
    assert sms["status"] == "sent" and sms["attempts"] == failures + 1, (sms, failures)
    # The fallback: once the SMS was FALLBACK_S late, not before; delivered during the outage.
    late_by = wecom["created"] - sms["created"]
    assert FALLBACK_S <= late_by <= FALLBACK_S + FALLBACK_SLACK_S, late_by
    assert wecom["status"] == "sent" and wecom["attempts"] == 1, wecom
    assert stack.sink.received("wecom")[0].received_at < recovered_at
    # The loudspeakers are not held up by the failing SMS.
    assert speaker["status"] == "sent" and speaker["attempts"] == 1, speaker
    assert speaker["sent"] is not None and speaker["sent"] - speaker["created"] < FALLBACK_S
    assert await _delivery_failures(stack) == []
    log.info("sms outage: fallback after %.1f s, sms delivered at attempt %d", late_by,
             sms["attempts"])
    assert_exact(counts)


def _hang_alerting(hang_port: int) -> Callable[[int], dict[str, Any]]:
    def section(sink_port: int) -> dict[str, Any]:  # Any: YAML-shaped
        return {
            "receivers": [
                *sink_receivers(sink_port),
                {"name": "property-webhook", "channel": "webhook",
                 "urls": [f"json://127.0.0.1:{hang_port}/hook"]},
            ],
            "routes": [{"hazards": ["gas"], "min_severity": "orange",
                        "receivers": ["fire-station-sms", "loudspeakers",
                                      "property-webhook"]}],
            "channels": [{"channel": "webhook", "timeout_s": HANG_TIMEOUT_S}],
            "retry_base_s": 1.0, "retry_max_s": 2.0, "max_attempts": HANG_ATTEMPTS,
        }
    return section


async def test_a_hanging_channel(
        pg_dsn: str, db_schema: str, mqtt_addr: tuple[str, int], kafka_bootstrap: str,
        tmp_path: Path, run_id: str) -> None:
    """A webhook whose far end accepts and never answers: each attempt is cut at the
    channel's ``timeout_s``, retried with backoff, and after ``max_attempts`` given up and
    audited; the SMS and the loudspeakers go at once, as if it were not there."""
    rounds = 200  # 20 s: the webhook's three attempts end while the load still runs
    async with hanging_server() as hang_port, pipeline(
            tmp_path, dsn=pg_dsn, schema=db_schema, mqtt_port=mqtt_addr[1],
            kafka=kafka_bootstrap, run_id=run_id, alerting=_hang_alerting(hang_port)) as stack:
        fleet = Fleet(mqtt_addr[1], f"{run_id}/v1", rounds, rate_hz=RATE_HZ,
                      leak_round=LEAK_ROUND)
        fleet.start()

        async def given_up() -> bool:
            hook = (await _outbox(stack)).get("property-webhook")
            return hook is not None and hook["status"] == "failed"
        await until(given_up, "the hung webhook given up")
        given_up_at = fleet.rounds_acked
        log.info("hung webhook given up at round %d of %d", given_up_at, rounds)
        assert given_up_at < rounds, "the hang must be cut while the load runs"
        published = await asyncio.to_thread(fleet.join)
        counts = await settle(stack, published)
        rows = await _outbox(stack)
        failures = await _delivery_failures(stack)
    log.info("hanging channel outbox: %s", rows)
    hook = rows["property-webhook"]
    assert hook["attempts"] == HANG_ATTEMPTS, hook
    assert f"no answer within {HANG_TIMEOUT_S:g}s" in hook["error"], hook
    assert hook["sent"] is None
    assert len(failures) == 1 and "property-webhook" in failures[0], failures
    # The others went on time: each at its first attempt, long before one webhook timeout.
    for name in ("fire-station-sms", "loudspeakers"):
        row = rows[name]
        assert row["status"] == "sent" and row["attempts"] == 1, (name, row)
        assert row["sent"] - row["created"] < HANG_TIMEOUT_S, (name, row)
    assert sorted(m.channel for m in stack.sink.messages) == ["broadcast", "sms"]
    assert_exact(counts)
