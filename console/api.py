"""The duty officer's JSON API and live stream under ``/api``.

Reads go straight to the store; people's actions go through the lifecycle table
(``shouwang.store.alerts.transition``) and are then published on ``alert-updates`` so
every open console shows them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from psycopg import AsyncConnection
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from console.assign import NotAssignable, assign, assignees
from console.auth import Action, require, require_session, roles_allowed, session_token
from console.board import board_notes
from console.body import json_body
from console.client import client_address
from console.context import ConsoleContext, context_of
from console.device_detail import (
    device_alerts,
    metric_choices,
    reading_buckets,
    threshold_lines,
)
from console.live import ALERT_UPDATES, TooManyViewers
from console.live_session import SessionWatch
from console.metrics import ALERT_ACTIONS, PUBLISH_FAILURES
from console.models import BoardNotes, DeviceState
from console.params import (
    ActionBody,
    AlertQuery,
    AssignBody,
    BadInput,
    DeviceQuery,
    NotificationQuery,
    ReadingsQuery,
    parse,
)
from console.privacy import health_policy
from console.queries import list_devices, list_notifications, list_sites
from console.users import User, token_hash
from console.views import (
    JSONResponse,
    alert_view,
    board_view,
    device_view,
    event_view,
    iso_utc,
    notification_view,
    plan_view,
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
_SEND_TIMEOUT_S = 30.0    # a viewer that takes longer to accept one event is dropped
_RETRY_MS = 2000          # how soon a browser reconnects after losing the stream
_MAX_ID = 2**63 - 1        # alerts.id is a bigint


def _query(request: Request, *names: str,
           many: tuple[str, ...] = ()) -> dict[str, str | list[str]]:
    """The named query parameters (``many``: always as a list); any other name is refused."""
    params = request.query_params
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise BadInput(f"unknown query parameter(s): {', '.join(unknown)} "
                       f"(known: {', '.join(names) or 'none'})")
    found: dict[str, str | list[str]] = {}
    for name in names:
        values = params.getlist(name)
        if len(values) > 1 or (name in many and values):
            found[name] = values
        elif values:
            found[name] = values[0]
    return found


def _alert_id(request: Request) -> int:
    alert_id: int = request.path_params["alert_id"]
    if alert_id > _MAX_ID:  # beyond bigint: cannot exist
        raise HTTPException(404, f"no alert {alert_id}")
    return alert_id


async def _visible_alert(conn: AsyncConnection[Any], user: User,  # Any: tuple rows
                         alert_id: int) -> Alert:
    """The alert, or 404 when it does not exist or is another site's (same answer: no
    hint that another site has alerts)."""
    try:
        alert = await get_alert(conn, alert_id)
    except UnknownAlert:
        raise HTTPException(404, f"no alert {alert_id}") from None
    if not user.sees(alert.site):
        raise HTTPException(404, f"no alert {alert_id}")
    return alert


def _board_view(request: Request, user: User, alert: Alert,
                notes: BoardNotes | None) -> dict[str, Any]:  # Any: JSON
    """The alert on the board as ``user`` may see it (health details, people's notes)."""
    policy = health_policy(request)
    return board_view(policy.alert(user, alert), notes,
                      note_hidden=policy.hides_notes(user, alert))


async def alerts(request: Request) -> Response:
    context = context_of(request)
    user = (await require_session(request)).user
    query = parse(AlertQuery, _query(request, "status", "site", "limit", many=("status",)))
    if query.site is not None and not user.sees(query.site):
        return JSONResponse([])
    sites: list[str | None] = [query.site]
    if query.site is None and user.site_filter is not None:
        sites = list(user.site_filter)
    found: list[Alert] = []
    async with context.pool.connection(timeout=_DB_TIMEOUT_S) as conn:
        for site in sites:
            found += await list_alerts(conn, statuses=query.status, site=site,
                                       limit=query.limit)
        if len(sites) > 1:  # same order as one query would give
            found.sort(key=lambda a: (-int(a.severity), -a.opened_at))
            found = found[:query.limit]
        notes = await board_notes(conn, found, context.policies, context.clock())
    return JSONResponse([_board_view(request, user, a, notes.get(a.id)) for a in found])


async def alert_detail(request: Request) -> Response:
    """One alert with its whole history (the audit trail)."""
    context = context_of(request)
    user = (await require_session(request)).user
    alert_id = _alert_id(request)
    async with context.pool.connection(timeout=_DB_TIMEOUT_S) as conn:
        alert = await _visible_alert(conn, user, alert_id)
        events = await list_events(conn, alert_id)
        notes = await board_notes(conn, [alert], context.policies, context.clock())
    policy = health_policy(request)
    return JSONResponse({**_board_view(request, user, alert, notes.get(alert.id)),
                         "events": [event_view(e, note_hidden=policy.hides_note(user, alert, e))
                                    for e in events]})


async def _announce(context: ConsoleContext, alert: Alert, notes: BoardNotes | None) -> None:
    try:
        await asyncio.wait_for(
            context.bus.publish(ALERT_UPDATES, [(str(alert.id), encode_alert(alert))]),
            _PUBLISH_TIMEOUT_S)
    except (BusError, TimeoutError) as err:
        # The change is saved; at least this console's viewers see it at once.
        PUBLISH_FAILURES.inc()
        log.error("alert_id=%d changed but not published on %s: %s", alert.id, ALERT_UPDATES,
                  err)
        context.feed.deliver(alert, notes)


def _source(request: Request) -> str:
    """"From where" in the audit trail: the console, and the client's address."""
    return f"console {client_address(request)}"


async def _act(request: Request, wanted: AlertStatus, action: Action) -> Response:
    context = context_of(request)
    user = (await require_session(request)).user
    require(user, action)
    alert_id = _alert_id(request)
    body = await json_body(request, ActionBody)
    try:
        async with context.pool.connection(timeout=_DB_TIMEOUT_S) as conn:
            await _visible_alert(conn, user, alert_id)
            alert = await transition(conn, alert_id, wanted, actor=user.name,
                                     source=_source(request), note=body.note,
                                     now=context.clock())
            notes = (await board_notes(conn, [alert], context.policies,
                                       context.clock())).get(alert.id)
    except UnknownAlert:
        ALERT_ACTIONS.labels(action.value, "unknown").inc()
        raise HTTPException(404, f"no alert {alert_id}") from None
    except IllegalTransition as err:
        ALERT_ACTIONS.labels(action.value, "refused").inc()
        raise HTTPException(409, str(err)) from None
    ALERT_ACTIONS.labels(action.value, "done").inc()
    log.info("alert_id=%d %s by %s from the console", alert.id, wanted.value, user.name)
    await _announce(context, alert, notes)
    return JSONResponse(_board_view(request, user, alert, notes))


async def acknowledge(request: Request) -> Response:
    return await _act(request, AlertStatus.ACKNOWLEDGED, Action.ACKNOWLEDGE)


async def resolve(request: Request) -> Response:
    return await _act(request, AlertStatus.RESOLVED, Action.RESOLVE)


async def alert_assignees(request: Request) -> Response:
    """Who the alert can be assigned to: users who may act on its site, then the people
    of the alerting groups."""
    context = context_of(request)
    user = (await require_session(request)).user
    alert_id = _alert_id(request)
    async with context.pool.connection(timeout=_DB_TIMEOUT_S) as conn:
        alert = await _visible_alert(conn, user, alert_id)
        found = await assignees(conn, alert.site, roles_allowed(Action.ACKNOWLEDGE),
                                context.settings.alerting.groups)
    return JSONResponse([{"name": a.name, "kind": a.kind, "detail": a.detail} for a in found])


async def assign_alert(request: Request) -> Response:
    """Assign a live alert to a person, with a note; its status does not change."""
    context = context_of(request)
    user = (await require_session(request)).user
    require(user, Action.ASSIGN)
    alert_id = _alert_id(request)
    body = await json_body(request, AssignBody)
    try:
        async with context.pool.connection(timeout=_DB_TIMEOUT_S) as conn:
            alert = await _visible_alert(conn, user, alert_id)
            known = await assignees(conn, alert.site, roles_allowed(Action.ACKNOWLEDGE),
                                    context.settings.alerting.groups)
            if body.assignee not in {a.name for a in known}:
                raise BadInput(f"assignee: {body.assignee!r} is neither a user who may act "
                               f"on site {alert.site} nor a person in the alerting groups")
            alert = await assign(conn, alert_id, assignee=body.assignee, by=user.name,
                                 note=body.note, source=_source(request), now=context.clock())
            notes = (await board_notes(conn, [alert], context.policies,
                                       context.clock())).get(alert.id)
    except UnknownAlert:
        ALERT_ACTIONS.labels(Action.ASSIGN.value, "unknown").inc()
        raise HTTPException(404, f"no alert {alert_id}") from None
    except NotAssignable as err:
        ALERT_ACTIONS.labels(Action.ASSIGN.value, "refused").inc()
        raise HTTPException(409, str(err)) from None
    ALERT_ACTIONS.labels(Action.ASSIGN.value, "done").inc()
    log.info("alert_id=%d assigned to %s by %s from the console", alert.id, body.assignee,
             user.name)
    await _announce(context, alert, notes)
    return JSONResponse(_board_view(request, user, alert, notes))


def _wanted(state: DeviceState, query: DeviceQuery, now: float) -> bool:
    device = state.device
    if query.type is not None and device.type is not query.type:
        return False
    if query.status is not None and state.status is not query.status:
        return False
    if query.site is not None and device.site != query.site:
        return False
    if query.battery_below is not None and (state.battery is None
                                            or state.battery >= query.battery_below):
        return False
    return query.silent_s is None or state.last_seen is None or (
        now - state.last_seen >= query.silent_s)


async def devices(request: Request) -> Response:
    """``?type=gas&status=offline&site=s1&battery_below=20&silent_s=3600`` (all optional)."""
    context = context_of(request)
    user = (await require_session(request)).user
    query = parse(DeviceQuery, _query(request, "type", "status", "site", "battery_below",
                                      "silent_s"))
    now = context.clock()
    async with context.pool.connection(timeout=_DB_TIMEOUT_S) as conn:
        states = await list_devices(
            conn, now=now,
            offline_after_intervals=context.settings.detectors.offline_after_intervals)
    return JSONResponse([device_view(s) for s in states
                         if user.sees(s.device.site) and _wanted(s, query, now)])


async def _visible_device(request: Request, user: User) -> DeviceState:
    context = context_of(request)
    device_id: str = request.path_params["device_id"]
    async with context.pool.connection(timeout=_DB_TIMEOUT_S) as conn:
        states = await list_devices(
            conn, now=context.clock(),
            offline_after_intervals=context.settings.detectors.offline_after_intervals)
    for state in states:
        if state.device.id == device_id and user.sees(state.device.site):
            return state
    raise HTTPException(404, f"no device {device_id}")


async def device_detail(request: Request) -> Response:
    """A device with its metrics, the threshold lines its detectors use, and its alerts."""
    context = context_of(request)
    user = (await require_session(request)).user
    state = await _visible_device(request, user)
    async with context.pool.connection(timeout=_DB_TIMEOUT_S) as conn:
        found = await device_alerts(conn, state.device.id)
    lines = threshold_lines(state.device, context.settings.detectors.thresholds)
    return JSONResponse({
        **device_view(state),
        "metrics": health_policy(request).metric_choices(user, state.device,
                                                        metric_choices(state.device)),
        "thresholds": [{"metric": t.metric, "hazard": t.hazard, "value": t.value,
                        "severity": t.severity, "direction": t.direction} for t in lines],
        "alerts": [alert_view(health_policy(request).alert(user, a)) for a in found],
    })


async def device_readings(request: Request) -> Response:
    """Readings of one metric in time buckets: ``?metric=lel&hours=24&buckets=120``."""
    context = context_of(request)
    user = (await require_session(request)).user
    query = parse(ReadingsQuery, _query(request, "metric", "hours", "buckets"))
    state = await _visible_device(request, user)
    health_policy(request).require_series(user, state.device, query.metric)
    end = context.clock()
    start = end - query.hours * 3600
    bucket_s = query.hours * 3600 / query.buckets
    async with context.pool.connection(timeout=_DB_TIMEOUT_S) as conn:
        buckets = await reading_buckets(conn, state.device.id, query.metric, start=start,
                                        end=end, bucket_s=bucket_s)
    return JSONResponse({
        "device_id": state.device.id, "metric": query.metric, "start": iso_utc(start),
        "end": iso_utc(end), "bucket_s": bucket_s,
        "buckets": [{"start": iso_utc(b.start), "min": b.low, "mean": b.mean, "max": b.high,
                     "count": b.count} for b in buckets],
    })


async def notifications(request: Request) -> Response:
    context = context_of(request)
    user = (await require_session(request)).user
    query = parse(NotificationQuery, _query(request, "alert_id", "limit"))
    async with context.pool.connection(timeout=_DB_TIMEOUT_S) as conn:
        found = await list_notifications(conn, alert_id=query.alert_id, limit=query.limit,
                                         sites=user.site_filter)
        found = await health_policy(request).notifications(conn, user, found)
    return JSONResponse([notification_view(n) for n in found])


async def sites(request: Request) -> Response:
    """The user's sites, each with its configured plan (null: the board draws one from
    the devices' buildings and floors)."""
    context = context_of(request)
    user = (await require_session(request)).user
    async with context.pool.connection(timeout=_DB_TIMEOUT_S) as conn:
        found = await list_sites(conn, user.site_filter)
    plans = {s.id: s.plan for s in context.settings.sites}
    return JSONResponse([{"id": s.id, "name": s.name, "address": s.address,
                          "plan": plan_view(plans.get(s.id))} for s in found])


async def stream(request: Request) -> Response:
    """Server-sent events: ``alert`` (the alert JSON) on every change, ``resync`` when the
    browser fell behind and must reload the list, and ``ended`` just before the server
    closes the stream because the session is gone (logged out, password changed, expired;
    re-checked at every keep-alive ping): the browser must not reconnect but log in."""
    context = context_of(request)
    session = await require_session(request)
    token = session_token(request)
    assert token is not None  # there is a session
    if context.feed.viewers >= context.feed.max_viewers:
        raise HTTPException(503, "too many live viewers")

    async def events() -> AsyncIterator[ServerSentEvent]:
        try:
            with context.feed.subscribe(token_hash(token)) as viewer:
                watch = SessionWatch(context, token, session, viewer)
                watching = asyncio.create_task(watch.run(), name="console.stream-session")
                try:
                    yield ServerSentEvent(comment="live", retry=_RETRY_MS)
                    while (alert := await viewer.get()) is not None:
                        lost = viewer.take_lost()
                        if lost:
                            yield ServerSentEvent(event="resync", data=str(lost))
                        user = watch.user
                        if not user.sees(alert.site):
                            continue
                        view = _board_view(request, user, alert, context.feed.notes(alert))
                        yield ServerSentEvent(event="alert", data=orjson.dumps(view).decode())
                    if viewer.session_ended:
                        yield ServerSentEvent(event="ended", data="session")
                finally:
                    watching.cancel()
        except TooManyViewers:
            return

    return EventSourceResponse(events(), ping=context.ping_s, send_timeout=_SEND_TIMEOUT_S,
                               headers={"Cache-Control": "no-store"})


API_ROUTES: list[BaseRoute] = [
    Route("/api/alerts", alerts, methods=["GET"]),
    Route("/api/alerts/{alert_id:int}", alert_detail, methods=["GET"]),
    Route("/api/alerts/{alert_id:int}/ack", acknowledge, methods=["POST"]),
    Route("/api/alerts/{alert_id:int}/resolve", resolve, methods=["POST"]),
    Route("/api/alerts/{alert_id:int}/assign", assign_alert, methods=["POST"]),
    Route("/api/alerts/{alert_id:int}/assignees", alert_assignees, methods=["GET"]),
    Route("/api/devices", devices, methods=["GET"]),
    Route("/api/devices/{device_id}", device_detail, methods=["GET"]),
    Route("/api/devices/{device_id}/readings", device_readings, methods=["GET"]),
    Route("/api/notifications", notifications, methods=["GET"]),
    Route("/api/sites", sites, methods=["GET"]),
    Route("/api/stream", stream, methods=["GET"]),
]
