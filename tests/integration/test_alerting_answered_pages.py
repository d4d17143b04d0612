"""A page that is still being retried when its alert is answered is withdrawn, not sent.

Real PostgreSQL, the local sink as the SMS provider (answering 500 while "down"), the
injected clock. The duty officer's escalation page fails, the alert is acknowledged
while it waits for its retry, the provider recovers: the duty officer is not told
"nobody has acknowledged", while the fire station's first message still goes. A message
still being retried when its alert is silenced waits for the silence to end.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from psycopg import AsyncConnection

from alerting.silences import create_silence
from shouwang.models import AlertStatus
from shouwang.sink import LocalSink
from shouwang.store.alerts import list_alerts, transition
from tests.integration.test_alerting_escalation import gas, service, settings_for
from tests.integration.test_alerting_service import eventually

pytestmark = pytest.mark.integration

_DOWN = 1_000_000  # LocalSink.fail_next while the provider is down: every request fails


async def _row(db: AsyncConnection[Any], receiver: str) -> tuple[Any, ...] | None:
    cur = await db.execute("SELECT step, status, attempts, last_error FROM notifications "
                           "WHERE receiver = %s", (receiver,))
    return await cur.fetchone()


async def _failed_once(db: AsyncConnection[Any], receiver: str) -> None:
    async def failed() -> bool:
        row = await _row(db, receiver)
        return row is not None and row[2] >= 1
    await eventually(failed, f"the first (failing) attempt to {receiver}")


async def test_an_escalation_page_retried_after_the_ack_is_withdrawn(
        pg_dsn: str, db_schema: str, sink: LocalSink) -> None:
    sink.fail_next = _DOWN
    async with service(settings_for(sink.port), pg_dsn, db_schema) as (run, db):
        await run.publish(gas(32.0))

        await _failed_once(db, "station")

        run.clock.advance(60.0)  # nobody acknowledged: the duty officer's step is due

        await _failed_once(db, "duty")
        duty = await _row(db, "duty")
        assert duty is not None and duty[:2] == (2, "pending"), duty

        [alert] = await list_alerts(db)
        await transition(db, alert.id, AlertStatus.ACKNOWLEDGED, actor="wang",
                         source="console", note="on site", now=run.clock.now)
        sink.fail_next = 0  # the provider recovers
        run.clock.advance(10.0)  # past every retry's backoff (retry_max_s = 4)

        async def settled() -> bool:
            station, duty = await _row(db, "station"), await _row(db, "duty")
            return (station is not None and station[1] == "sent"
                    and duty is not None and duty[1] != "pending")
        await eventually(settled, "the station's SMS sent and the duty page settled")

        # Step 0 goes even though the alert was acknowledged: the station must know.
        assert len(sink.received("station")) == 1
        assert sink.received("duty") == []
        assert await _row(db, "duty") == (
            2, "withdrawn", 1,
            "not sent: the alert was acknowledged before this page went out")


async def test_a_message_retried_when_its_alert_is_silenced_waits_for_the_silence(
        pg_dsn: str, db_schema: str, sink: LocalSink) -> None:
    sink.fail_next = _DOWN
    async with service(settings_for(sink.port), pg_dsn, db_schema) as (run, db):
        await run.publish(gas(32.0))

        await _failed_once(db, "station")

        [alert] = await list_alerts(db)
        await create_silence(db, site="sunshine", device_id=alert.device_id,
                             created_by="li-eng", reason="sensor calibration",
                             starts_at=run.clock.now, ends_at=run.clock.now + 30.0,
                             now=run.clock.now)
        # What the silence stage does to it at its next detection or escalation step.
        await transition(db, alert.id, AlertStatus.SUPPRESSED, actor="system",
                         source="silence", action="silenced", note="sensor calibration",
                         now=run.clock.now)
        sink.fail_next = 0  # the provider recovers during the silence
        run.clock.advance(10.0)  # past every retry's backoff (retry_max_s = 4)
        await asyncio.sleep(0.6)  # a few dispatcher ticks
        assert sink.received("station") == []
        station = await _row(db, "station")
        assert station is not None and station[:2] == (0, "pending"), station

        run.clock.advance(25.0)  # the silence ends while the gas still fires

        async def sent() -> bool:
            row = await _row(db, "station")
            return row is not None and row[1] == "sent"
        await eventually(sent, "the station's SMS once the silence ended")
        await asyncio.sleep(0.4)  # a few ticks more: it goes once
        assert len(sink.received("station")) == 1
