"""Simulated devices for demos, drills, tests and load: seeded signals, scenarios, MQTT.

``SimulatorService`` publishes a configured community over MQTT following the device
contract; ``Community`` is the same fleet without I/O (deterministic from a seed), and
``publish_stream`` pushes prepared messages for tests and benches.
"""

from simulators.community import Community
from simulators.devices import DeviceSignal, simulated_device, stable_seed
from simulators.faults import (
    ClockSkew,
    Drift,
    Dropout,
    Duplicated,
    Fault,
    FaultInjector,
    FaultRun,
    LostMessages,
    Malformed,
    Reordered,
    StuckValue,
)
from simulators.models import (
    Expectation,
    GroundTruth,
    Hold,
    OutgoingMessage,
    Pulse,
    Ramp,
    Scenario,
    ScenarioEvent,
    ScheduledScenario,
    SimulatedDevice,
)
from simulators.payloads import Channel, encode_event, encode_telemetry, topic_for
from simulators.publisher import MqttPublisher, PublisherError, publish_stream
from simulators.scenarios import (
    GAS_LEAK,
    NUISANCE_DAY,
    SCENARIOS,
    SOS,
    ScenarioError,
    apply_ramps,
    apply_scenarios,
)
from simulators.service import SimulatorService

__all__ = [
    "GAS_LEAK",
    "NUISANCE_DAY",
    "SCENARIOS",
    "SOS",
    "Channel",
    "ClockSkew",
    "Community",
    "DeviceSignal",
    "Drift",
    "Dropout",
    "Duplicated",
    "Expectation",
    "Fault",
    "FaultInjector",
    "FaultRun",
    "GroundTruth",
    "Hold",
    "LostMessages",
    "Malformed",
    "MqttPublisher",
    "OutgoingMessage",
    "PublisherError",
    "Pulse",
    "Ramp",
    "Reordered",
    "Scenario",
    "ScenarioError",
    "ScenarioEvent",
    "ScheduledScenario",
    "SimulatedDevice",
    "SimulatorService",
    "StuckValue",
    "apply_ramps",
    "apply_scenarios",
    "encode_event",
    "encode_telemetry",
    "publish_stream",
    "simulated_device",
    "stable_seed",
    "topic_for",
]
