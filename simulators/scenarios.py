"""The scenario library (data) and how a running scenario bends a device's values.

A scenario never draws random numbers: it moves the device's ordinary signal toward a
target, adds a passing bump or holds a value, so the same seed gives the same drill, and
the ground truth (hazard, place, onset) is known exactly for scoring.

Every number below was checked against the default thresholds (config/settings.py
``DEFAULT_THRESHOLDS``) and the event and offline detectors: a hazard scenario crosses
the level its expected severity needs, and the nuisance day stays below every level 1
(tests/unit/test_simulators_scenarios.py runs each one through the detector engine).
Times are simulated seconds.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence

from shouwang.catalog import EVENTS, METRICS, METRICS_BY_KEY, DeviceType, metrics_for
from shouwang.models import Severity
from simulators.models import (
    Expectation,
    Hold,
    Pulse,
    Ramp,
    Scenario,
    ScenarioEvent,
    ScheduledScenario,
)

__all__ = [
    "BUILDING_POWER_OUTAGE",
    "ELECTRICAL_OVERHEAT",
    "FALL_NO_MOVEMENT",
    "FAST_GAS_LEAK",
    "GARAGE_FLOOD",
    "GAS_LEAK",
    "KITCHEN_FIRE",
    "NIGHT_HEART_RATE",
    "NUISANCE_DAY",
    "SCENARIOS",
    "SLOW_GAS_LEAK",
    "SOS",
    "ScenarioError",
    "apply_ramps",
    "apply_scenarios",
    "check_scenario",
]

_HOUR = 3600.0


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

SLOW_GAS_LEAK = Scenario(
    name="slow_gas_leak",
    device_type=DeviceType.GAS,
    description=("A loose hose seeps: gas creeps toward 40 %LEL over an hour, crossing "
                 "level 1 (25 %LEL) after about 15 min and never reaching level 2."),
    expected_hazard="gas",
    expected_severity=Severity.ORANGE,
    # tau 900 s: 25/40 of the way at 0.98 tau (~880 s); the plateau 40 < 50.
    ramps=(Ramp(metric="lel", target=40.0, time_constant_s=900.0),),
)

FAST_GAS_LEAK = Scenario(
    name="fast_gas_leak",
    device_type=DeviceType.GAS,
    description=("A hose bursts: gas reaches level 2 (50 %LEL) within about 25 s, on "
                 "its way to 90 %LEL."),
    expected_hazard="gas",
    expected_severity=Severity.RED,
    # tau 30 s: 50/90 of the way at 0.81 tau (24 s).
    ramps=(Ramp(metric="lel", target=90.0, time_constant_s=30.0),),
)

KITCHEN_FIRE = Scenario(
    name="kitchen_fire",
    device_type=DeviceType.SMOKE,
    description=("A pan fire: smoke passes 8 %obs/m in about 20 s and the detector's own "
                 "alarm sounds at 30 s; the ceiling heats from 60 s on and passes 65 °C "
                 "about 3 min after onset."),
    expected_hazard="smoke",
    expected_severity=Severity.RED,
    also_expected=(Expectation(hazard="heat", severity=Severity.RED),),
    ramps=(Ramp(metric="smoke", target=30.0, time_constant_s=60.0),
           # From ~22 °C: (65-22)/(90-22) = 0.63 of the way at 1.0 tau, i.e. 60 + 120 s.
           Ramp(metric="temperature", target=90.0, time_constant_s=120.0, after_s=60.0)),
    holds=(Hold(metric="alarm", value=1.0, after_s=30.0),),
)

ELECTRICAL_OVERHEAT = Scenario(
    name="electrical_overheat",
    device_type=DeviceType.ELECTRICAL,
    description=("A loose terminal in a distribution box: the cable heats toward 95 °C "
                 "(past 70 °C after about 10 min) while damaged insulation leaks "
                 "toward 450 mA of residual current (past 300 mA after about 10 min)."),
    expected_hazard="overheat",
    expected_severity=Severity.RED,
    also_expected=(Expectation(hazard="electrical_leak", severity=Severity.ORANGE),),
    ramps=(Ramp(metric="temperature", target=95.0, time_constant_s=600.0),
           # 450 < 500 mA: the leak stays at level 1 (orange).
           Ramp(metric="residual_current", target=450.0, time_constant_s=600.0)),
)

GARAGE_FLOOD = Scenario(
    name="garage_flood",
    device_type=DeviceType.WATER,
    description=("A rainstorm floods the underground garage: water rises toward 0.9 m, "
                 "past 0.3 m after about 7 min and past 0.5 m after about 16 min."),
    expected_hazard="flood",
    expected_severity=Severity.RED,
    ramps=(Ramp(metric="level", target=0.9, time_constant_s=1200.0),),
)

FALL_NO_MOVEMENT = Scenario(
    name="fall_no_movement",
    device_type=DeviceType.WEARABLE,
    description=("An elderly resident falls and does not get up: the wearable reports a "
                 "fall, then the step count stops and the heart rate stays flat."),
    expected_hazard="fall",
    expected_severity=Severity.ORANGE,
    events=(ScenarioEvent(event="fall"),),
    holds=(Hold(metric="steps"), Hold(metric="heart_rate")),
)

SOS = Scenario(
    name="sos",
    device_type=DeviceType.WEARABLE,
    description="An elderly resident presses the SOS button on the wearable.",
    expected_hazard="sos",
    expected_severity=Severity.RED,
    events=(ScenarioEvent(event="sos"),),
)

NIGHT_HEART_RATE = Scenario(
    name="night_heart_rate",
    device_type=DeviceType.WEARABLE,
    description=("At night a sleeping resident's heart starts racing toward 165 bpm: past "
                 "120 bpm in about 2 min and 150 bpm in about 4 min, blood oxygen dipping."),
    expected_hazard="heart_rate_high",
    expected_severity=Severity.ORANGE,
    # From ~62 bpm: (150-62)/(165-62) = 0.85 of the way at 1.9 tau (~230 s).
    ramps=(Ramp(metric="heart_rate", target=165.0, time_constant_s=120.0),),
    pulses=(Pulse(metric="spo2", height=-4.0, after_s=60.0, duration_s=1200.0),),
    holds=(Hold(metric="steps"),),
)

BUILDING_POWER_OUTAGE = Scenario(
    name="building_power_outage",
    device_type=None,
    description=("The mains fail in one building: every device in it drops its connection "
                 "at once (a retained 'offline' status, as its Last Will) and goes silent."),
    expected_hazard="offline",
    expected_severity=Severity.BLUE,
    scope="building",
    goes_offline=True,
)

_COOKING = ((7 * _HOUR, 30 * 60.0, 30.0), (11.5 * _HOUR, 40 * 60.0, 30.0),
            (18 * _HOUR, 45 * 60.0, 32.0))
_SHOWERS = ((7.5 * _HOUR, 20 * 60.0), (21 * _HOUR, 25 * 60.0))

NUISANCE_DAY = Scenario(
    name="nuisance_day",
    device_type=None,
    description=("An ordinary day across the site (onset = midnight): cooking puts up to "
                 "32 ppm CO and 3 %LEL on kitchen sensors three times, shower steam fogs "
                 "smoke detectors to 2 %obs/m and warms them by 10 °C, an afternoon rain "
                 "lifts water levels by 0.15 m, and a resident sleeps till 06:30 with a "
                 "resting pulse down to 48 bpm. Nothing should alarm."),
    # Nothing is expected: every bump stays under its level 1 (CO < 50 ppm, smoke
    # < 3 %obs/m, heat < 54 °C, water < 0.3 m, pulse > 45 bpm).
    expected_hazard="",
    expected_severity=Severity.BLUE,
    scope="site",
    pulses=(
        *(Pulse(metric="co", height=h, after_s=at, duration_s=d) for at, d, h in _COOKING),
        *(Pulse(metric="lel", height=3.0, after_s=at, duration_s=d) for at, d, _ in _COOKING),
        *(Pulse(metric="smoke", height=2.0, after_s=at, duration_s=d) for at, d in _SHOWERS),
        *(Pulse(metric="temperature", height=10.0, after_s=at, duration_s=d,
                device_type=DeviceType.SMOKE) for at, d in _SHOWERS),
        Pulse(metric="level", height=0.15, after_s=14 * _HOUR, duration_s=3 * _HOUR),
        Pulse(metric="heart_rate", height=-12.0, after_s=0.0, duration_s=6.5 * _HOUR),
    ),
    holds=(Hold(metric="steps", after_s=0.0, until_s=6.5 * _HOUR),),
)

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    GAS_LEAK, SLOW_GAS_LEAK, FAST_GAS_LEAK, KITCHEN_FIRE, ELECTRICAL_OVERHEAT, GARAGE_FLOOD,
    FALL_NO_MOVEMENT, SOS, NIGHT_HEART_RATE, BUILDING_POWER_OUTAGE, NUISANCE_DAY)}

_ANY_TYPE_KEYS = frozenset(m.key for m in METRICS)


def check_scenario(scenario: Scenario) -> None:
    """Raise ``ScenarioError`` unless every effect and event fits the scenario's device type."""
    if scenario.device_type is None:
        keys = _ANY_TYPE_KEYS
        if scenario.events:
            raise ScenarioError(f"scenario {scenario.name!r}: events need a device type")
    else:
        keys = frozenset(m.key for m in metrics_for(scenario.device_type))
    effects: list[tuple[str, float | None]] = [(r.metric, r.target) for r in scenario.ramps]
    effects += [(p.metric, None) for p in scenario.pulses]
    effects += [(h.metric, h.value) for h in scenario.holds]
    for metric, value in effects:
        if metric not in keys:
            kind = scenario.device_type.value if scenario.device_type else "any"
            raise ScenarioError(f"scenario {scenario.name!r}: {kind} devices have no "
                                f"metric {metric!r}")
        low, high = METRICS_BY_KEY[metric].valid_range
        if value is not None and not low <= value <= high:
            raise ScenarioError(f"scenario {scenario.name!r}: {metric!r} value {value} is "
                                f"outside [{low}, {high}]")
    for ramp in scenario.ramps:
        if ramp.time_constant_s <= 0:
            raise ScenarioError(f"scenario {scenario.name!r}: ramp on {ramp.metric!r} needs a "
                                f"target in range and a positive time constant")
    for pulse in scenario.pulses:
        if pulse.duration_s <= 0:
            raise ScenarioError(f"scenario {scenario.name!r}: pulse on {pulse.metric!r} "
                                "needs a positive duration")
    for event in scenario.events:
        if event.event not in EVENTS:
            raise ScenarioError(f"scenario {scenario.name!r}: unknown event {event.event!r}")


