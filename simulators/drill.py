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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shouwang.models import Device
from shouwang.store import connect
from simulators.community import Community
from simulators.models import ScheduledScenario
from simulators.payloads import ONLINE
from simulators.publisher import MqttPublisher
from simulators.scenarios import SCENARIOS, ScenarioError
from simulators.scorecard import Scorecard, read_scorecard, save_scorecard, start_drill_row

__all__ = ["DrillPlan", "run_drill"]

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


async def run_drill(plan: DrillPlan, devices: Sequence[Device], *, dsn: str, schema: str,
                    mqtt_host: str, mqtt_port: int, topic_root: str = "shouwang/v1",
                    username: str | None = None, password: str | None = None,
                    stop: asyncio.Event | None = None,
                    clock: Callable[[], float] = time.time) -> Scorecard:
    """Inject, wait, score; the scorecard is stored in ``drills`` and returned."""
    stop = stop or asyncio.Event()
    started_at = clock()
    community = _scenario_community(plan, devices, topic_root, started_at)
    truths = community.ground_truth()
    conn = await connect(dsn, schema, autocommit=True)
    try:
        drill_id = await start_drill_row(conn, scenario=plan.scenario, site=plan.site,
                                         started_at=started_at, device_id=plan.device_id)
        log.info("drill %d started scenario=%s site=%s device=%s speed=%g expected=%s",
                 drill_id, plan.scenario, plan.site, plan.device_id, plan.speed,
                 [f"{t.device_id}/{t.hazard}" for t in truths])
        async with MqttPublisher(mqtt_host, mqtt_port, username=username,
                                 password=password) as publisher:
            try:
                await _play(community, publisher, plan, stop)
            finally:
                for device_id in sorted({t.device_id for t in truths
                                         if t.hazard == "offline"}):
                    topic = f"{topic_root}/{plan.site}/{device_id}/status"
                    await publisher.publish(topic, ONLINE, retain=True)
                await publisher.flush(30.0)

        async def card() -> Scorecard:
            return await read_scorecard(conn, drill_id=drill_id, scenario=plan.scenario,
                                        site=plan.site, device_id=plan.device_id,
                                        started_at=started_at, truths=truths)

        deadline = time.monotonic() + plan.wait_s
        scored = await card()
        while not stop.is_set() and time.monotonic() < deadline and not all(
                r.resolved_s is not None for r in scored.rows):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            scored = await card()
        await save_scorecard(conn, scored, clock())
        log.info("drill %d finished: %d expected, %d missed, %d unexpected", drill_id,
                 len(scored.rows), len(scored.missed), len(scored.unexpected))
        return scored
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
