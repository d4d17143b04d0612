"""Drills started from the console API, through the real pipeline, then scored and purged.

Real Mosquitto, ingest, detectors, alerting and PostgreSQL (the scenario tests' pipeline),
and the console app in this process (httpx over ASGI, lifespan run). The console publishes
the drill to the broker named in ``settings.mqtt``, exactly as ``shouwang drill`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from alerting.templates import hazard_wording
from config.settings import Settings, load
from console import create_app
from console.app import close_streams
from console.users import Role
from shouwang.bus import MemoryBus
from shouwang.sink import LocalSink
from shouwang.store import connect
from simulators.registry import registry_config
from simulators.scorecard import Scorecard, load_scorecard
from simulators.testbed import hazard_testbed
from tests.integration.console_auth import add_user, log_in
from tests.integration.e2e import eventually
from tests.integration.test_scenarios import SITE, pipeline

pytestmark = pytest.mark.integration

DEVICE = "fast-gas-leak"
OTHER_SITE = "other-site"
USERS = {"演练管理员": Role.ADMIN, "王值班": Role.DUTY_OFFICER, "阳光微站": Role.FIRE_STATION,
         "只读": Role.VIEWER}
GAS = ["燃气泄漏", "Gas leak"]  # as alerting.templates names the hazard "gas"
FAST_DRILL = {"scenario": "fast_gas_leak", "site": SITE, "device_id": DEVICE, "speed": 20,
              "start_after_s": 20, "run_s": 60, "wait_s": 60, "seed": 3}


@dataclass
class Desk:
    settings: Settings
    clients: dict[str, httpx.AsyncClient]
    dsn: str
    schema: str
    sink: LocalSink
    app: Starlette


def _settings(pg_dsn: str, schema: str, mqtt_addr: tuple[str, int], run_id: str,
              sink_port: int) -> Settings:
    devices, _ = hazard_testbed(SITE)
    registry = registry_config({SITE: "演练小区", OTHER_SITE: "别的小区"}, devices)
    registry["devices"] = [*registry["devices"],  # type: ignore[misc]
                           {"id": "elsewhere-gas", "type": "gas", "site": OTHER_SITE}]
    return load(None, **registry, database={"dsn": pg_dsn, "schema_name": schema},
                mqtt={"host": mqtt_addr[0], "port": mqtt_addr[1],
                      "client_id": f"{run_id}-ingest", "topic_root": f"{run_id}/v1"},
                bus={"partitions": 1}, simulator={"enabled": False},
                alerting={"receivers": [{"name": "fire-station-sms", "channel": "sms",
                                         "urls": [f"json://127.0.0.1:{sink_port}/sms"]}],
                          "routes": [{"hazards": ["gas"], "min_severity": "orange",
                                      "receivers": ["fire-station-sms"]}]})


@contextlib.asynccontextmanager
async def console_desk(pg_dsn: str, schema: str, mqtt_addr: tuple[str, int], run_id: str,
                       *, with_pipeline: bool) -> AsyncIterator[Desk]:
    stop = asyncio.Event()
    sink = LocalSink("127.0.0.1", 0)
    sink_task = asyncio.create_task(sink.run(stop), name="test.sink")
    await asyncio.wait_for(sink.ready.wait(), 10)
    settings = _settings(pg_dsn, schema, mqtt_addr, run_id, sink.port)
    try:
        async with contextlib.AsyncExitStack() as stack:
            if with_pipeline:
                await stack.enter_async_context(pipeline(settings, pg_dsn))
            else:
                from shouwang.wiring import prepare_store
                await prepare_store(pg_dsn, settings)
            db = await connect(pg_dsn, schema, autocommit=True)
            try:
                for name, role in USERS.items():
                    await add_user(db, name, role, (SITE,))
            finally:
                await db.close()
            bus = await stack.enter_async_context(MemoryBus())
            app = create_app(settings, pg_dsn, bus, schema=schema)
            await stack.enter_async_context(app.router.lifespan_context(app))
            clients = {}
            for name in USERS:
                client = await stack.enter_async_context(httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://console",
                    timeout=30))
                await log_in(client, name)
                clients[name] = client
            yield Desk(settings=settings, clients=clients, dsn=pg_dsn, schema=schema,
                       sink=sink, app=app)
    finally:
        stop.set()
        await sink_task


async def _station_answers(client: httpx.AsyncClient, stop: asyncio.Event) -> None:
    """The fire station acknowledges the drill's alert on the console, then resolves it."""
    while not stop.is_set():
        live = (await client.get("/api/alerts", params={"status": "live"})).json()
        for alert in live:
            if alert["device_id"] != DEVICE or not alert["drill"]:
                continue
            if alert["status"] == "open":
                response = await client.post(f"/api/alerts/{alert['id']}/ack", json={})
                assert response.status_code == 200, response.text
            elif alert["status"] == "acknowledged":
                response = await client.post(f"/api/alerts/{alert['id']}/resolve",
                                             json={"note": "演练：阀门已关"})
                assert response.status_code == 200, response.text
                return
        await asyncio.sleep(0.2)


