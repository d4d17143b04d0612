"""Alarm-storm protection across batches, on a real PostgreSQL with the local sink.

Alerts arrive one or two at a time in separate batches (a breaking gateway, a spreading
outage). While few reached the fire station within ``storm_window_s``, each goes at
once; past ``storm_threshold``, the rest wait (in the database, surviving a restart) for
the window's end and arrive as one summary. Alerts answered (acknowledged, resolved,
expired) while held are withdrawn, not summarised; alerts silenced while held are left
out and their message waits for the silence to end. The clock is injected.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import pytest
from psycopg import AsyncConnection

from alerting.silences import create_silence
from config.settings import DeviceConfig
from console.queries import list_notifications
from shouwang.catalog import DeviceType
from shouwang.models import AlertStatus, NotificationStatus
from shouwang.sink import LocalSink
from shouwang.store.alerts import get_alert, transition
from tests.integration.test_alerting_escalation import gas, service, settings_for
from tests.integration.test_alerting_service import eventually, running
from tests.integration.test_alerting_service import settings_for as plain_settings

pytestmark = pytest.mark.integration

WINDOW_S = 30.0


def smoke(n: int) -> Any:  # Any: a Detection
    return gas(9.0, device=f"smoke-{n}", hazard="smoke")


async def station_rows(db: AsyncConnection[Any]) -> list[tuple[Any, ...]]:  # Any: rows
    cur = await db.execute(
        "SELECT a.device_id, n.status, cardinality(n.covers) FROM notifications n "
        "JOIN alerts a ON a.id = n.alert_id WHERE n.receiver = 'station' ORDER BY n.id")
    return await cur.fetchall()


async def test_alerts_in_separate_batches_past_the_threshold_become_one_summary(
        pg_dsn: str, db_schema: str, sink: LocalSink) -> None:
    settings = settings_for(sink.port, storm_threshold=3, storm_window_s=WINDOW_S)
    devices = tuple(DeviceConfig(id=f"smoke-{n}", type=DeviceType.SMOKE, site="sunshine",
                                 building="7", room=str(100 + n)) for n in range(12))
    settings = settings.model_copy(update={"devices": settings.devices + devices})

    def station() -> list[str]:
        return [m.body for m in sink.received("station")]

    async with service(settings, pg_dsn, db_schema) as (run, db):
        # A quiet period: the first message goes at once, no waiting for a window.
        await run.publish(smoke(0))
        await eventually(lambda: _count(station, 1), "the first alert, immediately")
        run.clock.advance(2.0)
        await run.publish(smoke(1), smoke(2))  # 3 within the window: still one by one
        await eventually(lambda: _count(station, 3), "alerts 2 and 3")
        assert all("烟雾报警" in body and "同时出现" not in body for body in station())

        # Past the threshold: each later batch is held, nothing more goes out now.
        for n in range(3, 9):
            run.clock.advance(1.0)
            await run.publish(smoke(n))

        async def all_held() -> bool:
            return sum(1 for r in await station_rows(db) if r[1] == "held") == 6
        await eventually(all_held, "six held messages")
        await run.kill()  # held in the database, not in memory: a restart keeps them
        run.start()
        await asyncio.sleep(0.6)  # three escalator ticks: nothing is due yet
        assert len(station()) == 3

        run.clock.advance(WINDOW_S)  # the window that started with alert 4 has ended
        await eventually(lambda: _count(station, 4), "the summary")
        await asyncio.sleep(0.4)
        assert station()[3] == "【守望】阳光小区 同时出现6条告警：烟雾报警6条。详情请登录值班台查看"
        assert len(station()) == 4
        rows = await station_rows(db)
        assert [r[1] for r in rows] == ["sent"] * 4 + ["summarised"] * 5
        assert rows[3] == ("smoke-3", "sent", 6)  # the summary row lists all six alerts

        # Quiet again a window later: the next alert goes at once, on its own.
        run.clock.advance(WINDOW_S + 1.0)
        await run.publish(smoke(9))
        await eventually(lambda: _count(station, 5), "the next alert, immediately")
        assert "烟雾报警" in station()[4] and "同时出现" not in station()[4]


async def _count(bodies: Any, count: int) -> bool:  # Any: a callable giving the bodies
    return len(bodies()) >= count


async def test_plain_routes_are_protected_the_same_way(pg_dsn: str, db_schema: str,
                                                       sink: LocalSink) -> None:
    base = plain_settings(sink.port, receivers=("sms",), storm_threshold=2,
                          storm_window_s=WINDOW_S)
    devices = tuple(DeviceConfig(id=f"smoke-{n}", type=DeviceType.SMOKE, site="sunshine",
                                 building="7", room=str(100 + n)) for n in range(6))
    settings = base.model_copy(update={"devices": base.devices + devices})
    async with running(settings, pg_dsn, db_schema, sink) as h:
        for n in range(6):  # one alert per batch, a second apart
            await h.publish(smoke(n))
            if n < 2:
                await eventually(partial(_count, lambda: h.sink.received("sms"), n + 1),
                                 f"alert {n + 1} at once")
            h.clock.advance(1.0)

        async def held() -> bool:
            cur = await h.db.execute("SELECT count(*) FROM notifications WHERE status = 'held'")
            return await cur.fetchone() == (4,)
        await eventually(held, "four held messages")
        h.clock.advance(WINDOW_S)
        await eventually(lambda: _count(lambda: h.sink.received("sms"), 3), "the summary")
        await asyncio.sleep(0.4)
        bodies = [m.body for m in h.sink.received("sms")]
        assert bodies[2] == "【守望】阳光小区 同时出现4条告警：烟雾报警4条。详情请登录值班台查看"
        assert len(bodies) == 3


async def _held_storm(h: Any, count: int) -> dict[str, int]:  # Any: the harness
    """Two alerts go at once, then ``count`` more are held, one batch a second; returns
    each device's alert id. The storm's window ends ``WINDOW_S`` after the first held."""
    sent = partial(_count, lambda: h.sink.received("sms"))
    for n in range(2 + count):
        await h.publish(smoke(n))
        if n < 2:
            await eventually(partial(sent, n + 1), f"alert {n + 1} at once")
        else:
            await eventually(partial(_status_count, h.db, "held", n - 1), f"{n - 1} held")
        h.clock.advance(1.0)
    cur = await h.db.execute("SELECT device_id, id FROM alerts")
    return dict(await cur.fetchall())


async def _status_count(db: AsyncConnection[Any], status: str, count: int) -> bool:
    cur = await db.execute("SELECT count(*) FROM notifications WHERE status = %s", (status,))
    return await cur.fetchone() == (count,)


async def _outbox(db: AsyncConnection[Any]) -> list[tuple[Any, ...]]:  # Any: rows
    cur = await db.execute(
        "SELECT a.device_id, n.status, n.last_error, n.covers FROM notifications n "
        "JOIN alerts a ON a.id = n.alert_id ORDER BY n.id")
    return await cur.fetchall()


def _storm_settings(port: int) -> Any:  # Any: Settings
    base = plain_settings(port, receivers=("sms",), storm_threshold=2,
                          storm_window_s=WINDOW_S)
    devices = tuple(DeviceConfig(id=f"smoke-{n}", type=DeviceType.SMOKE, site="sunshine",
                                 building="7", room=str(100 + n)) for n in range(8))
    return base.model_copy(update={"devices": base.devices + devices})


async def test_alerts_answered_while_held_are_left_out_of_the_summary(
        pg_dsn: str, db_schema: str, sink: LocalSink) -> None:
    async with running(_storm_settings(sink.port), pg_dsn, db_schema, sink) as h:
        ids = await _held_storm(h, 5)  # smoke-2 … smoke-6 held
        await transition(h.db, ids["smoke-2"], AlertStatus.ACKNOWLEDGED, actor="duty-wang",
                         source="console", note="on my way", now=h.clock())
        await transition(h.db, ids["smoke-3"], AlertStatus.RESOLVED, actor="duty-wang",
                         source="console", note="false alarm: cooking", now=h.clock())

        h.clock.advance(WINDOW_S)
        await eventually(partial(_count, lambda: h.sink.received("sms"), 3), "the summary")
        await asyncio.sleep(0.4)  # a few ticks more: nothing else goes out
        bodies = [m.body for m in h.sink.received("sms")]
        assert bodies[2] == "【守望】阳光小区 同时出现3条告警：烟雾报警3条。详情请登录值班台查看"
        assert len(bodies) == 3
        still_open = [ids["smoke-4"], ids["smoke-5"], ids["smoke-6"]]
        assert (await _outbox(h.db))[2:] == [
            ("smoke-2", "withdrawn", "not sent: the alert was acknowledged while an alarm "
                                     "storm held this message", None),
            ("smoke-3", "withdrawn", "not sent: the alert was resolved while an alarm "
                                     "storm held this message", None),
            ("smoke-4", "sent", "", still_open),
            ("smoke-5", "summarised", "", None),
            ("smoke-6", "summarised", "", None)]
        # The console's outbox panel shows why it was not sent.
        [audit] = await list_notifications(h.db, alert_id=ids["smoke-2"])
        assert audit.status is NotificationStatus.WITHDRAWN and audit.sent_at is None
        assert "acknowledged" in audit.last_error


async def test_nothing_is_sent_when_every_held_alert_was_answered(
        pg_dsn: str, db_schema: str, sink: LocalSink) -> None:
    async with running(_storm_settings(sink.port), pg_dsn, db_schema, sink) as h:
        ids = await _held_storm(h, 3)  # smoke-2 … smoke-4 held, the window ends at +32 s
        for device, status in (("smoke-2", AlertStatus.ACKNOWLEDGED),
                               ("smoke-3", AlertStatus.RESOLVED),
                               ("smoke-4", AlertStatus.EXPIRED)):
            await transition(h.db, ids[device], status, actor="system", source="test",
                             note="", now=h.clock())

        h.clock.advance(WINDOW_S - 3.0)  # exactly when the window ends
        await eventually(partial(_status_count, h.db, "withdrawn", 3), "three withdrawn")
        await asyncio.sleep(0.4)
        assert len(h.sink.received("sms")) == 2
        assert [r[1] for r in await _outbox(h.db)] == ["sent", "sent"] + ["withdrawn"] * 3

        # The receiver was told of none of them: the next alert, still within the window
        # of the withdrawn ones, is not held for them.
        await h.publish(smoke(5))
        await eventually(partial(_count, lambda: h.sink.received("sms"), 3), "alert 6 at once")
        assert "同时出现" not in h.sink.received("sms")[2].body


async def test_the_one_held_alert_left_open_goes_as_written(
        pg_dsn: str, db_schema: str, sink: LocalSink) -> None:
    async with running(_storm_settings(sink.port), pg_dsn, db_schema, sink) as h:
        ids = await _held_storm(h, 3)
        for device in ("smoke-2", "smoke-4"):
            await transition(h.db, ids[device], AlertStatus.ACKNOWLEDGED, actor="duty-wang",
                             source="console", note="", now=h.clock())

        h.clock.advance(WINDOW_S)
        await eventually(partial(_count, lambda: h.sink.received("sms"), 3), "alert 4")
        await asyncio.sleep(0.4)
        bodies = [m.body for m in h.sink.received("sms")]
        assert len(bodies) == 3
        assert "7号楼103" in bodies[2] and "同时出现" not in bodies[2]
        assert [r[:2] for r in await _outbox(h.db)][2:] == [
            ("smoke-2", "withdrawn"), ("smoke-3", "sent"), ("smoke-4", "withdrawn")]


async def test_an_alert_silenced_while_held_waits_for_its_silence_to_end(
        pg_dsn: str, db_schema: str, sink: LocalSink) -> None:
    async with running(_storm_settings(sink.port), pg_dsn, db_schema, sink) as h:
        ids = await _held_storm(h, 4)  # smoke-2 … smoke-5 held
        await create_silence(h.db, site="sunshine", device_id="smoke-3", created_by="li-eng",
                             reason="detector cleaning", starts_at=h.clock(),
                             ends_at=h.clock() + WINDOW_S + 10.0, now=h.clock())
        # What the silence stage does to it at its next detection or escalation step.
        await transition(h.db, ids["smoke-3"], AlertStatus.SUPPRESSED, actor="system",
                         source="silence", action="silenced", note="detector cleaning",
                         now=h.clock())

        h.clock.advance(WINDOW_S)
        await eventually(partial(_count, lambda: h.sink.received("sms"), 3), "the summary")
        await asyncio.sleep(0.4)
        bodies = [m.body for m in h.sink.received("sms")]
        assert bodies[2] == "【守望】阳光小区 同时出现3条告警：烟雾报警3条。详情请登录值班台查看"
        assert len(bodies) == 3
        assert (await _outbox(h.db))[2:] == [
            ("smoke-2", "sent", "", [ids["smoke-2"], ids["smoke-4"], ids["smoke-5"]]),
            ("smoke-3", "held", "", None),
            ("smoke-4", "summarised", "", None),
            ("smoke-5", "summarised", "", None)]

        h.clock.advance(15.0)  # the silence has ended while the detector still fires
        await eventually(partial(_count, lambda: h.sink.received("sms"), 4), "smoke-3's SMS")
        await asyncio.sleep(0.4)  # a few ticks more: it goes once
        bodies = [m.body for m in h.sink.received("sms")]
        assert len(bodies) == 4
        assert "7号楼103" in bodies[3] and "同时出现" not in bodies[3]
        assert (await get_alert(h.db, ids["smoke-3"])).status is AlertStatus.OPEN
        rows = await _outbox(h.db)
        assert [r[:2] for r in rows if r[0] == "smoke-3"] == [("smoke-3", "sent")]
