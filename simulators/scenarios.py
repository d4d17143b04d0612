"""The scenario library (data) and how a running scenario bends a device's values.

A scenario never draws random numbers: it moves the device's ordinary signal toward a
target, so the same seed gives the same drill, and the ground truth (hazard, onset) is
known exactly for scoring.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from shouwang.catalog import EVENTS, METRICS_BY_KEY, DeviceType, metrics_for
from shouwang.models import Severity
from simulators.models import Ramp, Scenario, ScenarioEvent, ScheduledScenario

__all__ = [
    "GAS_LEAK",
    "SCENARIOS",
    "SOS",
    "ScenarioError",
    "apply_ramps",
    "check_scenario",
]


class ScenarioError(ValueError):
    """A scenario that names a metric, event or device type it cannot apply to."""


GAS_LEAK = Scenario(
    name="gas_leak",
    device_type=DeviceType.GAS,
    description=("A kitchen pipe leaks: combustible gas climbs toward 60 %LEL, crossing "
                 "level 1 (25 %LEL) after about 30 s and level 2 (50 %LEL) after about "
                 "110 s at speed 1."),
    expected_hazard="gas",
    expected_severity=Severity.RED,
    # tau 60 s: 25/60 of the way at 0.54 tau (32 s), 50/60 at 1.79 tau (108 s).
    ramps=(Ramp(metric="lel", target=60.0, time_constant_s=60.0),),
)

SOS = Scenario(
    name="sos",
    device_type=DeviceType.WEARABLE,
    description="An elderly resident presses the SOS button on the wearable.",
    expected_hazard="sos",
    expected_severity=Severity.RED,
    events=(ScenarioEvent(event="sos"),),
)

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (GAS_LEAK, SOS)}


def check_scenario(scenario: Scenario) -> None:
    """Raise ``ScenarioError`` unless every ramp and event fits the scenario's device type."""
    keys = {m.key for m in metrics_for(scenario.device_type)}
    for ramp in scenario.ramps:
        if ramp.metric not in keys:
            raise ScenarioError(f"scenario {scenario.name!r}: {scenario.device_type.value} "
                                f"devices have no metric {ramp.metric!r}")
        low, high = METRICS_BY_KEY[ramp.metric].valid_range
        if not low <= ramp.target <= high or ramp.time_constant_s <= 0:
            raise ScenarioError(f"scenario {scenario.name!r}: ramp on {ramp.metric!r} needs a "
                                f"target in [{low}, {high}] and a positive time constant")
    for event in scenario.events:
        if event.event not in EVENTS:
            raise ScenarioError(f"scenario {scenario.name!r}: unknown event {event.event!r}")


def apply_ramps(values: Mapping[str, float], runs: tuple[ScheduledScenario, ...],
                t_s: float) -> dict[str, float]:
    """The device's values at ``t_s`` with every started ramp applied.

    Before onset nothing changes; after it the value moves from the ordinary signal toward
    the target, ``1 - exp(-elapsed / tau)`` of the way, and stays in the valid range.

    >>> run = ScheduledScenario(scenario=GAS_LEAK, device_id="g1", start_s=10.0)
    >>> apply_ramps({"lel": 1.0}, (run,), t_s=5.0)
    {'lel': 1.0}
    >>> round(apply_ramps({"lel": 1.0}, (run,), t_s=10.0 + 600.0)["lel"], 1)
    60.0
    """
    out = dict(values)
    for run in runs:
        elapsed = t_s - run.onset_s
        if elapsed < 0.0:
            continue
        for ramp in run.scenario.ramps:
            if ramp.metric not in out:
                continue
            base = out[ramp.metric]
            share = 1.0 - math.exp(-elapsed / ramp.time_constant_s)
            low, high = METRICS_BY_KEY[ramp.metric].valid_range
            moved = base + (ramp.target - base) * share
            out[ramp.metric] = round(min(high, max(low, moved)), 2)
    return out