async def _count(desk: Desk, query: str, *args: Any) -> int:  # Any: SQL parameters
    conn = await connect(desk.dsn, desk.schema, autocommit=True)
    try:
        cur = await conn.execute(query, args)
        row = await cur.fetchone()
        return int(row[0]) if row else 0
    finally:
        await conn.close()


async def test_drill_started_from_the_console_is_detected_answered_scored_and_purged(
        pg_dsn: str, db_schema: str, mqtt_addr: tuple[str, int], run_id: str) -> None:
    async with console_desk(pg_dsn, db_schema, mqtt_addr, run_id,
                            with_pipeline=True) as desk:
        officer = desk.clients["王值班"]
        scenarios = (await officer.get("/api/drills/scenarios")).json()
        fast = next(s for s in scenarios if s["name"] == "fast_gas_leak")
        fitting = {d["id"] for d in fast["devices"]}
        assert DEVICE in fitting and "bystander-gas" in fitting
        assert "bystander-smoke" not in fitting  # a gas scenario needs a gas device
        assert "elsewhere-gas" not in fitting    # another site's device is not shown

        response = await officer.post("/api/drills", json=FAST_DRILL)
        assert response.status_code == 200, response.text
        drill = response.json()
        assert drill["status"] == "running" and drill["devices"] == [DEVICE]
        drill_id = drill["id"]
        assert drill["expected"] == [{"device_id": DEVICE, "hazard": "gas",
                                      "hazard_name": GAS, "severity": "red"}]
        # Its player (this process) says who it is and that it is alive.
        assert await _count(desk, "SELECT count(*) FROM drills WHERE id = %s AND player LIKE %s "
                                  "AND heartbeat_at IS NOT NULL", drill_id,
                            f"% pid {os.getpid()}") == 1
        again = await officer.post("/api/drills", json=FAST_DRILL)
        assert again.status_code == 409  # one drill per device at a time

        answered = asyncio.Event()
        station = asyncio.create_task(_station_answers(desk.clients["阳光微站"], answered),
                                      name="test.station")
        try:
            async def kinds_so_far() -> set[str]:
                detail = (await officer.get(f"/api/drills/{drill_id}")).json()
                return {entry["kind"] for entry in detail["timeline"]}

            # The timeline fills while the drill runs: onset first, then the pipeline's part.
            assert "onset" in await kinds_so_far()

            seen: list[tuple[str, set[str]]] = []

            async def finished() -> bool:
                detail = (await officer.get(f"/api/drills/{drill_id}")).json()
                seen.append((detail["status"], {e["kind"] for e in detail["timeline"]}))
                return bool(detail["status"] == "finished")

            await eventually(finished, timeout_s=90)
            # Read live: the detection was on the timeline while the drill still ran.
            assert any(status == "running" and "detection" in kinds for status, kinds in seen)
            await asyncio.wait_for(station, 10)
        finally:
            answered.set()
            station.cancel()

        detail = (await officer.get(f"/api/drills/{drill_id}")).json()
        kinds = [entry["kind"] for entry in detail["timeline"]]
        for kind in ("onset", "detection", "notification", "acknowledged", "resolved"):
            assert kind in kinds, kinds
        assert kinds.index("onset") < kinds.index("detection") < kinds.index("acknowledged") \
            < kinds.index("resolved")
        acked = next(e for e in detail["timeline"] if e["kind"] == "acknowledged")
        assert acked["actor"] == "阳光微站" and acked["device_id"] == DEVICE
        # Every entry names its hazard as the messages do (the SMS sent in this drill).
        assert {tuple(e["hazard_name"]) for e in detail["timeline"]} == {tuple(GAS)}
        card = detail["scorecard"]
        (row,) = card["rows"]
        assert (row["device_id"], row["hazard"], row["severity"]) == (DEVICE, "gas", "red")
        assert row["hazard_name"] == GAS
        assert row["detected_s"] is not None and 0 < row["detected_s"] < 20
        assert set(row["notified_s"]) == {"sms"}
        assert row["detected_s"] <= row["acknowledged_s"] <= row["resolved_s"]
        assert card["missed"] == []
        assert "【演练】" in desk.sink.received("sms")[0].body
        assert GAS[0] in desk.sink.received("sms")[0].body

        report = await officer.get(f"/api/drills/{drill_id}/report.md")
        assert report.status_code == 200
        assert report.headers["content-type"] == "text/plain; charset=utf-8"
        assert f"| {DEVICE} | 燃气泄漏 Gas leak (`gas`) | red | red |" in report.text

        listed = (await desk.clients["只读"].get("/api/drills")).json()
        assert [d["id"] for d in listed] == [drill_id] and listed[0]["detected"] == 1

        # Kept apart: the device's chart and alert history show real data only.
        chart = (await officer.get(f"/api/devices/{DEVICE}/readings",
                                   params={"metric": "lel", "hours": 1})).json()
        assert chart["buckets"] == []
        assert (await officer.get(f"/api/devices/{DEVICE}")).json()["alerts"] == []

        # Purge: the officer may not, the admin may; the report stays.
        assert (await officer.post(f"/api/drills/{drill_id}/purge")).status_code == 403
        readings = await _count(desk, "SELECT count(*) FROM readings WHERE device_id = %s "
                                      "AND drill", DEVICE)
        assert readings > 0
        purged = await desk.clients["演练管理员"].post(f"/api/drills/{drill_id}/purge")
        assert purged.status_code == 200, purged.text
        counts = purged.json()
        assert counts["readings"] == readings and counts["alerts"] >= 1
        assert counts["notifications"] >= 1 and counts["alert_events"] >= 3
        assert await _count(desk, "SELECT count(*) FROM readings WHERE drill") == 0
        assert await _count(desk, "SELECT count(*) FROM alerts WHERE drill") == 0

        after = (await officer.get(f"/api/drills/{drill_id}")).json()
        assert after["purged_at"] is not None and after["scorecard"] == card
        told = [e["kind"] for e in after["timeline"]]  # now told from the scorecard
        for kind in ("onset", "detection", "notification", "acknowledged", "resolved"):
            assert kind in told, told
        assert {tuple(e["hazard_name"]) for e in after["timeline"]} == {tuple(GAS)}
        conn = await connect(pg_dsn, db_schema, autocommit=True)
        try:
            stored = await load_scorecard(conn, drill_id)
        finally:
            await conn.close()
        # The API adds each hazard's name to the stored scorecard, nothing else.
        for item in (*card["rows"], *card["unexpected"]):
            assert item.pop("hazard_name") == [hazard_wording(item["hazard"], "zh").name,
                                               hazard_wording(item["hazard"], "en").name]
        assert stored == Scorecard.from_json(card)


