"""The alerting service end to end on a real PostgreSQL: detections in, SMS and broadcast out.

Messages go through apprise's ``json://`` notifier to the local sink over real HTTP.
The clock is injected: retries fall due when the test moves it, not after sleeps.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import pytest
from psycopg import AsyncConnection

from alerting import AlertingService
from config.settings import (
    AlertingSettings,
    DeviceConfig,
    Receiver,
    Route,
    Settings,
    SiteConfig,
)
from shouwang.bus import MemoryBus
from shouwang.catalog import DeviceType
from shouwang.codec import decode_alert, encode_detection
from shouwang.models import Alert, AlertStatus, Detection, DetectionKind, Severity
from shouwang.sink import LocalSink
from shouwang.store import connect
from shouwang.store.alerts import get_alert, list_alerts, list_events, transition
from shouwang.store.registry import sync_registry

pytestmark = pytest.mark.integration

START = 1_764_124_800.0  # 2025-11-26T02:40:00Z
DEVICE = "gas-3-2-502"
Channel = Literal["sms", "broadcast"]
SMS_32 = "【守望】阳光小区3号楼2单元502 燃气泄漏 32%LEL 请立即关阀开窗勿动电器"


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def eventually(check: Callable[[], Awaitable[bool]], what: str,
                     timeout_s: float = 15.0) -> None:
    """Wait for real I/O to land (the sink, the database), failing with ``what``."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def settings_for(sink_port: int, *, receivers: tuple[Channel, ...] = ("sms", "broadcast"),
                 **alerting: Any) -> Settings:  # Any: AlertingSettings fields
    urls = {"sms": f"json://127.0.0.1:{sink_port}/sms",
            "broadcast": f"json://127.0.0.1:{sink_port}/broadcast"}
    return Settings(
        sites=(SiteConfig(id="sunshine", name="阳光小区"),),
        devices=(DeviceConfig(id=DEVICE, type=DeviceType.GAS, site="sunshine", building="3",
                              unit="2", floor="5", room="502"),),
        alerting=AlertingSettings(
            receivers=tuple(Receiver(name=f"station-{c}", channel=c, urls=(urls[c],))
                            for c in receivers),
            routes=(Route(receivers=tuple(f"station-{c}" for c in receivers)),),
            **{"retry_base_s": 1.0, "retry_max_s": 4.0, "send_timeout_s": 5.0, **alerting}),
    )


def gas(value: float, *, firing: bool = True, severity: Severity = Severity.ORANGE,
        drill: bool = False) -> Detection:
    return Detection(ts=START, device_id=DEVICE, site="sunshine", hazard="gas",
                     kind=DetectionKind.HAZARD, severity=severity, firing=firing, metric="lel",
                     value=value, level=1 if firing else 0, message=f"可燃气体 {value} %LEL",
                     reading_ts=START, drill=drill)


@dataclass
class Harness:
    bus: MemoryBus
    db: AsyncConnection[Any]
    sink: LocalSink
    clock: FakeClock

    async def publish(self, *values: Detection | bytes) -> None:
        await self.bus.publish("detections", [
            (DEVICE, v if isinstance(v, bytes) else encode_detection(v)) for v in values])

    async def rows(self) -> list[tuple[Any, ...]]:  # Any: one notifications row
        cur = await self.db.execute(
            "SELECT receiver, channel, status, attempts, last_error, body "
            "FROM notifications ORDER BY receiver")
        return await cur.fetchall()

    async def alerts(self) -> list[Alert]:
        return await list_alerts(self.db)

    async def has_messages(self, sms: int, broadcast: int) -> bool:
        return (len(self.sink.received("sms")) >= sms
                and len(self.sink.received("broadcast")) >= broadcast)


@asynccontextmanager
async def running(settings: Settings, pg_dsn: str, schema: str,
                  sink: LocalSink) -> AsyncIterator[Harness]:
    bus = MemoryBus()
    clock = FakeClock()
    db = await connect(pg_dsn, schema, autocommit=True)
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    try:
        await sync_registry(db, settings.site_map().values(), settings.device_map().values())
        service = AlertingService(settings, bus, pg_dsn, schema=schema, clock=clock)
        task = asyncio.create_task(service.run(stop), name="test.alerting")
        yield Harness(bus=bus, db=db, sink=sink, clock=clock)
        assert not task.done(), "the service stopped on its own"
    finally:
        stop.set()
        if task is not None:
            await asyncio.wait_for(task, 15)
        await db.close()


