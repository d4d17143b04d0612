"""Login, sessions, CSRF and roles of the console, against a real PostgreSQL schema.

Two sites: s1 (幸福里) with a gas alert, s2 (阳光) with a smoke alert. Each test logs in
fresh clients as the people it needs.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from psycopg import AsyncConnection

from config.settings import ConsoleSettings, DeviceConfig, Settings, SiteConfig, load
from console import create_app
from console.auth import SESSION_COOKIE
from console.user_admin import PASSWORD_ENV, UserAdminError, read_new_password
from console.user_admin import add_user as add_user_command
from console.users import DuplicateUser, Role, verify_login
from shouwang.bus import MemoryBus
from shouwang.catalog import DeviceType
from shouwang.store import connect
from shouwang.store.registry import sync_registry
from tests.integration.console_app import Clock, LogsIn, asgi_client, client_maker, open_alert
from tests.integration.console_auth import PASSWORD, add_user

pytestmark = pytest.mark.integration

NOW = 1_764_124_800.0
_ROOT = Path(__file__).resolve().parents[2]

SETTINGS = Settings(
    console=ConsoleSettings(login_attempts=3, login_window_s=60, session_ttl_s=3600),
    sites=(SiteConfig(id="s1", name="幸福里"), SiteConfig(id="s2", name="阳光")),
    devices=(
        DeviceConfig(id="g1", type=DeviceType.GAS, site="s1", name="3号楼燃气", building="3号楼"),
        DeviceConfig(id="k2", type=DeviceType.SMOKE, site="s2", name="厨房烟感", building="9号楼"),
    ),
)


@dataclass
class Stack(LogsIn):
    app: Any  # the Starlette app
    db: AsyncConnection[Any]
    clock: Clock
    s1_alert: int
    s2_alert: int
    client: Callable[[], httpx.AsyncClient]

    async def status(self, alert_id: int) -> str:
        cur = await self.db.execute("SELECT status FROM alerts WHERE id = %s", (alert_id,))
        row = await cur.fetchone()
        assert row is not None
        return str(row[0])


async def _open_alert(db: AsyncConnection[Any], device: str, site: str, hazard: str) -> int:
    """An open alert with one SMS notification to the site's station."""
    alert_id = await open_alert(db, device, site, hazard, at=NOW, value=50.0)
    await db.execute(
        "INSERT INTO notifications (alert_id, receiver, channel, body, created_at, "
        "next_attempt_at) VALUES (%s, %s, 'sms', %s, now(), now())",
        (alert_id, f"station-{site}", f"about {site}"))
    return alert_id


@pytest.fixture
async def stack(pg_dsn: str, db_schema: str) -> AsyncIterator[Stack]:
    db = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        await sync_registry(db, SETTINGS.site_map().values(), SETTINGS.device_map().values())
        s1 = await _open_alert(db, "g1", "s1", "gas")
        s2 = await _open_alert(db, "k2", "s2", "smoke")
        await add_user(db, "duty", Role.DUTY_OFFICER, ("s1", "s2"))
        await add_user(db, "station-s1", Role.FIRE_STATION, ("s1",))
        await add_user(db, "station-s2", Role.FIRE_STATION, ("s2",))
        await add_user(db, "viewer", Role.VIEWER, ("*",))
        clock = Clock(NOW)
        async with MemoryBus() as bus:
            app = create_app(SETTINGS, pg_dsn, bus, schema=db_schema, clock=clock)
            async with client_maker(app) as client:
                yield Stack(app=app, db=db, clock=clock, s1_alert=s1, s2_alert=s2,
                            client=client)
    finally:
        await db.close()


def _api_calls(stack: Stack) -> list[tuple[str, str]]:
    return [
        ("GET", "/api/alerts"), ("GET", f"/api/alerts/{stack.s1_alert}"),
        ("POST", f"/api/alerts/{stack.s1_alert}/ack"),
        ("POST", f"/api/alerts/{stack.s1_alert}/resolve"),
        ("GET", "/api/devices"), ("GET", "/api/notifications"), ("GET", "/api/stream"),
        ("GET", "/api/session"), ("POST", "/api/logout"),
    ]


