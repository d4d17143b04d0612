"""What the simulators work with: scenarios as data, simulated devices, outgoing messages.

A scenario is plain data (what changes, when, and what a detector should conclude), so a
test, a demo and a drill replay it exactly from the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shouwang.catalog import DeviceType
from shouwang.models import Device, ReadingKind, Severity

__all__ = [
    "Expectation",
    "GroundTruth",
    "Hold",
    "OutgoingMessage",
    "Pulse",
    "Ramp",
    "Scenario",
    "ScenarioEvent",
    "ScheduledScenario",
    "SimulatedDevice",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Ramp:
    """After onset, ``metric`` approaches ``target`` exponentially with ``time_constant_s``.

    In simulated seconds: at speed 10 the same ramp takes a tenth of the wall time.
    """

    metric: str
    target: float
    time_constant_s: float
    after_s: float = 0.0  # starts this long after onset (heat follows smoke in a fire)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pulse:
    """A passing bump: ``height`` added to ``metric`` as a half sine over ``duration_s``.

    Starts ``after_s`` past onset; a negative height is a dip (a sleeping resident's pulse).
    """

    metric: str
    height: float
    after_s: float
    duration_s: float
    device_type: DeviceType | None = None  # only devices of this type (steam is not wiring)


@dataclass(frozen=True, slots=True, kw_only=True)
class Hold:
    """From ``after_s`` past onset, ``metric`` stays at ``value``; ``None`` freezes the last
    value sent before (a wearable on a motionless wrist: steps stop counting)."""

    metric: str
    value: float | None = None
    after_s: float = 0.0
    until_s: float | None = None  # released this long after onset; None = for good


@dataclass(frozen=True, slots=True, kw_only=True)
class Expectation:
    """One hazard a correct pipeline raises, at its worst severity."""

    hazard: str
    severity: Severity


@dataclass(frozen=True, slots=True, kw_only=True)
class ScenarioEvent:
    """A discrete event (a name from ``shouwang.catalog.EVENTS``) ``after_s`` past onset."""

    event: str
    after_s: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """What changes, where, and what a correct pipeline concludes.

    The scenario is bound to one device; ``scope`` widens its effects (ramps, pulses,
    holds, going offline) to every device of that device's building or site that has the
    metric. Events only ever come from the bound device. The expectations hold for every
    affected device; an empty ``expected_hazard`` means nothing should alarm.
    """

    name: str
    device_type: DeviceType | None  # None: any device can carry it (a building's outage)
    description: str
    # Ground truth: what a correct pipeline concludes, and how bad it gets at worst.
    expected_hazard: str
    expected_severity: Severity
    also_expected: tuple[Expectation, ...] = ()
    # Seconds from the scenario's start to the hazard's onset (a pre-roll, usually 0).
    onset_s: float = 0.0
    scope: Literal["device", "building", "site"] = "device"
    ramps: tuple[Ramp, ...] = ()
    pulses: tuple[Pulse, ...] = ()
    holds: tuple[Hold, ...] = ()
    events: tuple[ScenarioEvent, ...] = ()
    # At onset: a retained "offline" status, then silence (mains power gone).
    goes_offline: bool = False

    @property
    def expectations(self) -> tuple[Expectation, ...]:
        if not self.expected_hazard:
            return self.also_expected
        first = Expectation(hazard=self.expected_hazard, severity=self.expected_severity)
        return (first, *self.also_expected)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduledScenario:
    """A scenario bound to one device, starting ``start_s`` simulated seconds after start."""

    scenario: Scenario
    device_id: str
    start_s: float

    @property
    def onset_s(self) -> float:
        return self.start_s + self.scenario.onset_s


@dataclass(frozen=True, slots=True, kw_only=True)
class GroundTruth:
    """What should be detected, where, and from when (epoch seconds): the drill's answer key."""

    scenario: str
    device_id: str
    site: str
    hazard: str
    severity: Severity
    onset_ts: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatedDevice:
    """A registered device plus the seeded facts of its simulation."""

    device: Device
    first_report_s: float  # simulated seconds after start of the first report (spreads load)
    first_seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OutgoingMessage:
    """One MQTT message ready to publish, with what it carries for the counters."""

    topic: str
    payload: bytes
    device_id: str
    kind: ReadingKind
    readings: int  # readings ingest will make of it (values + event); 0 for a status
    retain: bool = False
    t_s: float = 0.0  # simulated seconds at which it was produced (faults key on it)
