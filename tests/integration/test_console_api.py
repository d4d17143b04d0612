"""The console's JSON API against a real PostgreSQL schema (httpx over ASGI, lifespan run)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from psycopg import AsyncConnection

from config.settings import DeviceConfig, Settings, SiteConfig
from console import create_app
from console.users import Role
from console.views import iso_utc
from shouwang.bus import MemoryBus
from shouwang.catalog import DeviceType
from shouwang.codec import decode_alert
from shouwang.models import AlertStatus, Detection, DetectionKind, Severity
from shouwang.store import connect
from shouwang.store.alerts import upsert_live
from shouwang.store.registry import sync_registry
from tests.integration.console_app import Clock, asgi_client
from tests.integration.console_auth import add_user, log_in

pytestmark = pytest.mark.integration

NOW = 1_764_124_800.0  # 2025-11-26T02:40:00Z
OPENED = NOW - 60.0
XSS_NAME = "<script>alert('x')</script>"

SETTINGS = Settings(
    sites=(SiteConfig(id="s1", name="幸福里小区"),),
    devices=(
        DeviceConfig(id="g1", type=DeviceType.GAS, site="s1", name="3号楼502燃气",
                     building="3号楼", unit="2单元", floor="5", room="502", lat=31.2,
                     lon=121.5, report_interval_s=60),
        DeviceConfig(id="x1", type=DeviceType.SMOKE, site="s1", name=XSS_NAME,
                     building="1号楼"),
        DeviceConfig(id="w1", type=DeviceType.WATER, site="s1", name="地库水位",
                     building="地库", report_interval_s=30),
        DeviceConfig(id="e1", type=DeviceType.ELECTRICAL, site="s1", name="配电箱",
                     report_interval_s=60),
    ),
)


@dataclass
class Console:
    client: httpx.AsyncClient
    bus: MemoryBus
    db: AsyncConnection[Any]
    clock: Clock
    alert_id: int


async def _seed(db: AsyncConnection[Any]) -> int:
    await sync_registry(db, SETTINGS.site_map().values(), SETTINGS.device_map().values())
    for device_id, status, last_seen, battery in (
        ("g1", "online", NOW - 30, 87.0),   # reported recently
        ("w1", "online", NOW - 100, 12.0),  # missed 3 reports of 30 s
        ("e1", "offline", NOW - 5, 50.0),   # said it is offline (Last Will)
    ):
        await db.execute("UPDATE devices SET status = %s, last_seen = to_timestamp(%s), "
                         "battery = %s WHERE id = %s", (status, last_seen, battery, device_id))
    detection = Detection(ts=OPENED, device_id="g1", site="s1", hazard="gas",
                          kind=DetectionKind.HAZARD, severity=Severity.RED, firing=True,
                          metric="lel", value=55.0, level=2, message="可燃气体 55 %LEL")
    async with db.transaction(), db.cursor() as cur:
        alert, created, _ = await upsert_live(cur, detection, OPENED)
    assert created
    await db.execute(
        "INSERT INTO notifications (alert_id, step, receiver, channel, body, status, attempts, "
        "last_error, created_at, next_attempt_at, sent_at) VALUES "
        "(%s, 0, 'station', 'sms', '【守望】3号楼 燃气泄漏 红色', 'sent', 1, '', "
        " to_timestamp(%s), to_timestamp(%s), to_timestamp(%s)), "
        "(%s, 0, 'loudspeaker', 'broadcast', '请注意 gas', 'failed', 8, 'timeout', "
        " to_timestamp(%s), to_timestamp(%s), NULL)",
        (alert.id, OPENED + 1, OPENED + 1, OPENED + 2, alert.id, OPENED + 3, OPENED + 3))
    await add_user(db, "王值班", Role.DUTY_OFFICER, ("s1",))
    return alert.id


@pytest.fixture
async def console(pg_dsn: str, db_schema: str) -> AsyncIterator[Console]:
    db = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        alert_id = await _seed(db)
        clock = Clock(NOW)
        async with MemoryBus() as bus:
            app = create_app(SETTINGS, pg_dsn, bus, schema=db_schema, clock=clock)
            async with asgi_client(app) as client:
                await log_in(client, "王值班")
                yield Console(client=client, bus=bus, db=db, clock=clock, alert_id=alert_id)
    finally:
        await db.close()


async def test_healthz(console: Console) -> None:
    response = await console.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_healthz_is_503_without_database() -> None:
    async with MemoryBus() as bus:
        app = create_app(SETTINGS, "postgresql://shouwang@127.0.0.1:1/shouwang", bus)
        async with asgi_client(app) as client:
            response = await client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert response.json()["error"] == "database unavailable"


async def test_open_alert_has_every_field(console: Console) -> None:
    response = await console.client.get("/api/alerts", params={"status": "open"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == [{
        "id": console.alert_id,
        "site": "s1",
        "device_id": "g1",
        "location": {"building": "3号楼", "unit": "2单元", "floor": "5", "room": "502",
                     "lat": 31.2, "lon": 121.5, "text": "3号楼 2单元 5层 502"},
        "hazard": "gas",
        "hazard_name": ["燃气泄漏", "Gas leak"],
        "kind": "hazard",
        "severity": "red",
        "severity_level": 4,
        "status": "open",
        "opened_at": "2025-11-26T02:39:00.000Z",
        "acknowledged_at": None,
        "resolved_at": None,
        "last_value": 55.0,
        "message": "可燃气体 55 %LEL",
        "drill": False,
        "assignment": None,
        "escalation": None,  # SETTINGS has no escalation policy
    }]


@pytest.mark.parametrize(("query", "found"), [
    ("status=open", 1),
    ("status=acknowledged", 0),
    ("status=live", 1),
    ("status=resolved,expired", 0),
    ("status=acknowledged,open", 1),
    ("status=resolved&status=open", 1),
    ("", 1),
    ("site=s1&status=live", 1),
    ("site=elsewhere", 0),
])
async def test_alert_status_filter(console: Console, query: str, found: int) -> None:
    response = await console.client.get("/api/alerts?" + query)
    assert response.status_code == 200
    assert len(response.json()) == found


async def test_unknown_status_is_422(console: Console) -> None:
    response = await console.client.get("/api/alerts", params={"status": "bogus"})
    assert response.status_code == 422
    assert "bogus" in response.json()["error"]


async def _audit(db: AsyncConnection[Any], alert_id: int) -> list[tuple[Any, ...]]:
    cur = await db.execute(
        "SELECT actor, source, action, from_status, to_status, note, extract(epoch FROM at) "
        "FROM alert_events WHERE alert_id = %s ORDER BY id", (alert_id,))
    return await cur.fetchall()


async def test_acknowledge_then_resolve(console: Console) -> None:
    client, alert_id = console.client, console.alert_id
    async with console.bus.consumer(["alert-updates"], "watcher", from_latest=True) as watcher:
        response = await client.post(f"/api/alerts/{alert_id}/ack",
                                     json={"actor": "王值班", "note": "已派人前往"})
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "acknowledged"
        assert body["acknowledged_at"] == iso_utc(NOW)

        published = await watcher.batch(timeout_s=1.0)
        assert [m.key for m in published] == [str(alert_id)]
        assert decode_alert(published[0].value).status is AlertStatus.ACKNOWLEDGED

        cur = await console.db.execute(
            "SELECT status, acknowledged_by, extract(epoch FROM acknowledged_at) FROM alerts "
            "WHERE id = %s", (alert_id,))
        assert await cur.fetchone() == ("acknowledged", "王值班", NOW)
        audit = await _audit(console.db, alert_id)
        assert audit[-1][:6] == ("王值班", "console 127.0.0.1", "acknowledged", "open",
                                 "acknowledged", "已派人前往")

        again = await client.post(f"/api/alerts/{alert_id}/ack")
        assert again.status_code == 409
        assert again.json() == {"error": "an alert that is acknowledged cannot become "
                                         "acknowledged"}
        assert len(await _audit(console.db, alert_id)) == len(audit)

        console.clock.now = NOW + 120
        resolved = await client.post(f"/api/alerts/{alert_id}/resolve")
        assert resolved.status_code == 200
        assert resolved.json()["status"] == "resolved"
        assert resolved.json()["resolved_at"] == iso_utc(NOW + 120)
        published = await watcher.batch(timeout_s=1.0)
        assert decode_alert(published[0].value).status is AlertStatus.RESOLVED

    assert (await client.post(f"/api/alerts/{alert_id}/resolve")).status_code == 409
    detail = (await client.get(f"/api/alerts/{alert_id}")).json()
    assert detail["status"] == "resolved"
    assert [(e["action"], e["actor"], e["to_status"]) for e in detail["events"]] == [
        ("opened", "system", "open"),
        ("acknowledged", "王值班", "acknowledged"),
        ("resolved", "王值班", "resolved"),  # the logged-in user, whatever the body says
    ]
    assert detail["events"][1]["at"] == iso_utc(NOW)
    assert (await client.get("/api/alerts", params={"status": "live"})).json() == []


async def test_unknown_alert_is_404(console: Console) -> None:
    for method, path in (("POST", "/api/alerts/987654/ack"),
                         ("POST", "/api/alerts/987654/resolve"),
                         ("GET", "/api/alerts/987654"),
                         ("POST", f"/api/alerts/{2**70}/ack"),
                         ("POST", "/api/alerts/abc/ack"),
                         ("GET", "/api/nothing-here")):
        response = await console.client.request(method, path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/json"
        assert "error" in response.json()


@pytest.mark.parametrize(("content", "content_type", "status"), [
    (b"{not json", "application/json", 422),
    (b'{"actor": ""}', "application/json", 422),
    (b'{"actor": "a", "role": "admin"}', "application/json", 422),
    (b'["console"]', "application/json", 422),
    (b'{"note": "' + b"x" * 3000 + b'"}', "application/json", 422),
    (b"actor=evil", "application/x-www-form-urlencoded", 415),
    (b"{}" + b" " * 20_000, "application/json", 413),
])
async def test_bad_body_is_refused(console: Console, content: bytes, content_type: str,
                                   status: int) -> None:
    response = await console.client.post(f"/api/alerts/{console.alert_id}/ack",
                                         content=content,
                                         headers={"content-type": content_type})
    assert response.status_code == status
    assert isinstance(response.json()["error"], str)
    cur = await console.db.execute("SELECT status FROM alerts WHERE id = %s",
                                   (console.alert_id,))
    assert await cur.fetchone() == ("open",)


async def test_wrong_method_is_405_json(console: Console) -> None:
    response = await console.client.get(f"/api/alerts/{console.alert_id}/ack")
    assert response.status_code == 405
    assert response.json() == {"error": "Method Not Allowed"}


async def test_devices(console: Console) -> None:
    response = await console.client.get("/api/devices")
    assert response.status_code == 200
    devices = {d["id"]: d for d in response.json()}
    assert set(devices) == {"g1", "x1", "w1", "e1"}
    assert {i: d["status"] for i, d in devices.items()} == {
        "g1": "online", "x1": "unknown", "w1": "offline", "e1": "offline"}
    g1 = devices["g1"]
    assert g1 == {
        "id": "g1", "type": "gas", "site": "s1", "name": "3号楼502燃气",
        "location": {"building": "3号楼", "unit": "2单元", "floor": "5", "room": "502",
                     "lat": 31.2, "lon": 121.5, "text": "3号楼 2单元 5层 502"},
        "status": "online", "last_seen": iso_utc(NOW - 30), "battery": 87.0,
        "report_interval_s": 60.0,
    }
    assert devices["x1"]["last_seen"] is None
    assert devices["x1"]["battery"] is None
    # Markup in a name is data: returned exactly, never escaped or stripped here.
    assert devices["x1"]["name"] == XSS_NAME

    console.clock.now = NOW + 1000  # now g1 has missed its reports too
    later = {d["id"]: d["status"] for d in (await console.client.get("/api/devices")).json()}
    assert later["g1"] == "offline"


async def test_notifications(console: Console) -> None:
    response = await console.client.get("/api/notifications")
    assert response.status_code == 200
    notes = response.json()
    assert [n["receiver"] for n in notes] == ["loudspeaker", "station"]  # newest first
    failed, sent = notes
    assert sent == {
        "id": sent["id"], "alert_id": console.alert_id, "receiver": "station",
        "channel": "sms", "body": "【守望】3号楼 燃气泄漏 红色", "status": "sent",
        "attempts": 1, "last_error": "", "created_at": iso_utc(OPENED + 1),
        "sent_at": iso_utc(OPENED + 2),
    }
    assert (failed["status"], failed["attempts"], failed["last_error"], failed["sent_at"]) == (
        "failed", 8, "timeout", None)

    one = await console.client.get("/api/notifications",
                                   params={"alert_id": console.alert_id, "limit": 1})
    assert [n["receiver"] for n in one.json()] == ["loudspeaker"]
    other = await console.client.get("/api/notifications", params={"alert_id": 424242})
    assert other.json() == []
    for bad in ({"limit": 0}, {"limit": "many"}, {"alert_id": "x"}):
        refused = await console.client.get("/api/notifications", params=bad)
        assert refused.status_code == 422, bad
        assert "error" in refused.json()


async def test_page_and_static_files(console: Console) -> None:
    page = await console.client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert '<script src="/static/app.js"' in page.text
    assert "实时警报" in page.text and "Live alerts" in page.text
    for path, content_type in (("/static/app.js", "text/javascript; charset=utf-8"),
                               ("/static/style.css", "text/css; charset=utf-8")):
        response = await console.client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"] == content_type
    missing = await console.client.get("/static/nope.js")
    assert missing.status_code == 404
    assert "error" in missing.json()


async def test_metrics(console: Console) -> None:
    await console.client.post(f"/api/alerts/{console.alert_id}/ack")
    await console.client.post(f"/api/alerts/{console.alert_id}/ack")
    response = await console.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'shouwang_console_alert_actions_total{action="acknowledge",outcome="done"}' in text
    assert 'shouwang_console_alert_actions_total{action="acknowledge",outcome="refused"}' in text


async def test_concurrent_acknowledgements_only_one_wins(console: Console) -> None:
    responses = await asyncio.gather(*(
        console.client.post(f"/api/alerts/{console.alert_id}/ack", json={"actor": f"o{i}"})
        for i in range(5)))
    assert sorted(r.status_code for r in responses) == [200, 409, 409, 409, 409]
    audit = await _audit(console.db, console.alert_id)
    assert [row[2] for row in audit] == ["opened", "acknowledged"]


@pytest.mark.parametrize(("query", "found"), [
    ("", {"g1", "x1", "w1", "e1"}),
    ("type=gas", {"g1"}),
    ("status=offline", {"w1", "e1"}),
    ("status=unknown", {"x1"}),
    ("battery_below=20", {"w1"}),
    ("silent_s=60", {"x1", "w1"}),  # e1 reported 5 s ago (then said offline)
    ("type=water&status=offline&battery_below=50", {"w1"}),
    ("site=elsewhere", set()),
])
async def test_device_filters(console: Console, query: str, found: set[str]) -> None:
    response = await console.client.get("/api/devices?" + query)
    assert response.status_code == 200
    assert {d["id"] for d in response.json()} == found


@pytest.mark.parametrize("query", ["type=toaster", "status=sleepy", "battery_below=101",
                                   "silent_s=0", "colour=red"])
async def test_bad_device_filter_is_422(console: Console, query: str) -> None:
    response = await console.client.get("/api/devices?" + query)
    assert response.status_code == 422
    assert "error" in response.json()


async def test_device_detail_has_thresholds_and_alerts(console: Console) -> None:
    response = await console.client.get("/api/devices/g1")
    assert response.status_code == 200
    detail = response.json()
    assert detail["id"] == "g1" and detail["name"] == "3号楼502燃气"
    assert [m["key"] for m in detail["metrics"]] == ["lel", "co", "battery", "rssi"]
    lel = [(t["value"], t["severity"]) for t in detail["thresholds"] if t["metric"] == "lel"]
    assert lel == [(25.0, "orange"), (50.0, "red")]  # GB/T 50493 levels
    assert [a["id"] for a in detail["alerts"]] == [console.alert_id]
    assert (await console.client.get("/api/devices/nope")).status_code == 404


async def test_device_readings_in_time_buckets(console: Console) -> None:
    rows = [(NOW - 3600 + 60 * i, float(i)) for i in range(60)]  # one a minute, last hour
    rows.append((NOW - 7200, 99.0))  # outside a 1-hour window
    async with console.db.cursor() as cur:
        await cur.executemany(
            "INSERT INTO readings (ts, device_id, metric, value, received_at) "
            "VALUES (to_timestamp(%s), 'g1', 'lel', %s, now())", rows)
    response = await console.client.get("/api/devices/g1/readings",
                                        params={"metric": "lel", "hours": 1, "buckets": 10})
    assert response.status_code == 200
    body = response.json()
    assert body["bucket_s"] == 360.0
    buckets = body["buckets"]
    assert sum(b["count"] for b in buckets) == 60
    assert len(buckets) in (10, 11)  # the hour need not start on a bucket boundary
    assert min(b["min"] for b in buckets) == 0.0 and max(b["max"] for b in buckets) == 59.0
    for bucket in buckets:
        assert bucket["min"] <= bucket["mean"] <= bucket["max"]
    assert [b["start"] for b in buckets] == sorted(b["start"] for b in buckets)
    empty = await console.client.get("/api/devices/g1/readings", params={"metric": "co"})
    assert empty.json()["buckets"] == []
    for bad in ({}, {"metric": "lel", "hours": 0}, {"metric": "lel", "buckets": 5}):
        assert (await console.client.get("/api/devices/g1/readings",
                                         params=bad)).status_code == 422
