"""Escalation on a real PostgreSQL, delivered over HTTP to the local sink.

Policies page the fire station at once, the duty officer after 60 s if nobody has
acknowledged, the loudspeakers only at red, then remind. The clock is injected; the
service is cancelled mid-escalation (its tasks die where they stand, as with kill -9:
only what was committed survives) and restarted on the same schema.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from psycopg import AsyncConnection

from alerting import AlertingService
from config.settings import (
    AlertingSettings,
    DeviceConfig,
    EscalationPolicy,
    EscalationStep,
    Receiver,
    Recipient,
    RecipientGroup,
    Settings,
    SiteConfig,
)
from shouwang.bus import MemoryBus
from shouwang.catalog import DeviceType
from shouwang.codec import encode_detection
from shouwang.models import AlertStatus, Detection, DetectionKind, Severity
from shouwang.sink import LocalSink
from shouwang.store import connect
from shouwang.store.alerts import list_alerts, list_events, transition
from shouwang.store.registry import sync_registry
from tests.integration.test_alerting_service import START, FakeClock, eventually

pytestmark = pytest.mark.integration

DEVICE = "gas-3-2-502"


def settings_for(port: int, **alerting: Any) -> Settings:  # Any: AlertingSettings fields
    def receiver(name: str, channel: str = "sms") -> Receiver:
        return Receiver(name=name, channel=channel,  # type: ignore[arg-type]  # literal
                        urls=(f"json://127.0.0.1:{port}/{name}",))
    return Settings(
        sites=(SiteConfig(id="sunshine", name="阳光小区"),),
        devices=(DeviceConfig(id=DEVICE, type=DeviceType.GAS, site="sunshine", building="3",
                              unit="2", floor="5", room="502"),
                 DeviceConfig(id="band-li", type=DeviceType.WEARABLE, site="sunshine",
                              building="5")),
        alerting=AlertingSettings(
            receivers=(receiver("station"), receiver("duty"), receiver("li-family"),
                       receiver("speakers", "broadcast")),
            groups=(RecipientGroup(name="fire_station", drill=True, recipients=(
                        Recipient(name="zhang", receivers=("station",)),)),
                    RecipientGroup(name="duty_officers", recipients=(
                        Recipient(name="wang", receivers=("duty",)),)),
                    RecipientGroup(name="family_contacts", recipients=(
                        Recipient(name="li-son", receivers=("li-family",),
                                  devices=("band-li",)),)),
                    RecipientGroup(name="public", recipients=(
                        Recipient(name="loudspeakers", receivers=("speakers",)),))),
            policies=(EscalationPolicy(
                name="hazards", remind_every_s=120, max_reminders=2,
                steps=(EscalationStep(groups=("fire_station", "family_contacts")),
                       EscalationStep(groups=("public",), min_severity="red"),
                       EscalationStep(after_s=60, groups=("duty_officers",)))),),
            retry_base_s=1.0, retry_max_s=4.0, send_timeout_s=5.0, **alerting),
    )


def gas(value: float, severity: Severity = Severity.ORANGE, *, drill: bool = False,
        device: str = DEVICE, hazard: str = "gas") -> Detection:
    return Detection(ts=START, device_id=device, site="sunshine", hazard=hazard,
                     kind=DetectionKind.HAZARD, severity=severity, firing=True, metric="lel",
                     value=value, level=1, message=f"可燃气体 {value} %LEL", reading_ts=START,
                     drill=drill)


class Running:
    """The alerting service, startable and killable, on one bus, schema and clock."""

    def __init__(self, settings: Settings, dsn: str, schema: str) -> None:
        self.settings = settings
        self.dsn = dsn
        self.schema = schema
        self.bus = MemoryBus()
        self.clock = FakeClock()
        self.task: asyncio.Task[None] | None = None
        self.stop = asyncio.Event()

    def start(self) -> None:
        self.stop = asyncio.Event()
        service = AlertingService(self.settings, self.bus, self.dsn, schema=self.schema,
                                  clock=self.clock)
        self.task = asyncio.create_task(service.run(self.stop), name="test.alerting")

    async def kill(self) -> None:
        """Cancel every task of the service where it stands (no graceful stop)."""
        assert self.task is not None and not self.task.done(), "the service died on its own"
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        self.task = None

    async def publish(self, *detections: Detection) -> None:
        await self.bus.publish("detections", [(d.device_id, encode_detection(d))
                                              for d in detections])


@asynccontextmanager
async def service(settings: Settings, dsn: str, schema: str
                  ) -> AsyncIterator[tuple[Running, AsyncConnection[Any]]]:
    db = await connect(dsn, schema, autocommit=True)
    running = Running(settings, dsn, schema)
    try:
        await sync_registry(db, settings.site_map().values(), settings.device_map().values())
        running.start()
        yield running, db
    finally:
        if running.task is not None:
            running.stop.set()
            await asyncio.wait_for(running.task, 15)
        await db.close()


def bodies(sink: LocalSink, channel: str) -> list[str]:
    return [m.body for m in sink.received(channel)]


async def rows(db: AsyncConnection[Any]) -> list[tuple[Any, ...]]:  # Any: outbox rows
    cur = await db.execute("SELECT step, receiver, status FROM notifications ORDER BY step, "
                           "receiver")
    return await cur.fetchall()


async def test_escalates_after_a_restart_on_time_and_sends_nothing_twice(
        pg_dsn: str, db_schema: str, sink: LocalSink) -> None:
    async with service(settings_for(sink.port), pg_dsn, db_schema) as (run, db):
        await run.publish(gas(32.0))
        await eventually(lambda: _sent(db, 1), "the fire station's SMS")
        assert bodies(sink, "station") == [
            "【守望】阳光小区3号楼2单元502 燃气泄漏 32%LEL 请立即关阀开窗勿动电器"]
        # Orange: no loudspeakers; not the family (not their relative's device); no duty yet.
        assert [m.channel for m in sink.messages] == ["station"]

        await run.kill()  # mid-escalation: the duty officer's step is still to come
        run.clock.advance(59.0)
        run.start()
        await asyncio.sleep(0.6)  # three polls: time for a step that is not due to fire
        assert [m.channel for m in sink.messages] == ["station"]

        run.clock.advance(1.0)  # 60 s after the alert opened
        await eventually(lambda: _sent(db, 2), "the duty officer's escalation SMS")
        assert [m.channel for m in sink.messages] == ["station", "duty"]
        [alert] = await list_alerts(db)
        assert alert.status is AlertStatus.ESCALATED
        escalated = [e for e in await list_events(db, alert.id) if e.action == "escalated"]
        assert [(e.at, e.from_status, e.to_status, e.note) for e in escalated] == [
            (START + 60.0, "open", "escalated", "step 2: duty_officers")]

        await run.kill()
        run.clock.advance(120.0)  # the first reminder is due
        run.start()
        await eventually(lambda: _sent(db, 4), "the reminders")
        reminders = sorted((m.channel, m.body) for m in sink.messages[2:])
        assert [c for c, _ in reminders] == ["duty", "station"]
        assert all(b.startswith("【提醒·未确认】【守望】") for _, b in reminders)

        await transition(db, alert.id, AlertStatus.ACKNOWLEDGED, actor="wang",
                         source="console", note="on site", now=run.clock.now)
        run.clock.advance(600.0)  # the second reminder would be due: the ack stopped it
        await asyncio.sleep(0.6)
        assert len(sink.messages) == 4
        cur = await db.execute("SELECT count(*) FROM escalations")
        assert await cur.fetchone() == (0,)
        assert await rows(db) == [(0, "station", "sent"), (2, "duty", "sent"),
                                  (101, "duty", "sent"), (101, "station", "sent")]


async def _sent(db: AsyncConnection[Any], count: int) -> bool:
    cur = await db.execute("SELECT count(*) FROM notifications WHERE status = 'sent'")
    row = await cur.fetchone()
    return row is not None and row[0] >= count


async def test_red_adds_the_loudspeakers_and_family_hears_only_of_its_relative(
        pg_dsn: str, db_schema: str, sink: LocalSink) -> None:
    async with service(settings_for(sink.port), pg_dsn, db_schema) as (run, db):
        await run.publish(gas(32.0))
        await eventually(lambda: _sent(db, 1), "the station SMS")
        await run.publish(gas(55.0, Severity.RED))  # a rise: the red-only step fires now
        await eventually(lambda: _sent(db, 2), "the broadcast")
        spoken = json.loads(bodies(sink, "speakers")[0])["text"]
        assert spoken.startswith("紧急通知：阳光小区3号楼2单元5层502室")
        sos = Detection(ts=START, device_id="band-li", site="sunshine", hazard="sos",
                        kind=DetectionKind.HAZARD, severity=Severity.RED, firing=True,
                        metric="sos", value=1.0)
        await run.publish(sos)
        await eventually(lambda: _sent(db, 5), "the SOS to station, family, speakers")
        await asyncio.sleep(0.4)
        assert len(bodies(sink, "li-family")) == 1
        assert "紧急呼救" in bodies(sink, "li-family")[0]
        assert len(bodies(sink, "station")) == 2  # the gas alert once, the SOS once


async def test_drills_go_only_to_drill_recipients(pg_dsn: str, db_schema: str,
                                                  sink: LocalSink) -> None:
    async with service(settings_for(sink.port), pg_dsn, db_schema) as (run, db):
        await run.publish(gas(60.0, Severity.RED, drill=True))
        await eventually(lambda: _sent(db, 1), "the drill SMS")
        run.clock.advance(61.0)  # the duty officers' group takes no part in drills
        await asyncio.sleep(0.6)
        assert [m.channel for m in sink.messages] == ["station"]
        assert sink.messages[0].body.startswith("【演练】【守望】")
        assert sink.messages[0].title.startswith("【演练】【红色预警】")


async def test_an_alarm_storm_becomes_one_summary(pg_dsn: str, db_schema: str,
                                                  sink: LocalSink) -> None:
    settings = settings_for(sink.port, storm_threshold=5)
    devices = tuple(DeviceConfig(id=f"smoke-{n}", type=DeviceType.SMOKE, site="sunshine",
                                 building="7", room=str(100 + n)) for n in range(40))
    settings = settings.model_copy(update={"devices": settings.devices + devices})
    async with service(settings, pg_dsn, db_schema) as (run, db):
        await run.publish(*(gas(9.0, device=f"smoke-{n}", hazard="smoke") for n in range(40)))
        await eventually(lambda: _sent(db, 1), "the summary")
        await asyncio.sleep(0.4)
        assert len(await list_alerts(db)) == 40
        assert bodies(sink, "station") == [
            "【守望】阳光小区 同时出现40条告警：烟雾报警40条。详情请登录值班台查看"]


async def test_reminders_go_to_people_not_to_the_loudspeakers(
        pg_dsn: str, db_schema: str, sink: LocalSink) -> None:
    async with service(settings_for(sink.port), pg_dsn, db_schema) as (run, db):
        await run.publish(gas(55.0, Severity.RED))
        await eventually(lambda: _sent(db, 2), "the station SMS and the broadcast")
        run.clock.advance(60.0)
        await eventually(lambda: _sent(db, 3), "the duty officer's SMS")
        run.clock.advance(120.0)  # the first reminder
        await eventually(lambda: _sent(db, 5), "the reminder to the station and the duty")
        await asyncio.sleep(0.6)  # three polls: time for a broadcast reminder to show
        assert sorted(m.channel for m in sink.messages) == [
            "duty", "duty", "speakers", "station", "station"]
        assert await rows(db) == [(0, "station", "sent"), (1, "speakers", "sent"),
                                  (2, "duty", "sent"), (101, "duty", "sent"),
                                  (101, "station", "sent")]


async def test_overdue_reminders_are_spread_out_not_sent_in_a_burst(
        pg_dsn: str, db_schema: str, sink: LocalSink) -> None:
    """After downtime every reminder is overdue: one goes at once, the next an interval later."""
    async with service(settings_for(sink.port), pg_dsn, db_schema) as (run, db):
        await run.publish(gas(55.0, Severity.RED))
        await eventually(lambda: _sent(db, 2), "the station SMS and the broadcast")
        run.clock.advance(60.0)
        await eventually(lambda: _sent(db, 3), "the duty officer's SMS")
        run.clock.advance(3600.0)  # both reminders (at 180 s and 300 s) long overdue
        await eventually(lambda: _sent(db, 5), "one reminder to the station and the duty")
        await asyncio.sleep(0.6)  # three polls: time for a second reminder to show
        assert [r[0] for r in await rows(db)] == [0, 1, 2, 101, 101]
        run.clock.advance(120.0)
        await eventually(lambda: _sent(db, 7), "the second reminder, an interval later")
        assert [r[0] for r in await rows(db)] == [0, 1, 2, 101, 101, 102, 102]
