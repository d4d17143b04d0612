"""The scenario library against the real decoder and detector engine, without services."""

from __future__ import annotations

import itertools
import time

import orjson
import pytest

from config.settings import DetectorSettings
from detectors.engine import DetectorEngine
from ingest.decoder import Decoder
from ingest.models import RawMessage
from shouwang.catalog import DeviceType
from shouwang.models import Detection, DetectionKind, Device, Location, Reading, Severity
from simulators import (
    SCENARIOS,
    ClockSkew,
    Community,
    Drift,
    Dropout,
    Duplicated,
    FaultInjector,
    FaultRun,
    LostMessages,
    Malformed,
    OutgoingMessage,
    Reordered,
    ScheduledScenario,
    StuckValue,
)
from simulators.scenarios import BUILDING_POWER_OUTAGE, FALL_NO_MOVEMENT, check_scenario
from simulators.testbed import hazard_testbed, nuisance_testbed

SITE = "testbed"
DAY = 86_400.0
CST = 8 * 3600.0  # the simulated devices' local time is UTC+8


# What the threshold, event and offline detectors call their findings.
_PRIMARY = frozenset({r.hazard for r in DetectorSettings().thresholds}
                     | {"sos", "fall", "siren", "offline"})


def _yesterday_midnight() -> float:
    """Epoch of local midnight a day or more ago: recent device clocks, an aligned day."""
    return (time.time() + CST) // DAY * DAY - CST - DAY


def _decode(devices: list[Device], messages: list[OutgoingMessage]
            ) -> tuple[list[Reading], list[str]]:
    decoder = Decoder({d.id: d for d in devices})
    readings: list[Reading] = []
    rejects: list[str] = []
    now = time.time()
    for m in messages:
        result = decoder.decode(RawMessage(topic=m.topic, payload=m.payload, received_at=now))
        if result.reject is not None:
            rejects.append(result.reject.reason)
        readings.extend(result.readings)
    return readings, rejects


def _detect(devices: list[Device], readings: list[Reading]) -> list[Detection]:
    engine = DetectorEngine(DetectorSettings(), {d.id: d for d in devices}, clock=time.time)
    return engine.process(readings)


def _hazard_run(until_s: float = 2400.0, epoch0: float | None = None
                ) -> tuple[Community, list[Device], list[OutgoingMessage]]:
    devices, runs = hazard_testbed(SITE)
    # Device clocks are recent, as live devices' are (old ones look like clock faults).
    start = time.time() - until_s if epoch0 is None else epoch0
    community = Community(devices, seed=11, epoch0=start, runs=runs)
    return community, devices, community.due(until_s)


def test_every_hazard_scenario_is_detected_at_its_device_at_its_severity() -> None:
    community, devices, messages = _hazard_run()
    readings, rejects = _decode(devices, messages)
    assert rejects == []
    detections = _detect(devices, readings)

    worst: dict[tuple[str, str], Severity] = {}
    for d in detections:
        # Hazards, and the offline finding the outage expects (other health and anomaly
        # findings are other detectors' business).
        if d.firing and (d.kind is DetectionKind.HAZARD or d.hazard == "offline"):
            key = (d.device_id, d.hazard)
            worst[key] = max(worst.get(key, Severity.BLUE), d.severity)
    expected = {(g.device_id, g.hazard): g.severity for g in community.ground_truth()}
    # Every scenario but the nuisance day has a ground truth, the outage one per device.
    assert {g.scenario for g in community.ground_truth()} == set(SCENARIOS) - {"nuisance_day"}
    assert sum(g.hazard == "offline" for g in community.ground_truth()) == 3
    # Nothing missed, each at its worst level. Early warnings (forecasts, rates of rise)
    # on a scenario's own device are welcome; on any other device they are unexpected.
    assert {key: worst.get(key) for key in expected} == expected
    scenario_devices = {device for device, _ in expected}
    assert [key for key in worst if key[0] not in scenario_devices] == []
    assert {key for key in worst if key[1] in _PRIMARY} == set(expected)


