"""An open live stream ends when its session does: logout, a new password, expiry.

The console runs on a real uvicorn (port 0) with an injected clock; sessions live in a
real PostgreSQL schema. The stream re-checks its session at every keep-alive ping, so the
tests that rely on the ping use a short one; the logout test uses a long one, since a
logout in this process must end the stream at once.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import orjson
import pytest
import uvicorn

from config.settings import ConsoleSettings, DatabaseSettings, Settings, SiteConfig
from console import create_app
from console.app import close_streams
from console.auth import SESSION_COOKIE
from console.user_admin import change_password
from console.users import Role
from shouwang.bus import MemoryBus
from shouwang.codec import encode_alert
from shouwang.models import Alert, AlertStatus, DetectionKind, Location, Severity
from shouwang.store import connect
from tests.integration.console_app import Clock, LogsIn
from tests.integration.console_auth import add_user
from tests.integration.test_console_stream import SseReader, live_streams

pytestmark = pytest.mark.integration

TTL_S = 3600.0
WAIT_S = 15.0  # generous ceiling on a loaded 2-core box; every wait ends early
SETTINGS = Settings(
    console=ConsoleSettings(host="127.0.0.1", port=0, session_ttl_s=TTL_S),
    sites=(SiteConfig(id="s1", name="幸福里小区"),),
)


@dataclass
class Stack(LogsIn):
    url: str
    bus: MemoryBus
    clock: Clock
    client: Callable[[], httpx.AsyncClient]

    async def publish(self, alert_id: int, site: str = "s1") -> None:
        alert = Alert(id=alert_id, site=site, device_id="s-7", hazard="smoke",
                      kind=DetectionKind.HAZARD, severity=Severity.RED,
                      status=AlertStatus.OPEN, opened_at=self.clock.now,
                      location=Location(building="7号楼"), last_value=9.5, message="烟雾")
        await self.bus.publish("alert-updates", [(str(alert.id), encode_alert(alert))])


@asynccontextmanager
async def _stack(pg_dsn: str, schema: str, *, ping_s: float) -> AsyncIterator[Stack]:
    """The console on uvicorn with users 李值班 and 王微站 (both see every site)."""
    db = await connect(pg_dsn, schema, autocommit=True)
    try:
        await add_user(db, "李值班", Role.DUTY_OFFICER)
        await add_user(db, "王微站", Role.FIRE_STATION)
    finally:
        await db.close()
    clock = Clock(time.time())
    clients: list[httpx.AsyncClient] = []
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{listening.getsockname()[1]}"
        async with MemoryBus() as bus:
            app = create_app(SETTINGS, pg_dsn, bus, schema=schema, clock=clock, ping_s=ping_s)
            server = uvicorn.Server(uvicorn.Config(
                app, log_level="warning", log_config=None, lifespan="on",
                timeout_graceful_shutdown=5))
            serving = asyncio.create_task(server.serve(sockets=[listening]),
                                          name="test.console")

            def client() -> httpx.AsyncClient:
                made = httpx.AsyncClient(trust_env=False, timeout=WAIT_S, base_url=url)
                clients.append(made)
                return made

            try:
                async with asyncio.timeout(WAIT_S):
                    while not server.started:
                        assert not serving.done(), "the console did not start"
                        await asyncio.sleep(0.05)
                yield Stack(url=url, bus=bus, clock=clock, client=client)
            finally:
                for made in clients:
                    await made.aclose()
                close_streams(app)
                server.should_exit = True
                async with asyncio.timeout(WAIT_S):
                    await serving


async def _ends(events: SseReader) -> None:
    """The server says the session ended, then closes the stream."""
    await events.until("ended", WAIT_S)
    async with asyncio.timeout(WAIT_S):
        assert await events.next() is None


async def _refused(stack: Stack, cookie: str) -> None:
    """A browser's reconnect with the dead cookie is refused outright (no stream)."""
    async with httpx.AsyncClient(trust_env=False, timeout=WAIT_S, base_url=stack.url,
                                 cookies={SESSION_COOKIE: cookie}) as again:
        response = await again.get("/api/stream")
    assert response.status_code == 401
    assert response.json() == {"error": "log in first"}


