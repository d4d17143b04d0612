"""A drill through the real pipeline: injected as drill data, scored from the database."""

from __future__ import annotations

import asyncio
import time

import pytest

from config.settings import load
from shouwang.models import AlertStatus
from shouwang.sink import LocalSink
from shouwang.store import connect
from shouwang.store.alerts import transition
from simulators.drill import DrillPlan, run_drill
from simulators.registry import registry_config
from simulators.scorecard import load_scorecard
from simulators.testbed import hazard_testbed
from tests.integration.test_scenarios import SITE, pipeline

pytestmark = pytest.mark.integration


async def _fire_station(pg_dsn: str, schema: str, device_id: str, stop: asyncio.Event) -> None:
    """Acknowledge the drill's alert as soon as it opens, then resolve it."""
    conn = await connect(pg_dsn, schema, autocommit=True)
    try:
        while not stop.is_set():
            cur = await conn.execute("SELECT id, status FROM alerts WHERE device_id = %s AND "
                                     "drill", (device_id,))
            row = await cur.fetchone()
            if row is not None and row[1] == "open":
                await transition(conn, row[0], AlertStatus.ACKNOWLEDGED, actor="fire-station-1",
                                 source="test", note="", now=time.time())
            elif row is not None and row[1] == "acknowledged":
                await transition(conn, row[0], AlertStatus.RESOLVED, actor="fire-station-1",
                                 source="test", note="leak closed", now=time.time())
                return
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def test_fast_gas_leak_drill_is_detected_notified_acknowledged_and_scored(
        pg_dsn: str, db_schema: str, mqtt_addr: tuple[str, int], run_id: str) -> None:
    devices, _ = hazard_testbed(SITE)
    stop = asyncio.Event()
    sink = LocalSink("127.0.0.1", 0)
    sink_task = asyncio.create_task(sink.run(stop), name="test.sink")
    await asyncio.wait_for(sink.ready.wait(), 10)
    settings = load(None, **registry_config({SITE: "演练小区"}, devices),
                    database={"dsn": pg_dsn, "schema_name": db_schema},
                    mqtt={"host": mqtt_addr[0], "port": mqtt_addr[1],
                          "client_id": f"{run_id}-ingest", "topic_root": f"{run_id}/v1"},
                    simulator={"enabled": False},
                    alerting={"receivers": [{"name": "fire-station-sms", "channel": "sms",
                                             "urls": [f"json://127.0.0.1:{sink.port}/sms"]}],
                              "routes": [{"hazards": ["gas"], "min_severity": "orange",
                                          "receivers": ["fire-station-sms"]}]})
    plan = DrillPlan(scenario="fast_gas_leak", site=SITE, device_id="fast-gas-leak",
                     speed=20.0, start_after_s=20.0, run_s=60.0, wait_s=60.0, seed=3)
    try:
        async with pipeline(settings, pg_dsn):
            station = asyncio.create_task(
                _fire_station(pg_dsn, db_schema, plan.device_id, stop), name="test.station")
            card = await run_drill(plan, list(settings.device_map().values()), dsn=pg_dsn,
                                   schema=db_schema, mqtt_host=mqtt_addr[0],
                                   mqtt_port=mqtt_addr[1], topic_root=settings.mqtt.topic_root)
            await asyncio.wait_for(station, 10)
    finally:
        stop.set()
        await sink_task

    assert card.missed == ()
    # Early warnings (a forecast) on the drill's own device may be listed; nothing elsewhere.
    assert [u for u in card.unexpected if u.device_id != plan.device_id] == []
    (row,) = card.rows
    assert (row.device_id, row.hazard, row.severity) == ("fast-gas-leak", "gas", "red")
    # Onset to alert: the first report after onset crosses (a 30 s simulated interval is
    # 1.5 s of wall time at speed 20), plus the pipeline.
    assert row.detected_s is not None and 0.0 < row.detected_s < 20.0
    assert set(row.notified_s) == {"sms"} and row.notified_s["sms"] >= row.detected_s
    assert row.acknowledged_s is not None and row.resolved_s is not None
    assert row.detected_s <= row.acknowledged_s <= row.resolved_s
    assert "【演练】" in sink.received("sms")[0].body

    conn = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        stored = await load_scorecard(conn, card.drill_id)
        cur = await conn.execute("SELECT count(*), bool_and(drill) FROM readings WHERE "
                                 "device_id = %s", (plan.device_id,))
        readings = await cur.fetchone()
    finally:
        await conn.close()
    assert stored == card
    assert readings is not None and readings[0] > 0 and readings[1] is True  # drill end to end
    text = card.markdown()
    assert "| fast-gas-leak | 燃气泄漏 Gas leak (`gas`) | red | red |" in text
    assert "## Missed\n\n- none" in text
