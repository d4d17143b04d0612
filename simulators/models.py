"""What the simulators work with: scenarios as data, simulated devices, outgoing messages.

A scenario is plain data (what changes, when, and what a detector should conclude), so a
test, a demo and a drill replay it exactly from the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass

from shouwang.catalog import DeviceType
from shouwang.models import Device, ReadingKind, Severity

__all__ = [
    "GroundTruth",
    "OutgoingMessage",
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


@dataclass(frozen=True, slots=True, kw_only=True)
class ScenarioEvent:
    """A discrete event (a name from ``shouwang.catalog.EVENTS``) ``after_s`` past onset."""

    event: str
    after_s: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    name: str
    device_type: DeviceType
    description: str
    # Ground truth: what a correct pipeline concludes, and how bad it gets at worst.
    expected_hazard: str
    expected_severity: Severity
    # Seconds from the scenario's start to the hazard's onset (a pre-roll, usually 0).
    onset_s: float = 0.0
    ramps: tuple[Ramp, ...] = ()
    events: tuple[ScenarioEvent, ...] = ()


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
