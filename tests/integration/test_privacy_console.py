"""Wearable health data in the console API, by role, against a real PostgreSQL schema:
duty officers and care staff see heart rates; the fire station and viewers see that a
wearable alert exists, and where, but no values or series. The audit trail is admins'."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from psycopg import AsyncConnection

from console import ConsoleService, create_app
from console.privacy import RESTRICTED_TEXT
from console.users import Role
from shouwang.audit import record_config
from shouwang.bus import MemoryBus
from shouwang.codec import encode_alert
from shouwang.store import connect
from shouwang.store.alerts import get_alert
from tests.integration.console_app import client_maker
from tests.integration.console_auth import add_user, log_in, logged_in
from tests.integration.privacy_seed import NAME_A, NOW, Seeded, privacy_settings, seed
from tests.integration.test_console_stream import SseReader, live_streams, running

pytestmark = pytest.mark.integration

SETTINGS = privacy_settings()
ROLES = {"duty": Role.DUTY_OFFICER, "care": Role.CARE, "station": Role.FIRE_STATION,
         "viewer": Role.VIEWER, "admin": Role.ADMIN}


@dataclass
class Console:
    clients: dict[str, httpx.AsyncClient]
    db: AsyncConnection[Any]
    seeded: Seeded


@pytest.fixture
async def console(pg_dsn: str, db_schema: str) -> AsyncIterator[Console]:
    db = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        seeded = await seed(db, SETTINGS)
        await record_config(db, SETTINGS, actor="os:ops@host", now=NOW - 1000)
        for name, role in ROLES.items():
            await add_user(db, name, role, ("s1",))
        async with MemoryBus() as bus:
            app = create_app(SETTINGS, pg_dsn, bus, schema=db_schema, clock=lambda: NOW)
            async with client_maker(app) as client:
                clients = {}
                for name in ROLES:
                    clients[name] = client()
                    await log_in(clients[name], name)
                yield Console(clients=clients, db=db, seeded=seeded)
    finally:
        await db.close()


async def test_heart_rate_series_only_for_health_roles(console: Console) -> None:
    url = "/api/devices/wear-a/readings?metric=heart_rate&hours=48"
    for name in ("duty", "care", "admin"):
        response = await console.clients[name].get(url)
        assert response.status_code == 200, (name, response.text)
        assert sum(b["count"] for b in response.json()["buckets"]) == 3
        assert max(b["max"] for b in response.json()["buckets"]) == 160.0
    for name in ("station", "viewer"):
        response = await console.clients[name].get(url)
        assert response.status_code == 403, name
        assert "health" in response.json()["error"]
        spo2 = await console.clients[name].get("/api/devices/wear-a/readings?metric=spo2")
        assert spo2.status_code == 403, name
        # The device's own battery is not health data; a gas sensor's series is open.
        battery = await console.clients[name].get("/api/devices/wear-a/readings?metric=battery")
        assert battery.status_code == 200, name
        gas = await console.clients[name].get("/api/devices/gas-1/readings?metric=lel")
        assert gas.status_code == 200, name


async def _alerts(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    response = await client.get("/api/alerts?status=open&status=acknowledged")
    assert response.status_code == 200, response.text
    return {a["hazard"]: a for a in response.json()}


async def test_alerts_show_place_but_no_values_to_the_fire_station(console: Console) -> None:
    duty = await _alerts(console.clients["duty"])
    assert duty["heart_rate_high"]["last_value"] == 160.0
    assert NAME_A in duty["heart_rate_high"]["message"]
    for name in ("station", "viewer"):
        seen = await _alerts(console.clients[name])
        # Every alert is there, with its place and severity ...
        assert set(seen) == set(duty)
        heart = seen["heart_rate_high"]
        assert heart["location"]["room"] == "302" and heart["severity"] == "orange"
        # ... but a wearable's value and its text are not.
        assert heart["last_value"] is None and heart["message"] == RESTRICTED_TEXT
        assert seen["sos"]["message"] == duty["sos"]["message"]  # what to do, no values
        assert seen["sos"]["last_value"] is None
        assert seen["gas"]["last_value"] == 55.0  # not personal
        response = await console.clients[name].get(f"/api/alerts/{console.seeded.heart_alert}")
        detail = response.json()
        assert detail["last_value"] is None
        # Every note on it is hidden: the detection's text (values), what staff wrote.
        assert [(e["note"], e.get("note_hidden")) for e in detail["events"]] == [
            (None, True)] * len(detail["events"]), detail["events"]
        assert NAME_A not in response.text and "160" not in response.text
    detail = (await console.clients["duty"].get(
        f"/api/alerts/{console.seeded.heart_alert}")).json()
    assert f"已电话联系{NAME_A}" in [e["note"] for e in detail["events"]]


async def test_device_page_and_messages_hide_health_data(console: Console) -> None:
    station = (await console.clients["station"].get("/api/devices/wear-a")).json()
    assert "heart_rate" not in [m["key"] for m in station["metrics"]]
    assert "battery" in [m["key"] for m in station["metrics"]]
    assert all(a["last_value"] is None for a in station["alerts"])
    care = (await console.clients["care"].get("/api/devices/wear-a")).json()
    assert "heart_rate" in [m["key"] for m in care["metrics"]]

    bodies = {n["alert_id"]: n["body"] for n in
              (await console.clients["station"].get("/api/notifications")).json()}
    assert bodies[console.seeded.heart_alert] == RESTRICTED_TEXT
    assert "SOS" in bodies[console.seeded.sos_alert]
    duty = {n["alert_id"]: n["body"] for n in
            (await console.clients["duty"].get("/api/notifications")).json()}
    assert "160" in duty[console.seeded.heart_alert]


async def test_care_staff_may_acknowledge(console: Console) -> None:
    response = await console.clients["care"].post(
        f"/api/alerts/{console.seeded.sos_alert}/ack", json={"note": "护理员已到场"})
    assert response.status_code == 200, response.text
    response = await console.clients["viewer"].post(
        f"/api/alerts/{console.seeded.other_alert}/ack", json={})
    assert response.status_code == 403


async def test_audit_trail_is_for_admins_and_merges_every_kind(console: Console) -> None:
    for name in ("duty", "care", "station", "viewer"):
        response = await console.clients[name].get("/api/audit")
        assert response.status_code == 403, name
    await console.db.execute(
        "INSERT INTO silences (site, device_id, starts_at, ends_at, created_by, reason, "
        "created_at, cancelled_at, cancelled_by) VALUES ('s1', 'gas-1', to_timestamp(%s), "
        "to_timestamp(%s), '李工', '检修', to_timestamp(%s), to_timestamp(%s), '李工')",
        (NOW - 500, NOW + 3600, NOW - 500, NOW - 400))
    admin = console.clients["admin"]
    entries = (await admin.get("/api/audit")).json()
    kinds = {(e["category"], e["action"]) for e in entries}
    assert {("config", "config_first_seen"), ("silence", "silence_added"),
            ("silence", "silence_cancelled")} <= kinds
    acks = [e for e in entries if e["category"] == "alert" and e["actor"] == "王值班"]
    assert [(a["subject"], a["detail"]["to_status"]) for a in acks] == [
        (str(console.seeded.heart_alert), "acknowledged")]
    assert [e["at"] for e in entries] == sorted((e["at"] for e in entries), reverse=True)

    only = (await admin.get("/api/audit?category=config,silence&limit=2")).json()
    assert len(only) == 2 and {e["category"] for e in only} <= {"config", "silence"}
    by_actor = (await admin.get("/api/audit", params={"actor": "李工"})).json()
    assert [e["action"] for e in by_actor] == ["silence_cancelled", "silence_added"]
    window = (await admin.get("/api/audit", params={
        "since": "2025-11-26T02:31:00Z", "until": "2025-11-26T02:33:30Z"})).json()
    assert {e["action"] for e in window} == {"silence_added", "silence_cancelled"}
    bad = await admin.get("/api/audit?category=secrets")
    assert bad.status_code == 422
    bad = await admin.get("/api/audit?colour=red")
    assert bad.status_code == 422
    async with httpx.AsyncClient(transport=admin._transport,
                                 base_url="http://console") as anonymous:
        assert (await anonymous.get("/api/audit")).status_code == 401
        page = await anonymous.get("/audit")
        assert (page.status_code, page.headers["location"]) == (303, "/login")
    page = await admin.get("/audit")
    assert page.status_code == 200 and "/static/audit.js" in page.text
    assert (await admin.get("/static/audit.js")).status_code == 200


async def test_live_stream_redacts_for_the_fire_station(pg_dsn: str, db_schema: str) -> None:
    settings = privacy_settings(console={"host": "127.0.0.1", "port": 0})
    db = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        seeded = await seed(db, settings)
        heart = await get_alert(db, seeded.heart_alert)
        await add_user(db, "station", Role.FIRE_STATION, ("s1",))
        await add_user(db, "duty", Role.DUTY_OFFICER, ("s1",))
    finally:
        await db.close()
    async with MemoryBus() as bus:
        service = ConsoleService(settings, bus, pg_dsn, schema=db_schema)
        async with running(service), \
                logged_in(service.url, "station", "duty") as clients, \
                live_streams(*clients, first_ping_s=5.0) as (s_reader, d_reader):
            readers = {"station": s_reader, "duty": d_reader}
            await bus.publish("alert-updates", [(str(heart.id), encode_alert(heart))])
            shown = {name: orjson.loads((await reader.until("alert", 5.0)).data)
                     for name, reader in readers.items()}
    assert shown["duty"]["last_value"] == 160.0
    assert (shown["station"]["last_value"], shown["station"]["message"]) == (None,
                                                                             RESTRICTED_TEXT)
    assert shown["station"]["location"]["room"] == "302"


async def test_public_cap_feed_never_carries_a_residents_alert(console: Console) -> None:
    async with httpx.AsyncClient(transport=console.clients["admin"]._transport,
                                 base_url="http://console") as anonymous:
        feed = await anonymous.get("/api/cap")
        assert feed.status_code == 200
        assert f"/api/cap/{console.seeded.gas_alert}.xml" in feed.text  # public warnings stay
        for alert_id in (console.seeded.heart_alert, console.seeded.sos_alert):
            assert f"/api/cap/{alert_id}.xml" not in feed.text
            assert (await anonymous.get(f"/api/cap/{alert_id}.xml")).status_code == 404
        assert NAME_A not in feed.text and "302" not in feed.text
        gas = await anonymous.get(f"/api/cap/{console.seeded.gas_alert}.xml")
        assert gas.status_code == 200


async def test_the_first_admin_of_a_fresh_install_is_audited(pg_dsn: str, db_schema: str,
                                                              tmp_path: Path) -> None:
    # Its password file goes to tmp_path, not the repository's own .shouwang/.
    settings = SETTINGS.model_copy(update={"database": SETTINGS.database.model_copy(
        update={"data_dir": tmp_path / "pg"})})
    db = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        async with MemoryBus() as bus:
            app = create_app(settings, pg_dsn, bus, schema=db_schema, clock=lambda: NOW)
            async with app.router.lifespan_context(app), asyncio.timeout(20):
                while True:
                    cur = await db.execute("SELECT actor, action, subject FROM audit_log "
                                           "WHERE category = 'user'")
                    rows = await cur.fetchall()
                    if rows:
                        break
                    await asyncio.sleep(0.1)
        assert rows == [("system:first-start", "user_added", "admin")]
    finally:
        await db.close()


# What care staff wrote about the resident, and what the duty officer wrote about the gas.
SOS_NOTE = "老人有心脏病史，已含服硝酸甘油 heart condition, took nitroglycerin"
SOS_ASSIGN_NOTE = "带上她的药盒 bring her pill box"
GAS_NOTE = "已关闭燃气总阀 main gas valve closed"


async def _detail(client: httpx.AsyncClient, alert_id: int) -> tuple[str, dict[str, Any]]:
    response = await client.get(f"/api/alerts/{alert_id}")
    assert response.status_code == 200, response.text
    return response.text, response.json()


async def test_notes_on_a_wearables_alert_are_for_health_roles(console: Console) -> None:
    sos, gas = console.seeded.sos_alert, console.seeded.gas_alert
    care, duty = console.clients["care"], console.clients["duty"]
    for response in (
            await care.post(f"/api/alerts/{sos}/ack", json={"note": SOS_NOTE}),
            await care.post(f"/api/alerts/{sos}/assign",
                            json={"assignee": "care", "note": SOS_ASSIGN_NOTE}),
            await duty.post(f"/api/alerts/{gas}/ack", json={"note": GAS_NOTE})):
        assert response.status_code == 200, response.text

    for name in ("station", "viewer"):
        listed = await console.clients[name].get("/api/alerts?status=acknowledged")
        text, detail = await _detail(console.clients[name], sos)
        for body in (listed.text, text):
            assert "nitroglycerin" not in body and "pill box" not in body, (name, body)
        # That care staff acted, who and when, still shows; what they wrote does not.
        acked = [e for e in detail["events"] if e["action"] == "acknowledged"]
        assert [(e["actor"], e["at"], e["note"], e.get("note_hidden")) for e in acked] == [
            ("care", "2025-11-26T02:40:00.000Z", None, True)]
        assert detail["events"][0]["note"] == "紧急呼叫：佩戴者按下了 SOS 键"  # as the alert says
        assignment = detail["assignment"]
        assert (assignment["assignee"], assignment["assigned_by"], assignment["note"],
                assignment["note_hidden"]) == ("care", "care", None, True)
        # A gas leak is not a resident's health: its note stays for everyone.
        _, gas_detail = await _detail(console.clients[name], gas)
        assert GAS_NOTE in [e["note"] for e in gas_detail["events"]]
        assert all("note_hidden" not in e for e in gas_detail["events"])

    for name in ("care", "duty", "admin"):
        _, detail = await _detail(console.clients[name], sos)
        assert SOS_NOTE in [e["note"] for e in detail["events"]], name
        assert all("note_hidden" not in e for e in detail["events"])
        assert detail["assignment"]["note"] == SOS_ASSIGN_NOTE
        listed = await console.clients[name].get("/api/alerts?status=acknowledged")
        assert SOS_ASSIGN_NOTE in listed.text

    async with httpx.AsyncClient(transport=care._transport,
                                 base_url="http://console") as anonymous:
        feed = await anonymous.get("/api/cap")
        assert feed.status_code == 200 and "nitroglycerin" not in feed.text


async def test_live_stream_hides_notes_on_a_wearables_alert(pg_dsn: str,
                                                            db_schema: str) -> None:
    settings = privacy_settings(console={"host": "127.0.0.1", "port": 0})
    db = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        seeded = await seed(db, settings)
        for name, role in (("station", Role.FIRE_STATION), ("care", Role.CARE)):
            await add_user(db, name, role, ("s1",))
    finally:
        await db.close()
    raw: dict[str, list[str]] = {"station": [], "care": []}
    last: dict[str, dict[int, dict[str, Any]]] = {"station": {}, "care": {}}

    async def until_assigned(name: str, reader: SseReader, alert_id: int) -> None:
        async with asyncio.timeout(10):
            while (shown := last[name].get(alert_id)) is None or not shown.get("assignment"):
                event = await reader.until("alert", 10.0)
                raw[name].append(event.data)
                alert = orjson.loads(event.data)
                last[name][alert["id"]] = alert

    async with MemoryBus() as bus:
        service = ConsoleService(settings, bus, pg_dsn, schema=db_schema)
        async with running(service), \
                logged_in(service.url, "station", "care") as (station, care), \
                live_streams(station, care, first_ping_s=5.0) as (s_reader, c_reader):
            readers = {"station": s_reader, "care": c_reader}
            for url, body in (
                    (f"/api/alerts/{seeded.sos_alert}/ack", {"note": SOS_NOTE}),
                    (f"/api/alerts/{seeded.sos_alert}/assign",
                     {"assignee": "care", "note": SOS_ASSIGN_NOTE}),
                    (f"/api/alerts/{seeded.gas_alert}/assign",
                     {"assignee": "station", "note": GAS_NOTE})):
                response = await care.post(url, json=body)
                assert response.status_code == 200, response.text
            for name, reader in readers.items():
                await until_assigned(name, reader, seeded.sos_alert)
                await until_assigned(name, reader, seeded.gas_alert)
    station_text = "\n".join(raw["station"])
    assert "nitroglycerin" not in station_text and "pill box" not in station_text
    shown = last["station"][seeded.sos_alert]["assignment"]
    assert (shown["assignee"], shown["note"], shown["note_hidden"]) == ("care", None, True)
    assert last["station"][seeded.gas_alert]["assignment"]["note"] == GAS_NOTE
    assert last["care"][seeded.sos_alert]["assignment"]["note"] == SOS_ASSIGN_NOTE