def _wander(ramp: Ramp, t_s: float) -> float:
    """A sensor at a high reading still wanders, about ±1 % of it: without this a ramp
    converges on its exact target and the device reads as stuck. Deterministic in t_s."""
    unit = zlib.crc32(f"{ramp.metric}:{t_s:.3f}".encode()) / 0xFFFFFFFF
    return (2.0 * unit - 1.0) * 0.01 * abs(ramp.target)


def apply_scenarios(values: Mapping[str, float], runs: Sequence[ScheduledScenario],
                    t_s: float, *, device_type: DeviceType | None = None,
                    previous: Mapping[str, float] | None = None,
                    frozen: dict[tuple[int, str], float] | None = None) -> dict[str, float]:
    """The device's values at ``t_s`` with every started ramp, pulse and hold applied.

    ``previous`` is the last set of values the device sent (what a ``Hold`` without a
    value freezes); ``frozen`` remembers, across calls, each hold's frozen value.

    >>> run = ScheduledScenario(scenario=FALL_NO_MOVEMENT, device_id="w1", start_s=100.0)
    >>> frozen = {}
    >>> apply_scenarios({"steps": 500}, [run], 90.0, previous={"steps": 480}, frozen=frozen)
    {'steps': 500}
    >>> [apply_scenarios({"steps": s}, [run], t, previous={"steps": 500}, frozen=frozen)
    ...  for s, t in ((520, 110.0), (560, 130.0))]
    [{'steps': 500}, {'steps': 500}]
    """
    out = dict(values)
    touched: set[str] = set()
    for number, run in enumerate(runs):
        elapsed = t_s - run.onset_s
        if elapsed < 0.0:
            continue
        scenario = run.scenario
        for ramp in scenario.ramps:
            since = elapsed - ramp.after_s
            if ramp.metric in out and since >= 0.0:
                base = out[ramp.metric]
                share = 1.0 - math.exp(-since / ramp.time_constant_s)
                out[ramp.metric] = (base + (ramp.target - base) * share
                                    + _wander(ramp, t_s) * share)
                touched.add(ramp.metric)
        for pulse in scenario.pulses:
            into = elapsed - pulse.after_s
            if (pulse.metric in out and 0.0 <= into <= pulse.duration_s
                    and pulse.device_type in (None, device_type)):
                out[pulse.metric] += pulse.height * math.sin(math.pi * into / pulse.duration_s)
                touched.add(pulse.metric)
        for index, hold in enumerate(scenario.holds):
            since = elapsed - hold.after_s
            if hold.metric not in out or since < 0.0 or (
                    hold.until_s is not None and elapsed >= hold.until_s):
                continue
            key = (number * 1000 + index, hold.metric)
            value = hold.value
            if value is None:
                memory = frozen if frozen is not None else {}
                if key not in memory:
                    before = previous.get(hold.metric) if previous else None
                    memory[key] = out[hold.metric] if before is None else before
                value = memory[key]
            out[hold.metric] = value
            touched.add(hold.metric)
    for metric in touched:
        low, high = METRICS_BY_KEY[metric].valid_range
        whole = isinstance(values[metric], int)
        value = min(high, max(low, out[metric]))
        out[metric] = round(value) if whole else round(value, 2)
    return out


def apply_ramps(values: Mapping[str, float], runs: tuple[ScheduledScenario, ...],
                t_s: float) -> dict[str, float]:
    """The device's values at ``t_s`` with every started ramp applied.

    Before onset nothing changes; after it the value moves from the ordinary signal toward
    the target, ``1 - exp(-elapsed / tau)`` of the way (wandering about ±1 % of it, as a
    sensor does), and stays in the valid range.

    >>> run = ScheduledScenario(scenario=GAS_LEAK, device_id="g1", start_s=10.0)
    >>> apply_ramps({"lel": 1.0}, (run,), t_s=5.0)
    {'lel': 1.0}
    >>> plateau = [apply_ramps({"lel": 1.0}, (run,), t_s=610.0 + 30 * k)["lel"]
    ...            for k in range(30)]
    >>> 59.4 <= min(plateau) < max(plateau) <= 60.6, len(set(plateau)) > 20
    (True, True)
    """
    return apply_scenarios(values, runs, t_s)