def test_onsets_come_before_detections_and_after_quiet() -> None:
    community, devices, messages = _hazard_run()
    readings, _ = _decode(devices, messages)
    first_firing: dict[tuple[str, str], float] = {}
    for d in _detect(devices, readings):
        if d.firing:
            first_firing.setdefault((d.device_id, d.hazard), d.reading_ts)
    for truth in community.ground_truth():
        if truth.hazard == "offline":
            continue  # a status carries no device time: ingest stamps it on receipt
        detected_at = first_firing[(truth.device_id, truth.hazard)]
        # Never before onset, and within twenty minutes of it.
        assert truth.onset_ts - 0.001 <= detected_at < truth.onset_ts + 1200.0, truth


def test_the_nuisance_day_stays_below_every_level_one() -> None:
    devices, runs = nuisance_testbed(SITE)
    # Midnight on the devices' clocks too, so the resident sleeps when the pulse dips.
    community = Community(devices, seed=5, epoch0=_yesterday_midnight(), runs=runs)
    messages = community.due(DAY)
    readings, rejects = _decode(devices, messages)
    assert rejects == []
    assert community.ground_truth() == []
    assert [d for d in _detect(devices, readings) if d.kind is DetectionKind.HAZARD] == []

    # The nuisances really happen: cooking CO, shower smoke, rain, a slow sleeping pulse.
    peak: dict[str, float] = {}
    low_pulse = 200.0
    for r in readings:
        peak[r.metric] = max(peak.get(r.metric, 0.0), r.value)
        if r.metric == "heart_rate":
            low_pulse = min(low_pulse, r.value)
    assert 25.0 < peak["co"] < 50.0
    assert 1.5 < peak["smoke"] < 3.0
    assert 0.15 < peak["level"] < 0.3
    assert 45.0 < low_pulse < 52.0


def test_power_outage_silences_the_whole_building_only() -> None:
    devices, runs = hazard_testbed(SITE, start_s=100.0)
    community = Community(devices, seed=2, epoch0=1764120000.0, runs=runs)
    outage_run = next(r for r in runs if r.scenario is BUILDING_POWER_OUTAGE)
    building = set(community.affected(outage_run))
    assert building == {"outage-smoke", "outage-electrical", "outage-water"}
    messages = community.due(1000.0)
    offline = [m for m in messages if m.payload == b"offline"]
    assert sorted(m.device_id for m in offline) == sorted(building)
    assert all(m.retain and m.topic.endswith("/status") for m in offline)
    for m in messages:
        if m.device_id in building and m.kind.value == "telemetry":
            assert m.t_s < 100.0
    assert any(m.device_id == "bystander-water" and m.t_s > 500 for m in messages)


def test_fall_freezes_steps_and_heart_rate_after_the_event() -> None:
    wearable = Device(id="w1", type=DeviceType.WEARABLE, site=SITE,
                      location=Location(building="1"), report_interval_s=60.0)
    run = ScheduledScenario(scenario=FALL_NO_MOVEMENT, device_id="w1", start_s=600.0)
    # 09:00 local: the resident is active, so steps would otherwise keep counting.
    community = Community([wearable], seed=3, epoch0=1764118800.0, runs=[run])
    after = [orjson.loads(m.payload) for m in community.due(3600.0)
             if m.kind.value == "telemetry" and m.t_s > 600.0]
    assert len({b["values"]["steps"] for b in after}) == 1
    assert len({b["values"]["heart_rate"] for b in after}) == 1


def test_every_library_scenario_is_consistent() -> None:
    for scenario in SCENARIOS.values():
        check_scenario(scenario)
        assert scenario.description


