"""The console's ASGI app: JSON API, live stream, the duty officer's page, health and metrics.

Everything the handlers share (connection pool, live feed) is opened in the lifespan and
closed there. Every error leaves as JSON ``{"error": "..."}``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alerting.web import public_routes
from config.settings import Settings
from console.api import API_ROUTES
from console.audit import AUDIT_PAGE_ROUTES, AUDIT_ROUTES
from console.auth import current_session
from console.board import Policies, board_notes
from console.context import ConsoleContext, context_of
from console.drills import DRILL_ROUTES, stop_drills
from console.first_admin import bootstrap_admin
from console.live import AlertFeed
from console.login import LOGIN_ROUTES
from console.login_limit import LoginLimiter
from console.models import BoardNotes
from console.openapi import openapi
from console.params import BadInput
from console.views import JSONResponse, error_response
from shouwang.bus import Bus
from shouwang.models import Alert
from simulators.drill_watch import watch_orphans

__all__ = ["STATIC_DIR", "close_streams", "create_app"]

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
_FEED_JOIN_TIMEOUT_S = 10.0
_HEALTH_TIMEOUT_S = 2.0
_NOTES_TIMEOUT_S = 2.0  # live updates wait this long at most for a pooled connection
_POOL_MAX_WAITING = 200  # requests queued for a connection before answering 503 at once
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Scripts, styles and data only from this origin: a device name holding markup stays text.
_SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
     b"frame-ancestors 'none'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class _SecurityHeaders:
    """Adds the security headers to every HTTP response (pure ASGI: streams stay streams)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_SECURITY_HEADERS]
            await send(message)

        await self._app(scope, receive, send_with_headers)


class _StaticFiles(StaticFiles):
    """Static files with an explicit UTF-8 type (the host's mime table may not have one)."""

    def file_response(self, full_path: str | os.PathLike[str], stat_result: os.stat_result,
                      scope: Scope, status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        content_type = _CONTENT_TYPES.get(Path(full_path).suffix)
        if content_type is not None:
            response.headers["content-type"] = content_type
        return response


def _html(name: str) -> Response:
    return FileResponse(STATIC_DIR / name, media_type=_CONTENT_TYPES[".html"],
                        headers={"Cache-Control": "no-cache"})


async def _page(request: Request) -> Response:
    if await current_session(request) is None:
        return RedirectResponse("/login", status_code=303)
    return _html("index.html")


async def _station_page(request: Request) -> Response:
    if await current_session(request) is None:
        return RedirectResponse("/login?next=station", status_code=303)
    return _html("station.html")


async def _device_page(request: Request) -> Response:
    if await current_session(request) is None:
        return RedirectResponse("/login", status_code=303)
    return _html("device.html")


async def _login_page(request: Request) -> Response:
    return _html("login.html")


async def _healthz(request: Request) -> Response:
    context = context_of(request)
    try:
        async with context.pool.connection(timeout=_HEALTH_TIMEOUT_S) as conn:
            await conn.execute("SELECT 1")
    except psycopg.Error as err:
        log.warning("health check: database unavailable: %s", err)
        return JSONResponse({"status": "unavailable", "error": "database unavailable"},
                            status_code=503)
    return JSONResponse({"status": "ok"})


async def _metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, exc.detail, exc.headers)


async def _bad_input(request: Request, exc: Exception) -> Response:
    return error_response(422, str(exc))


async def _database_error(request: Request, exc: Exception) -> Response:
    log.warning("%s %s: database unavailable: %s", request.method, request.url.path, exc)
    return error_response(503, "database unavailable")


async def _internal_error(request: Request, exc: Exception) -> Response:
    # The server logs the traceback; the browser gets no internals.
    return error_response(500, "internal error")


