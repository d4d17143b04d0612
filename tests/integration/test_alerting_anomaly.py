"""Learned-anomaly detections on a real PostgreSQL: a low alert on the console, paging
nobody unless a route names ``kinds: [anomaly]``."""

from __future__ import annotations

import asyncio

import pytest

from config.settings import Receiver, Route
from shouwang.models import AlertStatus, Detection, DetectionKind, Severity
from shouwang.sink import LocalSink
from tests.integration.test_alerting_service import (
    DEVICE,
    START,
    eventually,
    gas,
    running,
    settings_for,
)

pytestmark = pytest.mark.integration


def anomaly(*, firing: bool = True) -> Detection:
    return Detection(ts=START, device_id=DEVICE, site="sunshine", hazard="lel_anomaly",
                     kind=DetectionKind.ANOMALY, severity=Severity.ORANGE, firing=firing,
                     metric="lel", value=14.0, message="lel unusual for this device")


async def test_an_anomaly_opens_a_low_alert_that_pages_nobody_by_default(
        pg_dsn: str, db_schema: str, sink: LocalSink) -> None:
    async with running(settings_for(sink.port), pg_dsn, db_schema, sink) as h:
        await h.publish(anomaly(), gas(32.0))  # a hazard after it: proof the batch was seen
        await eventually(lambda: h.has_messages(1, 1), "the gas alert's messages")
        await asyncio.sleep(0.4)  # three dispatcher polls: room for a stray message
        by_kind = {a.kind: a for a in await h.alerts()}
        found = by_kind[DetectionKind.ANOMALY]
        assert (found.hazard, found.severity, found.status) == ("lel_anomaly", Severity.BLUE,
                                                                AlertStatus.OPEN)
        assert len(h.sink.messages) == 2  # the gas SMS and broadcast only
        assert all("燃气泄漏" in m.body for m in h.sink.messages)

        await h.publish(anomaly(firing=False))  # the readings are ordinary again

        async def closed() -> bool:
            return any(a.kind is DetectionKind.ANOMALY and a.status is AlertStatus.RESOLVED
                       for a in await h.alerts())
        await eventually(closed, "the anomaly alert to resolve")


async def test_a_route_naming_anomalies_sends_them_there_only(
        pg_dsn: str, db_schema: str, sink: LocalSink) -> None:
    base = settings_for(sink.port)
    maintenance = Receiver(name="maintenance", channel="wecom",
                           urls=(f"json://127.0.0.1:{sink.port}/maintenance",))
    alerting = base.alerting.model_copy(update={
        "receivers": (*base.alerting.receivers, maintenance),
        "routes": (*base.alerting.routes,
                   Route(kinds=("anomaly",), receivers=("maintenance",)))})
    settings = base.model_copy(update={"alerting": alerting})
    async with running(settings, pg_dsn, db_schema, sink) as h:
        await h.publish(anomaly())
        await eventually(lambda: _has(h.sink, "maintenance"), "the anomaly at maintenance")
        await asyncio.sleep(0.4)
        [message] = h.sink.received("maintenance")
        assert [m.channel for m in h.sink.messages] == ["maintenance"]
        assert message.title == "【蓝色预警】阳光小区 可燃气体浓度读数异常"


async def test_anomaly_alerts_can_be_switched_off(pg_dsn: str, db_schema: str,
                                                  sink: LocalSink) -> None:
    settings = settings_for(sink.port, anomaly_alerts=False)
    async with running(settings, pg_dsn, db_schema, sink) as h:
        await h.publish(anomaly(), gas(32.0))
        await eventually(lambda: h.has_messages(1, 1), "the gas alert's messages")
        assert [a.kind for a in await h.alerts()] == [DetectionKind.HAZARD]


async def _has(sink: LocalSink, channel: str) -> bool:
    return bool(sink.received(channel))