async def test_repeat_detections_open_one_alert_and_send_once(
        pg_dsn: str, db_schema: str, sink: LocalSink) -> None:
    async with (running(settings_for(sink.port), pg_dsn, db_schema, sink) as h,
                h.bus.consumer(["alert-updates"], "test-viewer") as viewer):
        await h.publish(gas(32.0))
        await eventually(lambda: h.has_messages(1, 1), "the SMS and the broadcast")
        # A worse reading, and the first one redelivered: same live alert, no new message.
        await h.publish(gas(41.0, severity=Severity.RED), gas(32.0))

        async def updated() -> bool:
            alerts = await h.alerts()
            return (len(alerts) == 1 and alerts[0].last_value == 32.0
                    and alerts[0].severity is Severity.RED)
        await eventually(updated, "the repeat detections to update the alert")
        await asyncio.sleep(0.6)  # three dispatcher polls: room for any duplicate to show

        [alert] = await h.alerts()
        assert alert.status is AlertStatus.OPEN
        assert alert.opened_at == START
        assert alert.location.room == "502"
        [sms] = h.sink.received("sms")
        [broadcast] = h.sink.received("broadcast")
        assert sms.body == SMS_32
        assert sms.title == "【橙色预警】阳光小区 燃气泄漏"
        spoken = json.loads(broadcast.body)
        assert spoken["text"].startswith("紧急通知：阳光小区3号楼2单元5层502室发生燃气泄漏。")
        assert (spoken["alert_id"], spoken["priority"], spoken["drill"]) == (alert.id, 3, False)
        assert [(r[0], r[2], r[3]) for r in await h.rows()] == [
            ("station-broadcast", "sent", 1), ("station-sms", "sent", 1)]

        updates = [decode_alert(m.value) for m in await viewer.batch(100, 5.0)]
        assert {u.id for u in updates} == {alert.id}
        assert updates[0].last_value == 32.0 and updates[0].severity is Severity.ORANGE
        assert updates[-1].severity is Severity.RED


async def test_failed_sends_are_retried_and_attempts_recorded(
        pg_dsn: str, db_schema: str, sink: LocalSink) -> None:
    sink.fail_next = 2  # both first sends get HTTP 500
    async with running(settings_for(sink.port), pg_dsn, db_schema, sink) as h:
        await h.publish(gas(32.0))

        async def both_failed_once() -> bool:
            rows = await h.rows()
            return len(rows) == 2 and all(r[2] == "pending" and r[3] == 1 for r in rows)
        await eventually(both_failed_once, "two failed first attempts")
        assert all("500" in r[4] for r in await h.rows())
        assert h.sink.messages == []

        h.clock.advance(4.0)  # retry_max_s: both retries are due now
        await eventually(lambda: h.has_messages(1, 1), "the retried messages")

        async def both_sent() -> bool:
            return [(r[2], r[3], r[4]) for r in await h.rows()] == [("sent", 2, "")] * 2
        await eventually(both_sent, "the rows marked sent after two attempts")
        assert [m.body for m in h.sink.received("sms")] == [SMS_32]


async def test_a_failing_receiver_is_logged_once_then_recovers(
        pg_dsn: str, db_schema: str, sink: LocalSink,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="alerting")
    sink.fail_next = 3
    settings = settings_for(sink.port, receivers=("sms",))
    async with running(settings, pg_dsn, db_schema, sink) as h:
        await h.publish(gas(32.0))
        for attempts in (1, 2, 3):
            async def failed(n: int = attempts) -> bool:
                return [(r[2], r[3]) for r in await h.rows()] == [("pending", n)]
            await eventually(failed, f"failed attempt {attempts}")
            h.clock.advance(4.0)
        await eventually(lambda: h.has_messages(1, 0), "delivery on the fourth attempt")

        async def sent() -> bool:
            return [(r[2], r[3]) for r in await h.rows()] == [("sent", 4)]
        await eventually(sent, "the row marked sent")
    errors = [r for r in caplog.records
              if r.levelno >= logging.ERROR and "station-sms" in r.getMessage()]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert any("delivering again" in r.getMessage() for r in caplog.records)


async def test_gives_up_after_max_attempts(pg_dsn: str, db_schema: str,
                                           sink: LocalSink) -> None:
    sink.fail_next = 100
    settings = settings_for(sink.port, receivers=("sms",), max_attempts=3)
    async with running(settings, pg_dsn, db_schema, sink) as h:
        await h.publish(gas(32.0))
        for attempts in (1, 2):
            async def failed(n: int = attempts) -> bool:
                return [(r[2], r[3]) for r in await h.rows()] == [("pending", n)]
            await eventually(failed, f"failed attempt {attempts}")
            h.clock.advance(4.0)

        async def gave_up() -> bool:
            return [(r[2], r[3]) for r in await h.rows()] == [("failed", 3)]
        await eventually(gave_up, "the row marked failed")
        [row] = await h.rows()
        assert "500" in row[4]
        h.clock.advance(100.0)
        await asyncio.sleep(0.5)
        assert sink.fail_next == 97  # nothing sent after giving up
        [alert] = await h.alerts()
        last = (await list_events(h.db, alert.id))[-1]
        assert (last.action, last.source) == ("delivery_failed", "outbox")
        assert last.note.startswith("station-sms (sms) after 3 attempt(s): ")


