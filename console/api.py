"""The duty officer's JSON API and live stream under ``/api``.

Reads go straight to the store; people's actions go through the lifecycle table
(``shouwang.store.alerts.transition``) and are then published on ``alert-updates`` so
every open console shows them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import orjson
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from console.context import ConsoleContext, context_of
from console.live import ALERT_UPDATES, TooManyViewers
from console.metrics import ALERT_ACTIONS, PUBLISH_FAILURES
from console.params import ActionBody, AlertQuery, BadInput, NotificationQuery, parse
from console.queries import list_devices, list_notifications
from console.views import (
    JSONResponse,
    alert_view,
    device_view,
    event_view,
    notification_view,
)
from shouwang.bus import BusError
from shouwang.codec import encode_alert
from shouwang.lifecycle import IllegalTransition
from shouwang.models import Alert, AlertStatus
from shouwang.store.alerts import UnknownAlert, get_alert, list_alerts, list_events, transition

__all__ = ["API_ROUTES"]

log = logging.getLogger(__name__)

_DB_TIMEOUT_S = 5.0        # waiting for a pooled connection before answering 503
_PUBLISH_TIMEOUT_S = 5.0
_MAX_BODY_BYTES = 16 * 1024
_SEND_TIMEOUT_S = 30.0    # a viewer that takes longer to accept one event is dropped
_RETRY_MS = 2000          # how soon a browser reconnects after losing the stream
_MAX_ID = 2**63 - 1        # alerts.id is a bigint
# Bodies a cross-site HTML form can send without a CORS preflight; the API speaks JSON only.
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")


def _query(request: Request, *names: str) -> dict[str, str | list[str]]:
    params = request.query_params
    found: dict[str, str | list[str]] = {}
    for name in names:
        values = params.getlist(name)
        if len(values) > 1 or (name == "status" and values):
            found[name] = values
        elif values:
            found[name] = values[0]
    return found


def _alert_id(request: Request) -> int:
    alert_id: int = request.path_params["alert_id"]
    if alert_id > _MAX_ID:  # beyond bigint: cannot exist
        raise HTTPException(404, f"no alert {alert_id}")
    return alert_id


async def _body(request: Request) -> ActionBody:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in _FORM_TYPES:
        raise HTTPException(415, "send a JSON body (Content-Type: application/json)")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > _MAX_BODY_BYTES:
            raise HTTPException(413, f"body larger than {_MAX_BODY_BYTES} bytes")
    if not raw.strip():
        return ActionBody()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise BadInput(f"body: not valid JSON ({err})") from err
    return parse(ActionBody, data)


async def alerts(request: Request) -> Response:
    context = context_of(request)
    query = parse(AlertQuery, _query(request, "status", "site", "limit"))
    async with context.pool.connection(timeout=_DB_TIMEOUT_S) as conn:
        found = await list_alerts(conn, statuses=query.status, site=query.site,
                                  limit=query.limit)
    return JSONResponse([alert_view(a) for a in found])


async def alert_detail(request: Request) -> Response:
    """One alert with its whole history (the audit trail)."""
    context = context_of(request)
    alert_id = _alert_id(request)
    async with context.pool.connection(timeout=_DB_TIMEOUT_S) as conn:
        try:
            alert = await get_alert(conn, alert_id)
        except UnknownAlert:
            raise HTTPException(404, f"no alert {alert_id}") from None
        events = await list_events(conn, alert_id)
    return JSONResponse({**alert_view(alert), "events": [event_view(e) for e in events]})


async def _announce(context: ConsoleContext, alert: Alert) -> None:
    try:
        await asyncio.wait_for(
            context.bus.publish(ALERT_UPDATES, [(str(alert.id), encode_alert(alert))]),
            _PUBLISH_TIMEOUT_S)
    except (BusError, TimeoutError) as err:
        # The change is saved; at least this console's viewers see it at once.
        PUBLISH_FAILURES.inc()
        log.error("alert_id=%d changed but not published on %s: %s", alert.id, ALERT_UPDATES,
                  err)
        context.feed.deliver(alert)


async def _act(request: Request, wanted: AlertStatus, action: str) -> Response:
    context = context_of(request)
    alert_id = _alert_id(request)
    body = await _body(request)
    try:
        async with context.pool.connection(timeout=_DB_TIMEOUT_S) as conn:
            alert = await transition(conn, alert_id, wanted, actor=body.actor,
                                     source="console", note=body.note, now=context.clock())
    except UnknownAlert:
        ALERT_ACTIONS.labels(action, "unknown").inc()
        raise HTTPException(404, f"no alert {alert_id}") from None
    except IllegalTransition as err:
        ALERT_ACTIONS.labels(action, "refused").inc()
        raise HTTPException(409, str(err)) from None
    ALERT_ACTIONS.labels(action, "done").inc()
    log.info("alert_id=%d %s by %s from the console", alert.id, wanted.value, body.actor)
    await _announce(context, alert)
    return JSONResponse(alert_view(alert))


async def acknowledge(request: Request) -> Response:
    return await _act(request, AlertStatus.ACKNOWLEDGED, "acknowledge")


async def resolve(request: Request) -> Response:
    return await _act(request, AlertStatus.RESOLVED, "resolve")


async def devices(request: Request) -> Response:
    context = context_of(request)
    async with context.pool.connection(timeout=_DB_TIMEOUT_S) as conn:
        states = await list_devices(
            conn, now=context.clock(),
            offline_after_intervals=context.settings.detectors.offline_after_intervals)
    return JSONResponse([device_view(s) for s in states])


async def notifications(request: Request) -> Response:
    context = context_of(request)
    query = parse(NotificationQuery, _query(request, "alert_id", "limit"))
    async with context.pool.connection(timeout=_DB_TIMEOUT_S) as conn:
        found = await list_notifications(conn, alert_id=query.alert_id, limit=query.limit)
    return JSONResponse([notification_view(n) for n in found])


async def stream(request: Request) -> Response:
    """Server-sent events: ``alert`` (the alert JSON) on every change, ``resync`` when the
    browser fell behind and must reload the list."""
    context = context_of(request)
    if context.feed.viewers >= context.feed.max_viewers:
        raise HTTPException(503, "too many live viewers")

    async def events() -> AsyncIterator[ServerSentEvent]:
        try:
            with context.feed.subscribe() as viewer:
                yield ServerSentEvent(comment="live", retry=_RETRY_MS)
                while (alert := await viewer.get()) is not None:
                    lost = viewer.take_lost()
                    if lost:
                        yield ServerSentEvent(event="resync", data=str(lost))
                    yield ServerSentEvent(event="alert",
                                          data=orjson.dumps(alert_view(alert)).decode())
        except TooManyViewers:
            return

    return EventSourceResponse(events(), ping=context.ping_s, send_timeout=_SEND_TIMEOUT_S,
                               headers={"Cache-Control": "no-store"})


API_ROUTES: list[BaseRoute] = [
    Route("/api/alerts", alerts, methods=["GET"]),
    Route("/api/alerts/{alert_id:int}", alert_detail, methods=["GET"]),
    Route("/api/alerts/{alert_id:int}/ack", acknowledge, methods=["POST"]),
    Route("/api/alerts/{alert_id:int}/resolve", resolve, methods=["POST"]),
    Route("/api/devices", devices, methods=["GET"]),
    Route("/api/notifications", notifications, methods=["GET"]),
    Route("/api/stream", stream, methods=["GET"]),
]
