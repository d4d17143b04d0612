"""A drill: one library scenario injected into the running system, then scored.

The scenario's devices publish over MQTT as ordinary devices do, every telemetry and
event payload marked ``"drill": true`` (readings, detections and alerts carry the mark
end to end). Simulated time runs ``speed`` times faster than wall time. After the
scenario has played for ``run_s`` simulated seconds the drill waits, up to ``wait_s``, for
people to acknowledge and resolve its alerts (ending early once every expected alert is
resolved), then reads the database and stores the scorecard in ``drills``.

A building outage ends with a retained ``online`` for every device it took down: the
power is back, and the broker must not keep announcing them offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from config.settings import DrillSettings, MqttSettings
from shouwang.models import Device
from shouwang.store import connect
from simulators.community import Community
from simulators.drill_watch import HEARTBEAT_S, beat, keep_beating, player_name, sweep_orphans
from simulators.models import GroundTruth, ScheduledScenario
from simulators.payloads import ONLINE
from simulators.publisher import MqttPublisher
from simulators.scenarios import SCENARIOS, ScenarioError
from simulators.scorecard import (
    Scorecard,
    fail_drill,
    read_scorecard,
    save_scorecard,
    start_drill_row,
)

__all__ = ["Connector", "DrillPlan", "MqttTarget", "StartedDrill", "carry_out",
           "drill_devices", "held", "run_drill", "start_drill"]

# Any: tuple rows. Lends a connection for a moment: a pool's, or one held for the drill.
Connector = Callable[[], AbstractAsyncContextManager[AsyncConnection[Any]]]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class DrillPlan:
    scenario: str
    site: str
    device_id: str
    speed: float = 10.0
    start_after_s: float = 30.0  # simulated seconds of ordinary readings before onset
    run_s: float = 1800.0  # simulated seconds the scenario plays after onset
    wait_s: float = 600.0  # wall seconds to wait afterwards for acknowledgement/resolution
    seed: int = 7


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttTarget:
    """The broker a drill publishes to, as ingest's own settings describe it."""

    host: str
    port: int
    topic_root: str = "shouwang/v1"
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_settings(cls, mqtt: MqttSettings, host: str | None = None,
                      port: int | None = None) -> MqttTarget:
        """Unset ``mqtt.host`` means the embedded broker, which listens on loopback."""
        return cls(host=host or mqtt.host or "127.0.0.1", port=port or mqtt.port,
                   topic_root=mqtt.topic_root, username=mqtt.username,
                   password=mqtt.password.get_secret_value() if mqtt.password else None)

    def publisher(self) -> MqttPublisher:
        return MqttPublisher(self.host, self.port, username=self.username,
                             password=self.password)


@dataclass(frozen=True, slots=True, kw_only=True)
class StartedDrill:
    """A drill with its row in ``drills``, ready to play."""

    drill_id: int
    plan: DrillPlan
    started_at: float
    community: Community
    truths: tuple[GroundTruth, ...]
    devices: tuple[str, ...]  # every device that publishes drill data


def _scenario_community(plan: DrillPlan, devices: Sequence[Device], topic_root: str,
                        epoch0: float) -> Community:
    scenario = SCENARIOS.get(plan.scenario)
    if scenario is None:
        raise ScenarioError(f"unknown scenario {plan.scenario!r} "
                            f"(known: {', '.join(sorted(SCENARIOS))})")
    target = next((d for d in devices if d.id == plan.device_id), None)
    if target is None or target.site != plan.site:
        raise ScenarioError(f"device {plan.device_id!r} is not registered at site "
                            f"{plan.site!r}; a drill uses a registered device")
    if scenario.device_type is not None and target.type is not scenario.device_type:
        raise ScenarioError(f"scenario {plan.scenario!r} needs a {scenario.device_type.value} "
                            f"device, not {plan.device_id!r} ({target.type.value})")
    if scenario.scope == "device":
        members = [target]
    elif scenario.scope == "building":
        members = [d for d in devices if d.site == plan.site
                   and d.location.building == target.location.building]
    else:
        members = [d for d in devices if d.site == plan.site]
    run = ScheduledScenario(scenario=scenario, device_id=target.id, start_s=plan.start_after_s)
    return Community(members, seed=plan.seed, epoch0=epoch0, speed=plan.speed, runs=[run],
                     drill=True, topic_root=topic_root)


def drill_devices(plan: DrillPlan, devices: Sequence[Device]) -> frozenset[str]:
    """Every device the plan would publish drill data for (``ScenarioError`` if it cannot
    run: unknown scenario, a device not the site's, or of the wrong type)."""
    community = _scenario_community(plan, devices, "-", 0.0)
    return frozenset(d.device.id for d in community.devices)


async def start_drill(conn: AsyncConnection[Any], plan: DrillPlan,  # Any: tuple rows
                      devices: Sequence[Device], *, topic_root: str,
                      clock: Callable[[], float] = time.time) -> StartedDrill:
    """Check the plan against the registry and record the drill as running.

    Raises ``ScenarioError`` (nothing recorded) for an unknown scenario, a device that is
    not the site's, or one of the wrong type.
    """
    started_at = clock()
    community = _scenario_community(plan, devices, topic_root, started_at)
    truths = tuple(community.ground_truth())
    members = tuple(sorted(d.device.id for d in community.devices))
    drill_id = await start_drill_row(
        conn, scenario=plan.scenario, site=plan.site, started_at=started_at,
        device_id=plan.device_id, devices=members, truths=truths,
        ends_at=community.wall_ts(plan.start_after_s + plan.run_s))
    await beat(conn, drill_id, now=started_at, player=player_name())
    log.info("drill %d started scenario=%s site=%s device=%s speed=%g expected=%s",
             drill_id, plan.scenario, plan.site, plan.device_id, plan.speed,
             [f"{t.device_id}/{t.hazard}" for t in truths])
    return StartedDrill(drill_id=drill_id, plan=plan, started_at=started_at,
                        community=community, truths=truths, devices=members)