async def _wait_joined(feed: AlertFeed, feed_task: asyncio.Task[None]) -> None:
    ready = asyncio.create_task(feed.ready.wait(), name="console.feed-ready")
    try:
        done, _ = await asyncio.wait({ready, feed_task}, timeout=_FEED_JOIN_TIMEOUT_S,
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        ready.cancel()
    if feed_task in done:
        await feed_task  # it can only have ended by crashing: let that surface
    elif ready not in done:
        log.warning("the live alert feed has not joined the bus yet; it keeps trying")


def create_app(settings: Settings, dsn: str, bus: Bus, *, schema: str = "public",
               clock: Callable[[], float] = time.time, ping_s: float = 15.0) -> Starlette:
    """The console app; ``bus`` must already be entered, ``schema`` already migrated."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool: AsyncConnectionPool = AsyncConnectionPool(
            dsn, open=False, name="console", min_size=1,
            max_size=settings.database.pool_size, max_waiting=_POOL_MAX_WAITING,
            check=AsyncConnectionPool.check_connection,
            kwargs={"autocommit": True, "options": f"-c search_path={schema}",
                    "application_name": "shouwang-console", "connect_timeout": 5},
        )
        policies = Policies(settings.alerting.policies)

        async def annotate(alerts: list[Alert]) -> Mapping[int, BoardNotes]:
            async with pool.connection(timeout=_NOTES_TIMEOUT_S) as conn:
                return await board_notes(conn, alerts, policies, clock())

        feed = AlertFeed(bus, annotate=annotate)
        stop = asyncio.Event()
        # Not waiting: the console comes up without the database and /healthz says so.
        await pool.open(wait=False)
        feed_task = asyncio.create_task(feed.run(stop), name="console.alert-feed")
        # Drills whose player died (this console's before a restart, or another's).
        orphans = asyncio.create_task(
            watch_orphans(pool.connection, stop=stop, clock=clock,
                          every_s=settings.drills.sweep_s,
                          stale_after_s=settings.drills.stale_after_s),
            name="console.drill-orphans")
        first_admin = asyncio.create_task(bootstrap_admin(pool, stop, settings),
                                          name="console.first-admin")
        try:
            await _wait_joined(feed, feed_task)
            app.state.console = ConsoleContext(
                settings=settings, pool=pool, bus=bus, feed=feed, clock=clock, ping_s=ping_s,
                login_limiter=LoginLimiter(
                    attempts=settings.console.login_attempts,
                    name_attempts=settings.console.login_attempts_per_name,
                    window_s=settings.console.login_window_s),
                policies=policies)
            yield
        finally:
            feed.close()
            stop.set()
            feed_task.cancel()  # it may be waiting up to a poll interval for the bus
            first_admin.cancel()
            orphans.cancel()
            try:
                await asyncio.wait({feed_task, first_admin, orphans})
                crash = None if feed_task.cancelled() else feed_task.exception()
                if crash is not None:
                    raise crash
            finally:
                await pool.close()

    return Starlette(
        routes=[
            Route("/", _page, methods=["GET"]),
            Route("/login", _login_page, methods=["GET"]),
            Route("/station", _station_page, methods=["GET"]),
            Route("/device", _device_page, methods=["GET"]),
            *LOGIN_ROUTES,
            Route("/api/openapi.json", openapi, methods=["GET"]),
            Route("/healthz", _healthz, methods=["GET"]),
            Route("/metrics", _metrics, methods=["GET"]),
            *API_ROUTES,
            *DRILL_ROUTES,
            *AUDIT_ROUTES, *AUDIT_PAGE_ROUTES,  # admins: the audit trail
            *public_routes(context_of),  # SMS ack links and the CAP feed: no login
            Mount("/static", app=_StaticFiles(directory=STATIC_DIR), name="static"),
        ],
        middleware=[Middleware(_SecurityHeaders)],
        exception_handlers={
            HTTPException: _http_error,
            BadInput: _bad_input,
            psycopg.OperationalError: _database_error,
            Exception: _internal_error,
        },
        lifespan=lifespan,
    )


def close_streams(app: Starlette) -> None:
    """End every live stream, so a server shutdown need not wait for browsers to leave."""
    context: ConsoleContext | None = getattr(app.state, "console", None)
    if context is not None:
        context.feed.close()
    stop_drills(app)
