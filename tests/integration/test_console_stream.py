"""The live stream and the service lifecycle, on a real uvicorn bound to port 0."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import httpx
import orjson
import pytest

from config.settings import ConsoleSettings, DeviceConfig, Settings, SiteConfig
from console import ConsoleError, ConsoleService
from console.users import Role
from console.views import alert_view
from shouwang.bus import MemoryBus
from shouwang.catalog import DeviceType
from shouwang.codec import encode_alert
from shouwang.models import Alert, AlertStatus, Detection, DetectionKind, Location, Severity
from shouwang.store import connect
from shouwang.store.alerts import upsert_live
from shouwang.store.registry import sync_registry
from tests.integration.console_auth import add_user, log_in

pytestmark = pytest.mark.integration

SETTINGS = Settings(
    console=ConsoleSettings(host="127.0.0.1", port=0),
    sites=(SiteConfig(id="s1", name="幸福里小区"),),
    devices=(DeviceConfig(id="s-7", type=DeviceType.SMOKE, site="s1", name="7号楼烟感",
                          building="7号楼", floor="3", room="301"),),
)


@dataclass
class SseEvent:
    event: str = ""
    data: str = ""
    comments: list[str] = field(default_factory=list)


class SseReader:
    """Splits a streamed response into server-sent events (blank line = end of event)."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.aiter_lines()

    async def next(self) -> SseEvent | None:
        current = SseEvent()
        async for line in self._lines:
            if not line:
                if current.event or current.data or current.comments:
                    return current
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if not name:
                current.comments.append(value)
            elif name == "event":
                current.event = value
            elif name == "data":
                current.data = f"{current.data}\n{value}" if current.data else value
        return None

    async def until(self, wanted: str, timeout_s: float) -> SseEvent:
        async with asyncio.timeout(timeout_s):
            while True:
                event = await self.next()
                assert event is not None, f"stream ended before a {wanted!r} event"
                if event.event == wanted or (wanted == ":" and event.comments):
                    return event


@asynccontextmanager
async def live_streams(*clients: httpx.AsyncClient,
                       first_ping_s: float) -> AsyncIterator[list[SseReader]]:
    """Each client's live stream, read from once its first ping came: only then is the
    stream surely being served, so what the test does next can reach it."""
    async with AsyncExitStack() as streams:
        readers = [SseReader(await streams.enter_async_context(client.stream("GET", "/api/stream")))
                   for client in clients]
        for reader in readers:
            await reader.until(":", first_ping_s)
        yield readers