def _faulty(faults: list[FaultRun], seed: int = 4
            ) -> tuple[list[Device], list[OutgoingMessage], list[OutgoingMessage], FaultInjector]:
    community, devices, clean = _hazard_run(until_s=1800.0, epoch0=time.time() // 60 * 60)
    again = Community(devices, seed=11, epoch0=community.epoch0,
                      runs=list(community.runs)).due(1800.0)
    injector = FaultInjector(faults, seed=seed)
    faulty = injector.apply(again) + injector.release()
    return devices, clean, faulty, injector


def _seq(messages: list[OutgoingMessage], device_id: str) -> list[int]:
    return [orjson.loads(m.payload)["seq"] for m in messages
            if m.device_id == device_id and m.kind.value != "status"]


def test_faults_keep_the_contract_and_do_what_they_say() -> None:
    device = "bystander-gas"
    faults = [FaultRun(fault=StuckValue(metric="co", after_s=600.0), device_id=device),
              FaultRun(fault=Drift(metric="lel", per_hour=4.0), device_id=device),
              FaultRun(fault=Dropout(after_s=300.0, duration_s=300.0),
                       device_id="bystander-water"),
              FaultRun(fault=LostMessages(share=0.2), device_id="bystander-smoke"),
              FaultRun(fault=Duplicated(share=0.3), device_id="bystander-electrical"),
              FaultRun(fault=Reordered(share=0.3), device_id="bystander-wearable"),
              FaultRun(fault=ClockSkew(offset_s=-3600.0), device_id="slow-gas-leak")]
    devices, clean, faulty, injector = _faulty(faults)
    _, rejects = _decode(devices, faulty)
    assert rejects == [] and injector.malformed == 0

    def values(messages: list[OutgoingMessage], metric: str) -> list[float]:
        return [orjson.loads(m.payload)["values"][metric] for m in messages
                if m.device_id == device and m.kind.value == "telemetry"]

    late = [m for m in faulty if m.device_id == device and m.t_s >= 600.0]
    assert len(set(values(late, "co"))) == 1
    drift = [f - c for f, c in zip(values(faulty, "lel"), values(clean, "lel"), strict=True)]
    assert drift[-1] == pytest.approx(4.0 * 0.5, abs=0.2)  # half an hour at 4 per hour

    water = _seq(faulty, "bystander-water")
    assert max(b - a for a, b in itertools.pairwise(water)) >= 9  # a 300 s gap
    smoke = _seq(faulty, "bystander-smoke")
    assert len(smoke) < len(_seq(clean, "bystander-smoke"))
    electrical = _seq(faulty, "bystander-electrical")
    assert len(electrical) > len(set(electrical))
    wearable = _seq(faulty, "bystander-wearable")
    assert sorted(wearable) == _seq(clean, "bystander-wearable") and wearable != sorted(wearable)
    skewed = [orjson.loads(m.payload)["ts"] for m in faulty if m.device_id == "slow-gas-leak"]
    honest = [orjson.loads(m.payload)["ts"] for m in clean if m.device_id == "slow-gas-leak"]
    assert [round(s - h) for s, h in zip(skewed, honest, strict=True)] == [-3600] * len(honest)


def test_malformed_payloads_are_rejected_by_the_decoder() -> None:
    devices, _clean, faulty, injector = _faulty([FaultRun(fault=Malformed(share=0.25))])
    _, rejects = _decode(devices, faulty)
    assert injector.malformed > 20
    assert len(rejects) == injector.malformed
    assert {"malformed_json", "non_finite", "wrong_type", "bad_timestamp"} <= set(rejects)


def test_faults_replay_exactly_from_the_seed() -> None:
    faults = [FaultRun(fault=LostMessages(share=0.3)), FaultRun(fault=Reordered(share=0.2))]
    assert [m.payload for m in _faulty(faults, seed=9)[2]] == \
        [m.payload for m in _faulty(faults, seed=9)[2]]
    assert [m.payload for m in _faulty(faults, seed=9)[2]] != \
        [m.payload for m in _faulty(faults, seed=10)[2]]
