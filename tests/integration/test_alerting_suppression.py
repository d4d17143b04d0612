"""Silences (maintenance windows) and inhibition, on a real PostgreSQL and the local sink."""

from __future__ import annotations

import asyncio

import pytest

from alerting.silences import UnsilenceableHazard, cancel_silence, create_silence
from config.settings import DeviceConfig
from shouwang.catalog import DeviceType
from shouwang.models import AlertStatus, Detection, DetectionKind, Severity
from shouwang.sink import LocalSink
from shouwang.store.alerts import list_alerts, list_events
from tests.integration.test_alerting_escalation import DEVICE, _sent, gas, service, settings_for
from tests.integration.test_alerting_service import START, eventually

pytestmark = pytest.mark.integration


def sos(device: str) -> Detection:
    return Detection(ts=START, device_id=device, site="sunshine", hazard="sos",
                     kind=DetectionKind.HAZARD, severity=Severity.RED, firing=True,
                     metric="sos", value=1.0)


async def test_a_maintenance_window_silences_its_building_but_never_sos(
        pg_dsn: str, db_schema: str, sink: LocalSink) -> None:
    settings = settings_for(sink.port)
    settings = settings.model_copy(update={"devices": (*settings.devices,
        DeviceConfig(id="band-3", type=DeviceType.WEARABLE, site="sunshine", building="3"),
        DeviceConfig(id="gas-5", type=DeviceType.GAS, site="sunshine", building="5"))})
    async with service(settings, pg_dsn, db_schema) as (run, db):
        with pytest.raises(UnsilenceableHazard):
            await create_silence(db, site="sunshine", building="3", hazards=("gas", "sos"),
                                 created_by="li", reason="x", starts_at=START,
                                 ends_at=START + 3600, now=START)
        window = await create_silence(db, site="sunshine", building="3", created_by="li-eng",
                                      reason="gas meter replacement", starts_at=START - 1,
                                      ends_at=START + 3600, now=START - 10)
        await run.publish(gas(40.0), sos("band-3"), gas(40.0, device="gas-5"))
        await eventually(lambda: _sent(db, 3), "the SOS (station, speakers), building 5's gas")
        run.clock.advance(61.0)  # the silenced alert must not escalate either
        await eventually(lambda: _sent(db, 5), "their escalations to the duty officer")
        await asyncio.sleep(0.4)
        alerts = {a.device_id: a for a in await list_alerts(db)}
        assert alerts[DEVICE].status is AlertStatus.SUPPRESSED
        assert alerts["band-3"].status is AlertStatus.ESCALATED  # SOS ignores the window
        [_opened, silenced] = await list_events(db, alerts[DEVICE].id)
        assert (silenced.action, silenced.source, silenced.to_status) == (
            "silenced", "silence", "suppressed")
        assert f"silence #{window.id} by li-eng" in silenced.note
        assert "gas meter replacement" in silenced.note
        messages = [(m.channel, m.body) for m in sink.messages]
        assert not any("502" in body for _, body in messages)  # the silenced device
        assert sorted(c for c, _ in messages) == ["duty", "duty", "speakers", "station",
                                                        "station"]

        assert await cancel_silence(db, window.id, by="li-eng", now=run.clock.now)
        cur = await db.execute("SELECT cancelled_by, ends_at <= to_timestamp(%s) FROM "
                               "silences WHERE id = %s", (run.clock.now, window.id))
        assert await cur.fetchone() == ("li-eng", True)

        # The gas still fires after the window: it opens again and escalation starts over.
        await eventually(lambda: _sent(db, 6), "the formerly silenced alert's SMS")
        await asyncio.sleep(0.3)
        assert [m.channel for m in sink.messages[5:]] == ["station"]
        assert "502" in sink.messages[5].body
        reopened = await list_events(db, alerts[DEVICE].id)
        assert [(e.action, e.to_status) for e in reopened][-1] == ("unsilenced", "open")
        run.clock.advance(59.0)
        await asyncio.sleep(0.5)
        assert len(sink.messages) == 6  # the duty step is 60 s after the reopening
        run.clock.advance(1.0)
        await eventually(lambda: _sent(db, 7), "the reopened alert's escalation")
        assert sink.messages[6].channel == "duty" and "502" in sink.messages[6].body


async def test_a_confirmed_fire_inhibits_its_detectors_and_an_outage_the_offlines(
        pg_dsn: str, db_schema: str, sink: LocalSink) -> None:
    settings = settings_for(sink.port)
    settings = settings.model_copy(update={"devices": (*settings.devices,
        DeviceConfig(id="smoke-3", type=DeviceType.SMOKE, site="sunshine", building="3"),
        DeviceConfig(id="smoke-5", type=DeviceType.SMOKE, site="sunshine", building="5"),
        DeviceConfig(id="fire-3", type=DeviceType.SMOKE, site="sunshine", building="3"))})
    async with service(settings, pg_dsn, db_schema) as (run, db):
        await run.publish(gas(80.0, Severity.RED, device="fire-3", hazard="fire"))
        await eventually(lambda: _sent(db, 2), "the fire alert (station and speakers)")
        await run.publish(gas(9.0, Severity.RED, device="smoke-3", hazard="smoke"),
                          gas(9.0, Severity.RED, device="smoke-5", hazard="smoke"))
        await eventually(lambda: _sent(db, 4), "building 5's smoke alert")
        await asyncio.sleep(0.4)
        alerts = {a.device_id: a for a in await list_alerts(db)}
        assert alerts["smoke-3"].status is AlertStatus.SUPPRESSED
        assert alerts["smoke-5"].status is AlertStatus.OPEN
        note = (await list_events(db, alerts["smoke-3"].id))[-1].note
        assert note == f"inhibited by alert #{alerts['fire-3'].id} (confirmed-fire)"
        assert len(sink.messages) == 4
