"""Drills from the console: pick a scenario and a device, start it, watch it, read the report.

A drill started here runs exactly as ``shouwang drill`` does (``simulators.drill``): its
devices publish drill-marked messages to the configured MQTT broker, and the real ingest,
detectors and alerting handle them. This process only plays the scenario and scores it
afterwards; the timeline is read from the database as it fills. Admins and duty officers
may start drills; only admins may delete a drill's data (the scorecard stays).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from alerting.templates import hazard_wording
from console.auth import current_session, require_session
from console.body import json_body
from console.context import ConsoleContext, context_of
from console.params import BadInput, parse
from console.privacy import health_policy
from console.users import Role, User
from console.views import JSONResponse, iso_utc
from simulators.drill import DrillPlan, MqttTarget, carry_out, drill_devices, start_drill
from simulators.drill_purge import DrillNotFinished, UnknownDrill, purge_drill, retire
from simulators.drill_record import DrillRecord, TimelineEntry, get_drill, list_drills, timeline
from simulators.scenarios import SCENARIOS, ScenarioError
from simulators.scorecard import Scorecard

__all__ = ["DRILL_API_ROUTES", "DRILL_ROUTES", "DrillDesk", "stop_drills"]

log = logging.getLogger(__name__)

_DB_TIMEOUT_S = 5.0
_MAX_ID = 2**63 - 1
_STARTERS = frozenset({Role.ADMIN, Role.DUTY_OFFICER})
_PURGERS = frozenset({Role.ADMIN})
_PAGE = Path(__file__).resolve().parent / "static" / "drills.html"


class _Input(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DrillBody(_Input):
    """What to drill, where, and how fast (simulated seconds per wall second)."""

    scenario: str = Field(min_length=1, max_length=64)
    site: str = Field(min_length=1, max_length=64)
    device_id: str = Field(min_length=1, max_length=64)
    speed: float = Field(default=10.0, gt=0, le=1000)
    start_after_s: float = Field(default=30.0, ge=0, le=3600)
    run_s: float = Field(default=1800.0, gt=0, le=86_400)
    wait_s: float = Field(default=600.0, ge=0, le=7200)
    seed: int = Field(default=7, ge=0, le=2**31)


class DrillListQuery(_Input):
    limit: int = Field(default=50, ge=1, le=500)


class DrillDesk:
    """The drills this console process plays; each is a named task ended by ``close``."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._devices: dict[int, frozenset[str]] = {}

    def running(self, drill_id: int) -> bool:
        task = self._tasks.get(drill_id)
        return task is not None and not task.done()

    def busy(self, devices: frozenset[str]) -> bool:
        """True when a drill playing here uses any of ``devices``."""
        return any(self.running(i) and used & devices for i, used in self._devices.items())

    def run(self, drill_id: int, devices: frozenset[str],
            job: Coroutine[Any, Any, None]) -> None:  # Any: a coroutine's send/throw types
        task = asyncio.create_task(job, name=f"console.drill-{drill_id}")
        self._tasks[drill_id] = task
        self._devices[drill_id] = devices
        task.add_done_callback(self._finished)

    def close(self) -> None:
        """Ask every running drill to stop playing; each still stores its scorecard."""
        self.stop.set()

    @staticmethod
    def _finished(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s ended with an error: %s", task.get_name(), task.exception())


def _desk(request: Request) -> DrillDesk:
    state = request.app.state
    desk: DrillDesk | None = getattr(state, "drill_desk", None)
    if desk is None:
        desk = DrillDesk()
        state.drill_desk = desk
    return desk


def stop_drills(app: Starlette) -> None:
    """Called when the console shuts down: running drills stop playing and are scored."""
    desk: DrillDesk | None = getattr(app.state, "drill_desk", None)
    if desk is not None:
        desk.close()


# ---- views ------------------------------------------------------------------------------


def _hazard_name(hazard: str) -> list[str]:
    """[Chinese, English]: the hazard as every message names it (as ``alert_view`` does)."""
    return [hazard_wording(hazard, "zh").name, hazard_wording(hazard, "en").name]


def _entry_view(entry: TimelineEntry, onset: float) -> dict[str, Any]:  # Any: JSON
    return {"at": iso_utc(entry.at), "t_s": round(entry.at - onset, 3), "kind": entry.kind,
            "device_id": entry.device_id, "hazard": entry.hazard,
            "hazard_name": _hazard_name(entry.hazard), "alert_id": entry.alert_id,
            "severity": entry.severity, "channel": entry.channel, "receiver": entry.receiver,
            "actor": entry.actor, "detail": entry.detail}


def _scorecard_view(card: Scorecard) -> dict[str, Any]:  # Any: JSON
    """The stored scorecard, each row and unexpected alert with its hazard's name."""
    body = card.to_json()
    for item in (*body["rows"], *body["unexpected"]):
        item["hazard_name"] = _hazard_name(item["hazard"])
    return body


def _onset(drill: DrillRecord) -> float:
    return min((e.onset_ts for e in drill.expected), default=drill.started_at)


def _drill_view(drill: DrillRecord, desk: DrillDesk) -> dict[str, Any]:  # Any: JSON
    card = drill.scorecard
    return {
        "id": drill.id, "scenario": drill.scenario, "site": drill.site,
        "device_id": drill.device_id, "devices": list(drill.devices), "status": drill.status,
        "playing_here": desk.running(drill.id), "error": drill.error,
        "started_at": iso_utc(drill.started_at), "onset_at": iso_utc(_onset(drill)),
        "ends_at": iso_utc(drill.ends_at), "finished_at": iso_utc(drill.finished_at),
        "purged_at": iso_utc(drill.purged_at),
        "expected": [{"device_id": e.device_id, "hazard": e.hazard,
                      "hazard_name": _hazard_name(e.hazard), "severity": e.severity}
                     for e in drill.expected],
        "detected": None if card is None else sum(r.alert_id is not None for r in card.rows),
        "missed": None if card is None else [f"{r.device_id}/{r.hazard}" for r in card.missed],
    }


# ---- handlers ---------------------------------------------------------------------------


def _drill_id(request: Request) -> int:
    drill_id: int = request.path_params["drill_id"]
    if drill_id > _MAX_ID:
        raise HTTPException(404, f"no drill {drill_id}")
    return drill_id


async def _visible_drill(context: ConsoleContext, user: User, drill_id: int) -> DrillRecord:
    async with context.pool.connection(timeout=_DB_TIMEOUT_S) as conn:
        drill = await get_drill(conn, drill_id)
    if drill is None or not user.sees(drill.site):
        raise HTTPException(404, f"no drill {drill_id}")
    return drill


async def drills_page(request: Request) -> Response:
    if await current_session(request) is None:
        return RedirectResponse("/login", status_code=303)
    return FileResponse(_PAGE, media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-cache"})


async def scenarios(request: Request) -> Response:
    """The scenario library, each with the user's devices it can run on."""
    context = context_of(request)
    user = (await require_session(request)).user
    if request.query_params:
        raise BadInput("this endpoint takes no query parameters")
    devices = [d for d in context.settings.device_map().values() if user.sees(d.site)]
    found = []
    for scenario in SCENARIOS.values():
        fits = [d for d in devices
                if scenario.device_type is None or d.type is scenario.device_type]
        found.append({
            "name": scenario.name, "description": scenario.description,
            "device_type": None if scenario.device_type is None else scenario.device_type.value,
            "scope": scenario.scope,
            "expected": [{"hazard": e.hazard, "hazard_name": _hazard_name(e.hazard),
                          "severity": e.severity.label} for e in scenario.expectations],
            "devices": [{"id": d.id, "site": d.site, "name": d.name, "type": d.type.value,
                         "place": d.location.describe()} for d in fits],
        })
    return JSONResponse(found)


async def drills(request: Request) -> Response:
    """Drills on the user's sites, newest first (running ones included)."""
    context = context_of(request)
    user = (await require_session(request)).user
    query = parse(DrillListQuery, dict(request.query_params))
    async with context.pool.connection(timeout=_DB_TIMEOUT_S) as conn:
        found = await list_drills(conn, sites=user.site_filter, limit=query.limit)
    desk = _desk(request)
    return JSONResponse([_drill_view(d, desk) for d in found])


async def start(request: Request) -> Response:
    """Start a drill; it plays in the background, ``GET /api/drills/{id}`` follows it."""
    context = context_of(request)
    user = (await require_session(request)).user
    if user.role not in _STARTERS:
        raise HTTPException(403, f"role {user.role.value} may not start drills")
    body = await json_body(request, DrillBody)
    if not user.sees(body.site):
        raise HTTPException(404, f"no site {body.site}")
    settings = context.settings
    desk = _desk(request)
    plan = DrillPlan(scenario=body.scenario, site=body.site, device_id=body.device_id,
                     speed=body.speed, start_after_s=body.start_after_s, run_s=body.run_s,
                     wait_s=body.wait_s, seed=body.seed)
    registry = list(settings.device_map().values())
    try:
        if desk.busy(drill_devices(plan, registry)):
            raise HTTPException(409, "a drill is already playing on these devices")
        async with context.pool.connection(timeout=_DB_TIMEOUT_S) as conn:
            started = await start_drill(conn, plan, registry,
                                        topic_root=settings.mqtt.topic_root,
                                        clock=context.clock)
    except ScenarioError as err:
        raise BadInput(str(err)) from None

    async def play() -> None:
        card = await carry_out(started, context.pool.connection,
                               MqttTarget.from_settings(settings.mqtt), stop=desk.stop,
                               clock=context.clock, heartbeat_s=settings.drills.heartbeat_s)
        await retire(context.pool.connection, settings.drills,
                     finished_at=context.clock(), stop=desk.stop, clock=context.clock)
        log.info("drill %d scored from the console: %d missed", card.drill_id,
                 len(card.missed))

    desk.run(started.drill_id, frozenset(started.devices), play())
    log.info("drill %d started from the console by %s", started.drill_id, user.name)
    async with context.pool.connection(timeout=_DB_TIMEOUT_S) as conn:
        record = await get_drill(conn, started.drill_id)
    assert record is not None
    return JSONResponse(_drill_view(record, desk))


async def drill_detail(request: Request) -> Response:
    """One drill: its state, its timeline so far and, once finished, its scorecard."""
    context = context_of(request)
    user = (await require_session(request)).user
    drill = await _visible_drill(context, user, _drill_id(request))
    async with context.pool.connection(timeout=_DB_TIMEOUT_S) as conn:
        entries = health_policy(request).timeline(user, await timeline(conn, drill))
    onset = _onset(drill)
    card = drill.scorecard
    return JSONResponse({
        **_drill_view(drill, _desk(request)),
        "timeline": [_entry_view(e, onset) for e in entries],
        "scorecard": None if card is None else _scorecard_view(card),
    })


async def report(request: Request) -> Response:
    """The scorecard as Markdown (printable)."""
    context = context_of(request)
    user = (await require_session(request)).user
    drill = await _visible_drill(context, user, _drill_id(request))
    if drill.scorecard is None:
        raise HTTPException(409, f"drill {drill.id} has no scorecard yet ({drill.status})")
    # Plain text, so a browser shows it instead of downloading it; the text is Markdown.
    return Response(drill.scorecard.markdown(), media_type="text/plain; charset=utf-8",
                    headers={"Content-Disposition":
                             f'inline; filename="drill-{drill.id}.md"'})


async def purge(request: Request) -> Response:
    """Delete the drill's readings, alerts and their history and messages (admins only)."""
    context = context_of(request)
    user = (await require_session(request)).user
    if user.role not in _PURGERS:
        raise HTTPException(403, f"role {user.role.value} may not delete drill data")
    drill = await _visible_drill(context, user, _drill_id(request))
    try:
        async with context.pool.connection(timeout=_DB_TIMEOUT_S) as conn:
            counts = await purge_drill(conn, drill.id, now=context.clock())
    except UnknownDrill:
        raise HTTPException(404, f"no drill {drill.id}") from None
    except DrillNotFinished as err:
        raise HTTPException(409, str(err)) from None
    log.info("drill %d data deleted by %s from the console", drill.id, user.name)
    return JSONResponse(counts.to_json())


DRILL_API_ROUTES: list[BaseRoute] = [
    Route("/api/drills", drills, methods=["GET"]),
    Route("/api/drills", start, methods=["POST"]),
    Route("/api/drills/scenarios", scenarios, methods=["GET"]),
    Route("/api/drills/{drill_id:int}", drill_detail, methods=["GET"]),
    Route("/api/drills/{drill_id:int}/report.md", report, methods=["GET"]),
    Route("/api/drills/{drill_id:int}/purge", purge, methods=["POST"]),
]
DRILL_ROUTES: list[BaseRoute] = [Route("/drills", drills_page, methods=["GET"]),
                                 *DRILL_API_ROUTES]