async def test_clearing_and_acknowledging(pg_dsn: str, db_schema: str,
                                          sink: LocalSink) -> None:
    async with (running(settings_for(sink.port), pg_dsn, db_schema, sink) as h,
                h.bus.consumer(["alert-updates"], "test-viewer") as viewer):
        await h.publish(gas(32.0))
        await eventually(lambda: h.has_messages(1, 1), "the first messages")
        [alert] = await h.alerts()

        h.clock.advance(30.0)
        await h.publish(gas(3.0, firing=False))

        async def cleared() -> bool:
            return any(e.action == "cleared" for e in await list_events(h.db, alert.id))
        await eventually(cleared, "the cleared event")
        events = await list_events(h.db, alert.id)
        assert [(e.action, e.from_status, e.to_status) for e in events] == [
            ("opened", None, "open"), ("cleared", "open", "open")]
        assert events[1].at == START + 30.0
        still = await get_alert(h.db, alert.id)
        assert still.status is AlertStatus.OPEN and still.last_value == 3.0

        updates: list[Alert] = []

        async def clear_published() -> bool:
            updates.extend(decode_alert(m.value) for m in await viewer.batch(100, 0.05))
            return any(u.last_value == 3.0 for u in updates)
        await eventually(clear_published, "the cleared alert on alert-updates")
        assert [u.last_value for u in updates] == [32.0, 3.0]
        assert updates[-1].status is AlertStatus.OPEN

        acked = await transition(h.db, alert.id, AlertStatus.ACKNOWLEDGED,
                                 actor="duty-wang", source="console", note="on my way",
                                 now=START + 60.0)
        assert acked.status is AlertStatus.ACKNOWLEDGED
        assert acked.acknowledged_at == START + 60.0
        assert (await get_alert(h.db, alert.id)).status is AlertStatus.ACKNOWLEDGED
        last = (await list_events(h.db, alert.id))[-1]
        assert (last.action, last.actor, last.from_status, last.to_status, last.note) == (
            "acknowledged", "duty-wang", "open", "acknowledged", "on my way")

        # It fires again while acknowledged: the same alert, nobody is paged again.
        await h.publish(gas(45.0, severity=Severity.RED))

        async def refreshed() -> bool:
            return (await get_alert(h.db, alert.id)).last_value == 45.0
        await eventually(refreshed, "the acknowledged alert to take the new value")
        await asyncio.sleep(0.5)
        assert len(await h.alerts()) == 1
        assert len(h.sink.messages) == 2


async def test_drills_are_marked_and_bad_messages_skipped(
        pg_dsn: str, db_schema: str, sink: LocalSink) -> None:
    # The public loudspeakers never hear a drill; a drill speaker (drill: true) does.
    settings = settings_for(sink.port)
    drill_speaker = Receiver(name="drill-speaker", channel="broadcast", drill=True,
                             urls=(f"json://127.0.0.1:{sink.port}/drill-broadcast",))
    alerting = settings.alerting.model_copy(update={
        "receivers": (*settings.alerting.receivers, drill_speaker),
        "routes": (Route(receivers=("station-sms", "station-broadcast", "drill-speaker")),)})
    async with running(settings.model_copy(update={"alerting": alerting}), pg_dsn, db_schema,
                       sink) as h:
        anomaly = Detection(ts=START, device_id=DEVICE, site="sunshine", hazard="lel_anomaly",
                            kind=DetectionKind.ANOMALY, severity=Severity.YELLOW, firing=True)
        await h.publish(b"not a detection", anomaly, gas(32.0, drill=True))
        async def drill_messages_arrived() -> bool:
            return bool(h.sink.received("sms") and h.sink.received("drill-broadcast"))

        await eventually(drill_messages_arrived, "the drill messages")
        [sms] = h.sink.received("sms")
        [broadcast] = h.sink.received("drill-broadcast")
        assert h.sink.received("broadcast") == []
        assert sms.body == "【演练】" + SMS_32
        assert sms.title.startswith("【演练】")
        drill = json.loads(broadcast.body)
        assert drill["text"].startswith("【演练】")
        assert (drill["drill"], drill["priority"], drill["priority_name"]) == (True, 0, "drill")
        gas_alert, anomaly_alert = sorted(await h.alerts(), key=lambda a: a.hazard)
        assert gas_alert.drill and gas_alert.hazard == "gas"
        # The learned anomaly is on the console, low and unrouted: it paged nobody.
        assert (anomaly_alert.kind, anomaly_alert.severity) == (DetectionKind.ANOMALY,
                                                                Severity.BLUE)
        await asyncio.sleep(0.4)
        assert len(h.sink.messages) == 2


async def test_bad_receiver_url_fails_at_startup(pg_dsn: str, db_schema: str) -> None:
    settings = Settings(alerting=AlertingSettings(
        receivers=(Receiver(name="family-li", channel="sms", urls=("jsn://gateway/x",)),)))
    service = AlertingService(settings, MemoryBus(), pg_dsn, schema=db_schema)
    with pytest.raises(ValueError, match=r"family-li.*jsn://gateway"):
        await asyncio.wait_for(service.run(asyncio.Event()), 10)