async def test_no_session_is_401_and_pages_go_to_login(stack: Stack) -> None:
    anonymous = stack.client()
    for method, path in _api_calls(stack):
        response = await anonymous.request(method, path)
        assert response.status_code == 401, path
        assert response.json() == {"error": "log in first"}
    forged = stack.client()
    forged.cookies.set(SESSION_COOKIE, "made-up-token")
    assert (await forged.get("/api/alerts")).status_code == 401
    for page, target in (("/", "/login"), ("/station", "/login?next=station")):
        response = await anonymous.get(page)
        assert (response.status_code, response.headers["location"]) == (303, target)
    described = await anonymous.get("/api/openapi.json")  # public: it holds no data
    assert described.status_code == 200 and "/api/alerts" in described.json()["paths"]
    login_page = await anonymous.get("/login")
    assert login_page.status_code == 200
    assert '<script src="/static/login.js"' in login_page.text
    assert await stack.status(stack.s1_alert) == "open"


async def test_login_sets_a_strict_http_only_cookie(stack: Stack) -> None:
    client = stack.client()
    response = await client.post("/api/login", json={"name": "duty", "password": PASSWORD})
    assert response.status_code == 200
    assert response.json()["role"] == "duty_officer"
    assert response.json()["sites"] == ["s1", "s2"]
    cookie = response.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "path", "max-age"} <= attributes
    assert "samesite=strict" in cookie.lower()
    assert "secure" not in attributes  # plain http and secure_cookies off
    me = await client.get("/api/session")
    assert me.json()["name"] == "duty"
    assert me.json()["csrf_token"] == response.json()["csrf_token"]

    cur = await stack.db.execute("SELECT password_hash FROM console_users WHERE name = 'duty'")
    row = await cur.fetchone()
    assert row is not None and row[0].startswith("$argon2id$") and PASSWORD not in row[0]
    cur = await stack.db.execute("SELECT count(*) FROM console_sessions")
    assert await cur.fetchone() == (1,)


async def test_secure_cookie_over_tls(pg_dsn: str, db_schema: str) -> None:
    db = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        await add_user(db, "duty", Role.DUTY_OFFICER)
    finally:
        await db.close()
    async with MemoryBus() as bus:
        app = create_app(SETTINGS, pg_dsn, bus, schema=db_schema)
        async with asgi_client(app, base_url="https://console") as client:
            response = await client.post("/api/login",
                                         json={"name": "duty", "password": PASSWORD})
    assert response.status_code == 200
    assert "secure" in {p.strip().lower() for p in response.headers["set-cookie"].split(";")}


