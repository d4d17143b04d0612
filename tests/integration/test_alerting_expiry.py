"""Housekeeping on a real PostgreSQL: stale alerts expire, inhibited alerts are released.

An alert nobody acknowledged and no detection repeated for ``expire_after_s`` expires,
with an audit row (escalation steps do not restart that clock); an acknowledged one is
someone's and stays. When the alert that inhibited
others ends, they open again and page as if new. The clock is injected.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from psycopg import AsyncConnection

from config.settings import DeviceConfig
from shouwang.catalog import DeviceType
from shouwang.models import AlertStatus, Severity
from shouwang.sink import LocalSink
from shouwang.store.alerts import list_alerts, list_events, transition
from tests.integration.test_alerting_escalation import DEVICE, _sent, gas, service, settings_for
from tests.integration.test_alerting_service import START, eventually

pytestmark = pytest.mark.integration

MAX_AGE_S = 3600.0


async def _status(db: AsyncConnection[Any], device: str) -> AlertStatus:
    [alert] = [a for a in await list_alerts(db) if a.device_id == device]
    return alert.status


async def _by_device(db: AsyncConnection[Any]) -> dict[str, list[AlertStatus]]:
    found: dict[str, list[AlertStatus]] = {}
    for alert in sorted(await list_alerts(db), key=lambda a: a.id):
        found.setdefault(alert.device_id, []).append(alert.status)
    return found


async def test_expiry_counts_from_the_last_detection_not_from_escalation_steps(
        pg_dsn: str, db_schema: str, sink: LocalSink) -> None:
    settings = settings_for(sink.port, expire_after_s=MAX_AGE_S)
    settings = settings.model_copy(update={"devices": (*settings.devices,
        DeviceConfig(id="gas-5", type=DeviceType.GAS, site="sunshine", building="5"),
        DeviceConfig(id="gas-7", type=DeviceType.GAS, site="sunshine", building="7"))})
    async with service(settings, pg_dsn, db_schema) as (run, db):
        await run.publish(gas(32.0), gas(32.0, device="gas-5"), gas(32.0, device="gas-7"))
        await eventually(lambda: _sent(db, 3), "the three station SMS")
        [owned] = [a for a in await list_alerts(db) if a.device_id == "gas-5"]
        await transition(db, owned.id, AlertStatus.ACKNOWLEDGED, actor="wang",
                         source="console", note="on my way", now=run.clock.now)

        # The duty step at +60 s changes the alerts; it must not restart the expiry clock.
        run.clock.advance(60.0)
        await eventually(lambda: _has_status(db, DEVICE, AlertStatus.ESCALATED), "escalation")
        await eventually(lambda: _has_status(db, "gas-7", AlertStatus.ESCALATED), "gas-7 too")
        run.clock.advance(1740.0)  # +1800 s: gas-7 says it again, gas-3-2-502 stays quiet
        await run.publish(gas(33.0, device="gas-7"))

        async def repeated() -> bool:
            [alert] = [a for a in await list_alerts(db) if a.device_id == "gas-7"]
            return alert.last_value == 33.0
        await eventually(repeated, "gas-7's repeat detection")
        run.clock.advance(MAX_AGE_S - 1800.0 - 1.0)  # one second short of the max age
        await asyncio.sleep(0.6)  # three escalator ticks: time for a wrong expiry
        assert await _status(db, DEVICE) is AlertStatus.ESCALATED

        run.clock.advance(2.0)  # max age since its only detection; 3540 s since its step
        await eventually(lambda: _has_status(db, DEVICE, AlertStatus.EXPIRED), "expiry")
        [alert] = [a for a in await list_alerts(db) if a.device_id == DEVICE]
        last = (await list_events(db, alert.id))[-1]
        assert (last.actor, last.source, last.action, last.from_status, last.to_status) == (
            "system", "expiry", "expired", "escalated", "expired")
        assert last.at == START + MAX_AGE_S + 1.0
        assert "3600 s" in last.note
        assert await _status(db, "gas-5") is AlertStatus.ACKNOWLEDGED  # someone owns it
        assert await _status(db, "gas-7") is AlertStatus.ESCALATED  # detected 1,801 s ago
        cur = await db.execute("SELECT count(*) FROM escalations WHERE alert_id = %s",
                               (alert.id,))
        assert await cur.fetchone() == (0,)

        run.clock.advance(1800.0)  # max age since gas-7's repeat
        await eventually(lambda: _has_status(db, "gas-7", AlertStatus.EXPIRED), "gas-7 expiry")

        # No longer live: the device's next hazard opens a fresh alert and pages again.
        before = await _sent_count(db)
        await run.publish(gas(35.0))
        await eventually(lambda: _has_status(db, DEVICE, AlertStatus.OPEN, index=1),
                         "a fresh alert")
        await eventually(lambda: _sent(db, before + 1), "the fresh alert's station SMS")
        assert (await _by_device(db))[DEVICE] == [AlertStatus.EXPIRED, AlertStatus.OPEN]


async def _sent_count(db: AsyncConnection[Any]) -> int:
    cur = await db.execute("SELECT count(*) FROM notifications WHERE status = 'sent'")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def test_alerts_inhibited_by_a_fire_open_again_when_the_fire_is_resolved(
        pg_dsn: str, db_schema: str, sink: LocalSink) -> None:
    settings = settings_for(sink.port)  # no max age: nothing expires here
    settings = settings.model_copy(update={"devices": (*settings.devices,
        DeviceConfig(id="smoke-3", type=DeviceType.SMOKE, site="sunshine", building="3"),
        DeviceConfig(id="fire-3", type=DeviceType.SMOKE, site="sunshine", building="3"))})
    async with service(settings, pg_dsn, db_schema) as (run, db):
        await run.publish(gas(80.0, Severity.RED, device="fire-3", hazard="fire"))
        await eventually(lambda: _sent(db, 2), "the fire alert (station and speakers)")
        await run.publish(gas(9.0, Severity.RED, device="smoke-3", hazard="smoke"))
        await eventually(lambda: _has_status(db, "smoke-3", AlertStatus.SUPPRESSED),
                         "the smoke alert inhibited")
        run.clock.advance(2.0)  # housekeeping runs: the fire still burns, nothing released
        await asyncio.sleep(0.6)  # three polls
        assert await _status(db, "smoke-3") is AlertStatus.SUPPRESSED

        [fire] = [a for a in await list_alerts(db) if a.device_id == "fire-3"]
        await transition(db, fire.id, AlertStatus.RESOLVED, actor="zhang", source="console",
                         note="put out", now=run.clock.now)
        run.clock.advance(2.0)
        await eventually(lambda: _has_status(db, "smoke-3", AlertStatus.OPEN), "the release")
        await eventually(lambda: _sent(db, 4), "the smoke alert's station SMS and broadcast")
        [smoke] = [a for a in await list_alerts(db) if a.device_id == "smoke-3"]
        actions = [(e.source, e.action, e.from_status, e.to_status)
                   for e in await list_events(db, smoke.id)]
        assert actions[-2:] == [("inhibit", "inhibited", "open", "suppressed"),
                                ("inhibit", "released", "suppressed", "open")]
        cur = await db.execute("SELECT step, receiver FROM notifications WHERE alert_id = %s "
                               "ORDER BY step, receiver", (smoke.id,))
        assert await cur.fetchall() == [(0, "station"), (1, "speakers")]


async def _has_status(db: AsyncConnection[Any], device: str, status: AlertStatus, *,
                      index: int = 0) -> bool:
    statuses = (await _by_device(db)).get(device, [])
    return len(statuses) > index and statuses[index] is status