async def carry_out(drill: StartedDrill, connection: Connector, target: MqttTarget, *,
                    stop: asyncio.Event | None = None,
                    clock: Callable[[], float] = time.time,
                    heartbeat_s: float = HEARTBEAT_S) -> Scorecard:
    """Play a started drill over MQTT, wait for people to answer, store the scorecard.

    A drill that cannot play (the broker unreachable, the database gone) is recorded as
    failed, with the reason, and the error raised again. While it plays and is scored, its
    heartbeat says its player is alive (``simulators.drill_watch``); a drill ended
    meanwhile by someone else (abandoned) stops, and what was stored for it stays.
    """
    stop = stop or asyncio.Event()
    halt = asyncio.Event()  # stop, or the drill was ended elsewhere
    beating = asyncio.create_task(
        keep_beating(drill.drill_id, connection, stop=stop, halt=halt, clock=clock,
                     every_s=heartbeat_s),
        name=f"drill-{drill.drill_id}.heartbeat")
    try:
        return await _carry_out(drill, connection, target, halt=halt, beating=beating,
                                clock=clock)
    finally:
        beating.cancel()
        await asyncio.wait({beating})
        if not beating.cancelled() and beating.exception() is not None:
            log.error("drill %d: its heartbeat stopped: %s", drill.drill_id,
                      beating.exception())


async def _carry_out(drill: StartedDrill, connection: Connector, target: MqttTarget, *,
                     halt: asyncio.Event, beating: asyncio.Task[bool],
                     clock: Callable[[], float]) -> Scorecard:
    plan = drill.plan

    def ended_elsewhere() -> bool:
        return (beating.done() and not beating.cancelled()
                and beating.exception() is None and beating.result() is False)

    try:
        async with target.publisher() as publisher:
            try:
                await _play(drill.community, publisher, plan, halt)
            finally:
                for device_id in sorted({t.device_id for t in drill.truths
                                         if t.hazard == "offline"}):
                    topic = f"{target.topic_root}/{plan.site}/{device_id}/status"
                    await publisher.publish(topic, ONLINE, retain=True)
                await publisher.flush(30.0)

        async def card() -> Scorecard:
            async with connection() as conn:
                return await read_scorecard(conn, drill_id=drill.drill_id,
                                            scenario=plan.scenario, site=plan.site,
                                            device_id=plan.device_id,
                                            started_at=drill.started_at, truths=drill.truths)

        deadline = time.monotonic() + plan.wait_s
        scored = await card()
        while not halt.is_set() and time.monotonic() < deadline and not all(
                r.resolved_s is not None for r in scored.rows):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(halt.wait(), 1.0)
            scored = await card()
        if ended_elsewhere():
            log.info("drill %d scored, not stored: it was ended elsewhere", drill.drill_id)
            return scored
        async with connection() as conn:
            await save_scorecard(conn, scored, clock())
    except Exception as err:
        log.error("drill %d failed: %s", drill.drill_id, err)
        if not ended_elsewhere():  # else what was stored for it stays
            with contextlib.suppress(Exception):
                async with connection() as conn:
                    await fail_drill(conn, drill.drill_id, clock(),
                                     str(err) or type(err).__name__)
        raise
    log.info("drill %d finished: %d expected, %d missed, %d unexpected", drill.drill_id,
             len(scored.rows), len(scored.missed), len(scored.unexpected))
    return scored


def held(conn: AsyncConnection[Any]) -> Connector:  # Any: tuple rows
    """A connector lending the same open connection every time."""

    @contextlib.asynccontextmanager
    async def lend() -> AsyncIterator[AsyncConnection[Any]]:  # Any: tuple rows
        yield conn

    return lend


async def run_drill(plan: DrillPlan, devices: Sequence[Device], *, dsn: str, schema: str,
                    mqtt_host: str, mqtt_port: int, topic_root: str = "shouwang/v1",
                    username: str | None = None, password: str | None = None,
                    stop: asyncio.Event | None = None,
                    clock: Callable[[], float] = time.time,
                    timing: DrillSettings | None = None) -> Scorecard:
    """Inject, wait, score; the scorecard is stored in ``drills`` and returned.

    ``timing``: the heartbeat and the age at which a silent drill is abandoned (defaults
    when None)."""
    timing = timing or DrillSettings()
    target = MqttTarget(host=mqtt_host, port=mqtt_port, topic_root=topic_root,
                        username=username, password=password)
    conn = await connect(dsn, schema, autocommit=True)
    try:
        # No console may be running to do it.
        await sweep_orphans(conn, now=clock(), stale_after_s=timing.stale_after_s)
        drill = await start_drill(conn, plan, devices, topic_root=topic_root, clock=clock)
        return await carry_out(drill, held(conn), target, stop=stop, clock=clock,
                               heartbeat_s=timing.heartbeat_s)
    finally:
        await conn.close()


async def _play(community: Community, publisher: MqttPublisher, plan: DrillPlan,
                stop: asyncio.Event) -> None:
    """Publish the community in (sped-up) real time until the scenario has played out."""
    end_s = plan.start_after_s + plan.run_s
    started = time.monotonic()
    while not stop.is_set():
        now_s = min(end_s, (time.monotonic() - started) * plan.speed)
        for message in community.due(now_s):
            await publisher.publish(message.topic, message.payload, retain=message.retain)
        if now_s >= end_s:
            return
        wait_s = max(0.0, min(community.next_due_s, end_s) - now_s) / plan.speed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), min(wait_s, 0.5))