async def test_only_admins_and_duty_officers_start_drills_on_their_own_sites(
        pg_dsn: str, db_schema: str, mqtt_addr: tuple[str, int], run_id: str) -> None:
    async with console_desk(pg_dsn, db_schema, mqtt_addr, run_id,
                            with_pipeline=False) as desk:
        for name in ("阳光微站", "只读"):
            response = await desk.clients[name].post("/api/drills", json=FAST_DRILL)
            assert response.status_code == 403, (name, response.text)
        officer = desk.clients["王值班"]
        # A forged CSRF token is refused before anything else.
        forged = await officer.post("/api/drills", json=FAST_DRILL,
                                    headers={"X-CSRF-Token": "forged"})
        assert forged.status_code == 403
        cases = [
            ({**FAST_DRILL, "site": OTHER_SITE, "device_id": "elsewhere-gas"}, 404),
            ({**FAST_DRILL, "scenario": "meteor_strike"}, 422),
            ({**FAST_DRILL, "device_id": "bystander-smoke"}, 422),  # wrong device type
            ({**FAST_DRILL, "device_id": "no-such-device"}, 422),
            ({**FAST_DRILL, "speed": 0}, 422),
            ({**FAST_DRILL, "extra": 1}, 422),
        ]
        for body, status in cases:
            response = await officer.post("/api/drills", json=body)
            assert response.status_code == status, (body, response.text)
            assert "error" in response.json()
        assert (await officer.get("/api/drills")).json() == []  # nothing was recorded
        assert (await officer.get("/api/drills/12345")).status_code == 404
        assert (await officer.get("/api/drills/12345/report.md")).status_code == 404
        assert (await desk.clients["演练管理员"].post("/api/drills/12345/purge")).status_code \
            == 404
        anonymous = httpx.AsyncClient(transport=desk.clients["只读"]._transport,
                                      base_url="http://console")
        async with anonymous:
            assert (await anonymous.get("/api/drills")).status_code == 401
            page = await anonymous.get("/drills")
            assert page.status_code == 303 and page.headers["location"] == "/login"
        page = await officer.get("/drills")
        assert page.status_code == 200 and "drills.js" in page.text


