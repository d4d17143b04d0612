"""Running the console app in-process for a test: a settable clock, httpx over ASGI,
fresh logged-in clients, and an open alert for them to see."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from psycopg import AsyncConnection

from shouwang.models import Detection, DetectionKind, Severity
from shouwang.store.alerts import upsert_live
from tests.integration.console_auth import log_in

__all__ = ["Clock", "LogsIn", "asgi_client", "client_maker", "open_alert"]

BASE_URL = "http://console"


class Clock:
    """The console's clock (``create_app(clock=...)``): a test moves ``now`` by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def asgi_client(app: Any,  # Any: a Starlette app
                      base_url: str = BASE_URL) -> AsyncIterator[httpx.AsyncClient]:
    """One client for ``app``, with the app's lifespan (startup, shutdown) run around it."""
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=base_url) as client:
        yield client


@asynccontextmanager
async def client_maker(app: Any) -> AsyncIterator[Callable[[], httpx.AsyncClient]]:
    """Runs ``app``'s lifespan and yields a maker of clients, each with its own cookie jar
    (so its own session); every client made is closed before the app shuts down."""
    clients: list[httpx.AsyncClient] = []

    def client() -> httpx.AsyncClient:
        made = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)
        clients.append(made)
        return made

    async with app.router.lifespan_context(app):
        try:
            yield client
        finally:
            for made in clients:
                await made.aclose()


class LogsIn:
    """For a test stack holding a ``client`` maker: ``as_user`` logs a fresh client in."""

    client: Callable[[], httpx.AsyncClient]

    async def as_user(self, name: str) -> httpx.AsyncClient:
        client = self.client()
        await log_in(client, name)
        return client


async def open_alert(db: AsyncConnection[Any], device: str, site: str, hazard: str, *,
                     at: float, value: float) -> int:  # Any: tuple rows
    """Opens a red ``hazard`` alert on ``device`` at ``at``, as the detectors would; returns
    its id."""
    detection = Detection(ts=at, device_id=device, site=site, hazard=hazard,
                          kind=DetectionKind.HAZARD, severity=Severity.RED, firing=True,
                          metric="lel", value=value, level=2, message=hazard)
    async with db.transaction(), db.cursor() as cur:
        alert, _, _ = await upsert_live(cur, detection, at)
    return alert.id