async def test_wrong_password_and_rate_limit(stack: Stack) -> None:
    client = stack.client()
    for name in ("duty", "nobody", "duty"):
        wrong = await client.post("/api/login", json={"name": name, "password": "guess-1234"})
        assert wrong.status_code == 401
        assert wrong.json() == {"error": "wrong name or password"}
        assert "set-cookie" not in wrong.headers
    # Three failures from this address: even the right password waits now.
    limited = await client.post("/api/login", json={"name": "viewer", "password": PASSWORD})
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 61
    stack.clock.now = NOW + 61
    assert (await client.post("/api/login",
                              json={"name": "viewer", "password": PASSWORD})).status_code == 200
    for bad in ({"name": "duty"}, {"name": "", "password": "x"}, {"name": "d", "password": 1}):
        assert (await client.post("/api/login", json=bad)).status_code == 422
    form = await client.post("/api/login", content=b"name=duty&password=x",
                             headers={"content-type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415


async def test_forged_or_missing_csrf_token_is_refused(stack: Stack) -> None:
    duty = await stack.as_user("duty")
    other = await stack.as_user("station-s1")
    for token in (None, "forged-token", other.headers["X-CSRF-Token"]):
        headers = {} if token is None else {"X-CSRF-Token": token}
        duty.headers.pop("X-CSRF-Token", None)
        response = await duty.post(f"/api/alerts/{stack.s1_alert}/ack", headers=headers)
        assert response.status_code == 403, token
        assert response.json() == {"error": "missing or wrong CSRF token"}
    assert await stack.status(stack.s1_alert) == "open"
    assert (await duty.post("/api/logout")).status_code == 403  # logout is protected too


async def test_fire_station_cannot_touch_another_sites_alert(stack: Stack) -> None:
    station = await stack.as_user("station-s2")
    for action in ("resolve", "ack"):
        response = await station.post(f"/api/alerts/{stack.s1_alert}/{action}")
        assert response.status_code == 404
    assert await stack.status(stack.s1_alert) == "open"
    assert (await station.get(f"/api/alerts/{stack.s1_alert}")).status_code == 404
    assert [a["id"] for a in (await station.get("/api/alerts")).json()] == [stack.s2_alert]
    assert (await station.get("/api/alerts", params={"site": "s1"})).json() == []
    assert [d["id"] for d in (await station.get("/api/devices")).json()] == ["k2"]
    assert [n["receiver"] for n in (await station.get("/api/notifications")).json()] == [
        "station-s2"]
    # Its own site's alert it may resolve, and the audit names the station.
    resolved = await station.post(f"/api/alerts/{stack.s2_alert}/resolve",
                                  json={"note": "灭火完毕"})
    assert resolved.status_code == 200
    detail = (await station.get(f"/api/alerts/{stack.s2_alert}")).json()
    assert [(e["actor"], e["to_status"], e["note"]) for e in detail["events"]][-1] == (
        "station-s2", "resolved", "灭火完毕")


async def test_viewer_cannot_acknowledge_or_resolve(stack: Stack) -> None:
    viewer = await stack.as_user("viewer")
    assert {a["id"] for a in (await viewer.get("/api/alerts")).json()} == {
        stack.s1_alert, stack.s2_alert}
    for alert_id in (stack.s1_alert, stack.s2_alert):
        for action in ("ack", "resolve"):
            response = await viewer.post(f"/api/alerts/{alert_id}/{action}")
            assert response.status_code == 403
            assert response.json() == {"error": f"role viewer may not "
                                       f"{'acknowledge' if action == 'ack' else 'resolve'}"}
        assert await stack.status(alert_id) == "open"


async def test_duty_officer_sees_both_sites_and_acts(stack: Stack) -> None:
    duty = await stack.as_user("duty")
    assert {a["site"] for a in (await duty.get("/api/alerts")).json()} == {"s1", "s2"}
    assert (await duty.post(f"/api/alerts/{stack.s1_alert}/ack")).status_code == 200
    assert await stack.status(stack.s1_alert) == "acknowledged"


async def test_logout_and_expiry_end_the_session(stack: Stack) -> None:
    first = await stack.as_user("duty")
    second = await stack.as_user("duty")
    assert (await first.post("/api/logout")).status_code == 200
    assert (await first.get("/api/alerts")).status_code == 401
    assert (await second.get("/api/alerts")).status_code == 200  # only that session ended
    stack.clock.now = NOW + 3601  # session_ttl_s = 3600
    assert (await second.get("/api/alerts")).status_code == 401


async def test_users_add_cli_takes_the_password_from_stdin(
        pg_dsn: str, db_schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "shouwang.yaml"
    config.write_text(yaml.safe_dump({"sites": [{"id": "s1", "name": "幸福里"}]},
                                     allow_unicode=True))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOUWANG_")}
    env.update(SHOUWANG_DATABASE__DSN=pg_dsn, SHOUWANG_DATABASE__SCHEMA_NAME=db_schema)
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "shouwang.cli", "users", "add", "zhang", "--role", "fire_station",
         "--site", "s1", "--config", str(config)],
        input="a-long-secret-1\n", capture_output=True, text=True, env=env, cwd=_ROOT,
        timeout=60)
    assert done.returncode == 0, done.stderr
    assert "a-long-secret-1" not in done.stderr

    # Refusals, by the functions the command runs (quicker than a process each).
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    with pytest.raises(UserAdminError, match="at least 10"):
        read_new_password()
    monkeypatch.setenv(PASSWORD_ENV, "from-the-environment")
    assert read_new_password() == "from-the-environment"
    settings = load(config, database={"dsn": pg_dsn, "schema_name": db_schema})
    for name, sites, why in (("li", ["mars"], "unknown site"), ("li", [], "at least one"),
                             ("zhang", ["s1"], "exists")):
        with pytest.raises((UserAdminError, DuplicateUser), match=why):
            await add_user_command(settings, pg_dsn, name=name, role=Role.VIEWER, sites=sites,
                                   password="a-long-secret-3")

    db = await connect(pg_dsn, db_schema, autocommit=True)
    try:
        user = await verify_login(db, "zhang", "a-long-secret-1")
        assert user is not None
        assert (user.role, user.sites) == (Role.FIRE_STATION, ("s1",))
        assert await verify_login(db, "zhang", "a-long-secret-3") is None
        cur = await db.execute("SELECT count(*) FROM console_users WHERE name = 'li'")
        assert await cur.fetchone() == (0,)
    finally:
        await db.close()


async def test_behind_a_trusted_proxy_each_client_has_its_own_login_limit(
        pg_dsn: str, db_schema: str) -> None:
    """The proxy's X-Forwarded-For names the client: one client's failures lock out that
    client only, and the audit trail names it."""
    db = await connect(pg_dsn, db_schema, autocommit=True)
    settings = SETTINGS.model_copy(update={"console": SETTINGS.console.model_copy(
        update={"trusted_proxies": (ip_network("127.0.0.1/32"),)})})
    try:
        await sync_registry(db, settings.site_map().values(), settings.device_map().values())
        alert_id = await _open_alert(db, "g1", "s1", "gas")
        await add_user(db, "duty", Role.DUTY_OFFICER, ("s1", "s2"))
        async with MemoryBus() as bus:
            app = create_app(settings, pg_dsn, bus, schema=db_schema, clock=Clock(NOW))
            async with asgi_client(app) as client:

                def via(address: str) -> dict[str, str]:
                    return {"x-forwarded-for": f"198.51.100.99, {address}"}

                for name in ("a", "b", "c"):
                    wrong = await client.post("/api/login", headers=via("203.0.113.1"),
                                              json={"name": name, "password": "guess-1234"})
                    assert wrong.status_code == 401
                locked = await client.post("/api/login", headers=via("203.0.113.1"),
                                           json={"name": "duty", "password": PASSWORD})
                assert locked.status_code == 429
                other = await client.post("/api/login", headers=via("203.0.113.2"),
                                          json={"name": "duty", "password": PASSWORD})
                assert other.status_code == 200, other.text
                token = other.json()["csrf_token"]
                acked = await client.post(f"/api/alerts/{alert_id}/ack",
                                          headers={**via("203.0.113.2"), "x-csrf-token": token},
                                          json={"note": "on my way"})
                assert acked.status_code == 200, acked.text
        cur = await db.execute("SELECT source FROM alert_events WHERE alert_id = %s "
                               "AND action = 'acknowledged'", (alert_id,))
        assert await cur.fetchall() == [("console 203.0.113.2",)]
    finally:
        await db.close()


async def test_one_client_guessing_cannot_lock_out_the_owner_but_many_clients_can_not_guess_on(
        pg_dsn: str, db_schema: str) -> None:
    """Failures count per client, per name from one client, and per name from all clients
    together (a larger allowance): a guesser at one address locks out only itself; a
    guess spread over many addresses stops the name for everyone until the window passes."""
    db = await connect(pg_dsn, db_schema, autocommit=True)
    console = SETTINGS.console.model_copy(update={
        "trusted_proxies": (ip_network("127.0.0.1/32"),), "login_attempts_per_name": 5})
    settings = SETTINGS.model_copy(update={"console": console})
    clock = Clock(NOW)
    try:
        await add_user(db, "duty", Role.DUTY_OFFICER, ("s1",))
        async with MemoryBus() as bus:
            app = create_app(settings, pg_dsn, bus, schema=db_schema, clock=clock)
            async with asgi_client(app) as client:

                async def login(address: str, password: str) -> int:
                    response = await client.post(
                        "/api/login", headers={"x-forwarded-for": address},
                        json={"name": "duty", "password": password})
                    return response.status_code

                assert [await login("203.0.113.1", "guess-1234") for _ in range(3)] == [401] * 3
                assert await login("203.0.113.1", PASSWORD) == 429   # the guesser waits
                assert await login("198.51.100.7", PASSWORD) == 200  # the owner does not
                # Two more addresses guess once each: five failures at the name in all.
                assert await login("203.0.113.2", "guess-1234") == 401
                assert await login("203.0.113.3", "guess-1234") == 401
                assert await login("198.51.100.7", PASSWORD) == 429
                clock.now = NOW + 61
                assert await login("198.51.100.7", PASSWORD) == 200
    finally:
        await db.close()