async def test_a_console_shutting_down_stops_its_drill_and_scores_it(
        pg_dsn: str, db_schema: str, mqtt_addr: tuple[str, int], run_id: str) -> None:
    async with console_desk(pg_dsn, db_schema, mqtt_addr, run_id,
                            with_pipeline=False) as desk:
        officer = desk.clients["王值班"]
        long_drill = {**FAST_DRILL, "speed": 1, "run_s": 3600, "wait_s": 3600}
        response = await officer.post("/api/drills", json=long_drill)
        assert response.status_code == 200, response.text
        drill_id = response.json()["id"]
        assert response.json()["playing_here"] is True
        # A building outage plays on every device of its building: none may join another
        # drill meanwhile.
        outage = {**long_drill, "scenario": "building_power_outage", "device_id": "outage-smoke"}
        response = await officer.post("/api/drills", json=outage)
        assert response.status_code == 200, response.text
        assert response.json()["devices"] == ["outage-electrical", "outage-smoke",
                                              "outage-water"]
        overheat = {**long_drill, "scenario": "electrical_overheat",
                    "device_id": "outage-electrical"}
        assert (await officer.post("/api/drills", json=overheat)).status_code == 409
        close_streams(desk.app)  # what the console service calls when it stops

        async def scored() -> bool:
            detail = (await officer.get(f"/api/drills/{drill_id}")).json()
            return detail["status"] == "finished" and detail["scorecard"] is not None

        await eventually(scored, timeout_s=30)
        detail = (await officer.get(f"/api/drills/{drill_id}")).json()
        assert detail["playing_here"] is False
        # No pipeline ran here: nothing was detected, and the report says so.
        assert detail["missed"] == [f"{DEVICE}/gas"]