@asynccontextmanager
async def running(service: ConsoleService) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop), name="test.console")
    ready = asyncio.create_task(service.ready.wait())
    try:
        done, _ = await asyncio.wait({task, ready}, timeout=10,
                                     return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            await task  # raises why it could not start
        assert ready in done, "the console did not start within 10 s"
        yield task
    finally:
        ready.cancel()
        stop.set()
        async with asyncio.timeout(10):
            await task


async def _seed_alert(pg_dsn: str, schema: str) -> Alert:
    db = await connect(pg_dsn, schema, autocommit=True)
    try:
        await sync_registry(db, SETTINGS.site_map().values(), SETTINGS.device_map().values())
        detection = Detection(ts=time.time(), device_id="s-7", site="s1", hazard="smoke",
                              kind=DetectionKind.HAZARD, severity=Severity.ORANGE,
                              firing=True, metric="smoke", value=4.2, level=1,
                              message="烟雾 4.2 %obs/m")
        async with db.transaction(), db.cursor() as cur:
            alert, _, _ = await upsert_live(cur, detection, time.time())
        return alert
    finally:
        await db.close()


@asynccontextmanager
async def _client(pg_dsn: str, schema: str, service: ConsoleService,
                  ) -> AsyncIterator[httpx.AsyncClient]:
    """A client logged in as a duty officer of every site."""
    db = await connect(pg_dsn, schema, autocommit=True)
    try:
        await add_user(db, "李值班", Role.DUTY_OFFICER)
    finally:
        await db.close()
    async with httpx.AsyncClient(trust_env=False, timeout=10, base_url=service.url) as client:
        await log_in(client, "李值班")
        yield client


async def test_published_update_reaches_open_stream_within_2s(pg_dsn: str,
                                                              db_schema: str) -> None:
    async with MemoryBus() as bus:
        service = ConsoleService(SETTINGS, bus, pg_dsn, schema=db_schema)
        async with running(service), _client(pg_dsn, db_schema, service) as client, client.stream(
                "GET", service.url + "/api/stream") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = SseReader(response)
            await events.until(":", 2.0)  # subscribed

            alert = Alert(id=77, site="s1", device_id="s-7", hazard="smoke",
                          kind=DetectionKind.HAZARD, severity=Severity.RED,
                          status=AlertStatus.ESCALATED, opened_at=1_764_124_800.0,
                          location=Location(building="7号楼", floor="3", room="301"),
                          last_value=9.5, message="<b>烟雾</b> 9.5")
            sent_at = time.monotonic()
            await bus.publish("alert-updates", [(str(alert.id), encode_alert(alert))])
            event = await events.until("alert", 2.0)
            assert time.monotonic() - sent_at < 2.0
            # Not in the database: no assignee, and no policy covers it.
            assert orjson.loads(event.data) == {**alert_view(alert), "assignment": None,
                                                "escalation": None}


async def test_acknowledgement_reaches_every_open_stream(pg_dsn: str, db_schema: str) -> None:
    alert = await _seed_alert(pg_dsn, db_schema)
    async with MemoryBus() as bus:
        service = ConsoleService(SETTINGS, bus, pg_dsn, schema=db_schema)
        async with running(service), _client(pg_dsn, db_schema, service) as client, \
                client.stream("GET", service.url + "/api/stream") as first, \
                client.stream("GET", service.url + "/api/stream") as second:
            readers = [SseReader(first), SseReader(second)]
            for reader in readers:
                await reader.until(":", 2.0)
            listed = (await client.get(service.url + "/api/alerts?status=live")).json()
            assert [a["id"] for a in listed] == [alert.id]

            acked = await client.post(f"{service.url}/api/alerts/{alert.id}/ack",
                                      json={"actor": "李值班"})
            assert acked.status_code == 200
            for reader in readers:
                event = await reader.until("alert", 2.0)
                shown = orjson.loads(event.data)
                assert (shown["id"], shown["status"]) == (alert.id, "acknowledged")
                assert shown == acked.json()


async def test_stream_sends_keep_alive_pings(pg_dsn: str, db_schema: str) -> None:
    async with MemoryBus() as bus:
        service = ConsoleService(SETTINGS, bus, pg_dsn, schema=db_schema, ping_s=0.2)
        async with running(service), _client(pg_dsn, db_schema, service) as client, client.stream(
                "GET", service.url + "/api/stream") as response:
            events = SseReader(response)
            await events.until(":", 2.0)
            ping = await events.until(":", 2.0)
            assert ping.comments[0].startswith("ping")


async def test_stop_ends_open_streams_promptly(pg_dsn: str, db_schema: str) -> None:
    async with MemoryBus() as bus:
        service = ConsoleService(SETTINGS, bus, pg_dsn, schema=db_schema)
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        async with asyncio.timeout(10):
            await service.ready.wait()
        async with _client(pg_dsn, db_schema, service) as client, client.stream("GET",
                                                      service.url + "/api/stream") as response:
            events = SseReader(response)
            await events.until(":", 2.0)
            started = time.monotonic()
            stop.set()
            async with asyncio.timeout(4):
                assert await events.next() is None  # the server ended the stream
                await task
            assert time.monotonic() - started < 4
    assert not service.ready.is_set()


async def test_busy_port_is_a_console_error(pg_dsn: str, db_schema: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = SETTINGS.model_copy(
            update={"console": ConsoleSettings(host="127.0.0.1", port=port)})
        async with MemoryBus() as bus:
            service = ConsoleService(settings, bus, pg_dsn, schema=db_schema)
            with pytest.raises(ConsoleError, match=str(port)):
                async with asyncio.timeout(10):
                    await service.run(asyncio.Event())
    assert not service.ready.is_set()


async def test_page_is_served_over_http(pg_dsn: str, db_schema: str) -> None:
    async with MemoryBus() as bus:
        service = ConsoleService(SETTINGS, bus, pg_dsn, schema=db_schema)
        async with running(service), _client(pg_dsn, db_schema, service) as client:
            page = await client.get(service.url + "/")
            health = await client.get(service.url + "/healthz")
    assert page.status_code == 200
    assert "守望" in page.text
    assert health.json() == {"status": "ok"}