async def _delivers(stack: Stack, events: SseReader, alert_id: int) -> None:
    await stack.publish(alert_id)
    event = await events.until("alert", WAIT_S)
    assert orjson.loads(event.data)["id"] == alert_id


async def test_logout_ends_that_sessions_stream_at_once(pg_dsn: str, db_schema: str) -> None:
    # A ping a minute away: only the logout itself can end the stream in time.
    async with _stack(pg_dsn, db_schema, ping_s=60) as stack:
        leaving = await stack.as_user("李值班")
        staying = await stack.as_user("李值班")  # the same person at another console
        other = await stack.as_user("王微站")
        cookie = leaving.cookies[SESSION_COOKIE]
        async with live_streams(leaving, staying, other, first_ping_s=WAIT_S) as readers:
            await _delivers(stack, readers[0], 1)
            started = time.monotonic()
            logged_out = await leaving.post("/api/logout", json={})
            assert logged_out.status_code == 200
            await _ends(readers[0])
            assert time.monotonic() - started < WAIT_S
            for reader in readers[1:]:  # other sessions' streams go on
                await reader.until("alert", WAIT_S)  # alert 1, sent before the logout
                await _delivers(stack, reader, 2)
        await _refused(stack, cookie)


async def test_new_password_ends_open_streams_by_the_next_ping(pg_dsn: str,
                                                                 db_schema: str) -> None:
    # ``shouwang passwd`` runs in another process: this console learns of it at a ping.
    settings = SETTINGS.model_copy(update={"database": DatabaseSettings(schema_name=db_schema)})
    async with _stack(pg_dsn, db_schema, ping_s=0.3) as stack:
        changed = await stack.as_user("李值班")
        other = await stack.as_user("王微站")
        cookie = changed.cookies[SESSION_COOKIE]
        async with live_streams(changed, other, first_ping_s=WAIT_S) as (ended, kept):
            for _ in range(2):  # pings pass while the session lives
                ping = await ended.until(":", WAIT_S)
                assert ping.comments[0].startswith("ping")
            await change_password(settings, pg_dsn, name="李值班",
                                  password="a-brand-new-password")
            await _ends(ended)
            # Another user's stream is unaffected: it outlives several more checks.
            for _ in range(3):
                await kept.until(":", WAIT_S)
            await _delivers(stack, kept, 3)
        await _refused(stack, cookie)


async def test_expired_session_ends_the_stream(pg_dsn: str, db_schema: str) -> None:
    async with _stack(pg_dsn, db_schema, ping_s=0.3) as stack:
        expiring = await stack.as_user("李值班")
        cookie = expiring.cookies[SESSION_COOKIE]
        async with live_streams(expiring, first_ping_s=WAIT_S) as (events,):
            stack.clock.now += TTL_S - 60  # near the end of the shift: still live
            for _ in range(2):
                await events.until(":", WAIT_S)
            await _delivers(stack, events, 4)
            stack.clock.now += 61
            await _ends(events)
        await _refused(stack, cookie)


async def test_narrowed_sites_apply_to_an_open_stream_by_the_next_ping(
        pg_dsn: str, db_schema: str) -> None:
    async with _stack(pg_dsn, db_schema, ping_s=0.3) as stack:
        station = await stack.as_user("王微站")
        async with live_streams(station, first_ping_s=WAIT_S) as (events,):
            await _delivers(stack, events, 5)
            db = await connect(pg_dsn, db_schema, autocommit=True)
            try:
                await db.execute("UPDATE console_users SET sites = ARRAY['s2'] "
                                 "WHERE name = '王微站'")
            finally:
                await db.close()
            for _ in range(3):  # a session check falls between these pings
                await events.until(":", WAIT_S)
            await stack.publish(6, site="s1")  # no longer theirs
            await stack.publish(7, site="s2")
            event = await events.until("alert", WAIT_S)
            assert orjson.loads(event.data)["id"] == 7
