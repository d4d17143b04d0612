"""Drift against neighbouring sensors: slow, lasting departures fire; incidents and noise do not."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from config.settings import DetectorSettings, DeviceConfig, DriftRule, DriftSettings
from detectors import DetectorEngine
from ingest.decoder import Decoder
from ingest.models import RawMessage
from shouwang.catalog import DeviceType
from shouwang.models import Detection, DetectionKind, Device, Location, Reading, Severity
from simulators import Community, ScheduledScenario
from simulators.faults import Drift, FaultInjector, FaultRun
from simulators.scenarios import NUISANCE_DAY, SLOW_GAS_LEAK

NOW = 1_764_086_400.0 - 8 * 3600.0  # midnight in UTC+8
HOUR = 3600.0
EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "community.example.yaml"


def _kitchen(count: int = 4, building: str = "1号楼", room: str = "101") -> dict[str, Device]:
    where = Location(building=building, unit="1单元", floor="1", room=room)
    return {f"g{i}": Device(id=f"g{i}", type=DeviceType.GAS, site="s1", location=where,
                            report_interval_s=60.0) for i in range(count)}


def _engine(devices: dict[str, Device], **drift: object) -> DetectorEngine:
    settings = DetectorSettings(drift=DriftSettings(**drift))  # type: ignore[arg-type]
    return DetectorEngine(settings, devices, clock=lambda: NOW, started_at=NOW)


def _gas_stream(devices: dict[str, Device], hours: float, odd: str | None = None,
                odd_value: object = None, seed: int = 3) -> list[Reading]:
    """One lel reading a minute per device: clean air with noise; ``odd`` follows
    ``odd_value(hour)`` added on top."""
    rng = random.Random(seed)
    out = []
    for i in range(int(hours * 60)):
        t = NOW + 60.0 * i
        for device_id in devices:
            value = 0.5 + abs(rng.gauss(0.0, 0.3))
            if device_id == odd:
                value += odd_value(i / 60.0)  # type: ignore[operator]
            out.append(Reading(ts=t, device_id=device_id, site="s1", metric="lel",
                               value=round(value, 2), seq=i, received_at=t))
    return out


def _drift(found: list[Detection]) -> list[tuple[str, str, bool]]:
    return [(d.device_id, d.hazard, d.firing) for d in found if d.hazard.endswith("_drift")]


def test_a_sensor_creeping_away_from_its_room_fires_once_and_clears_after_recalibration() -> None:
    devices = _kitchen()

    def creep(hour: float) -> float:  # +1 %LEL an hour for 12 h, then recalibrated
        return hour if hour < 12.0 else 0.0

    found = _engine(devices).process(_gas_stream(devices, 30.0, "g2", creep))

    assert _drift(found) == [("g2", "lel_drift", True), ("g2", "lel_drift", False)]
    fired, cleared = (d for d in found if d.hazard == "lel_drift")
    assert fired.kind is DetectionKind.HEALTH and fired.severity is Severity.YELLOW
    assert "偏离同房间 3 台同类传感器" in fired.message and "校准" in fired.message
    # 5 %LEL off after ~5 h (plus the level's 1 h lag), then held 6 h.
    assert 11.0 * HOUR <= fired.reading_ts - NOW <= 14.0 * HOUR
    assert cleared.reading_ts - NOW > 12.0 * HOUR
    assert "重新一致" in cleared.message


def test_noise_and_a_short_bump_do_not_fire() -> None:
    devices = _kitchen()

    def cooking(hour: float) -> float:  # 20 %LEL for 40 minutes: under level 1, not lasting
        return 20.0 if 5.0 <= hour < 5.67 else 0.0

    assert _drift(_engine(devices).process(_gas_stream(devices, 24.0, "g1", cooking))) == []


def test_a_device_in_a_hazard_state_is_not_drifting() -> None:
    devices = _kitchen()

    def leak(hour: float) -> float:  # a leak at level 1 (25 %LEL) for eight hours
        return 29.0 if 3.0 <= hour < 11.0 else 0.0

    engine = _engine(devices, persist_s=HOUR, warmup_s=HOUR)
    found = engine.process(_gas_stream(devices, 16.0, "g0", leak))

    assert ("g0", "gas", True) in [(d.device_id, d.hazard, d.firing) for d in found]
    assert _drift(found) == []
    # The same offset without the alarm (a drifting zero under level 1) does fire.
    engine = _engine(devices, persist_s=HOUR, warmup_s=HOUR)
    found = engine.process(_gas_stream(devices, 16.0, "g0",
                                       lambda h: 12.0 if 3.0 <= h < 11.0 else 0.0))
    assert _drift(found)[:1] == [("g0", "lel_drift", True)]


def test_too_few_peers_means_no_judgement_and_the_building_stands_in_for_the_room() -> None:
    def creep(hour: float) -> float:
        return hour

    two = _kitchen(count=2)
    assert _drift(_engine(two).process(_gas_stream(two, 20.0, "g1", creep))) == []

    # Four kitchens of one building, one sensor each: the building is the group.
    spread = {f"g{i}": dataclasses.replace(
        d, location=dataclasses.replace(d.location, room=f"{i}01 厨房"))
        for i, d in enumerate(_kitchen().values())}
    found = _engine(spread).process(_gas_stream(spread, 20.0, "g3", creep))
    assert _drift(found) == [("g3", "lel_drift", True)]
    assert "同楼栋" in next(d for d in found if d.hazard == "lel_drift").message


def test_the_median_keeps_neighbours_of_a_drifting_sensor_quiet() -> None:
    devices = _kitchen(count=3)  # the smallest group that can judge
    found = _engine(devices).process(_gas_stream(devices, 30.0, "g0", lambda h: 2.0 * h))
    assert [d for d, *_ in _drift(found)] == ["g0"]


@pytest.mark.parametrize("cut", [6 * 60 * 4, 13 * 60 * 4, 17 * 60 * 4])
def test_a_restored_engine_continues_the_drift_watch(cut: int) -> None:
    devices = _kitchen()

    def creep(hour: float) -> float:
        return hour if hour < 16.0 else 0.0

    stream = _gas_stream(devices, 30.0, "g2", creep)
    whole = _engine(devices)
    whole.process(stream[:cut])
    expected = whole.process(stream[cut:])

    first = _engine(devices)
    first.process(stream[:cut])
    second = _engine(devices)
    for device_id in devices:
        assert second.restore(device_id, first.snapshot(device_id))
    assert second.health_firing("g2") == first.health_firing("g2")
    resumed = second.process(stream[cut:])

    assert _drift(resumed) == _drift(expected)
    assert _drift(expected), "the stream after the cut fires or clears"
    assert second.snapshot("g2") == whole.snapshot("g2")


def test_rules_and_settings_are_validated_by_key() -> None:
    with pytest.raises(ValidationError, match="clear must be below tolerance"):
        DriftRule(device_type=DeviceType.GAS, metric="lel", tolerance=2.0, clear=3.0,
                  source="x")
    with pytest.raises(ValidationError, match="do not report 'level'"):
        DriftRule(device_type=DeviceType.GAS, metric="level", tolerance=2.0, clear=1.0,
                  source="x")
    with pytest.raises(ValidationError, match="min_peers"):
        DriftSettings(min_peers=1)
    assert all(rule.source for rule in DriftSettings().rules)
    assert _drift(_engine(_kitchen(), enabled=False).process(
        _gas_stream(_kitchen(), 20.0, "g1", lambda h: h))) == []


def _community_run(hours: float, runs: list[ScheduledScenario],
                   faults: list[FaultRun]) -> list[Detection]:
    """The example community (simulators' device models) through ingest's decoder into
    one engine, on simulated time, reporting every two minutes."""
    # The example's devices only (its other sections are not this test's business).
    listed = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))["devices"]
    devices = [dataclasses.replace(DeviceConfig.model_validate(d).to_device(),
                                   report_interval_s=120.0) for d in listed]
    registry = {d.id: d for d in devices}
    community = Community(devices, seed=11, epoch0=NOW, runs=runs)
    injector = FaultInjector(faults, seed=11)
    decoder = Decoder(registry)
    clock = [NOW]
    engine = DetectorEngine(DetectorSettings(), registry, clock=lambda: clock[0],
                            started_at=NOW)
    found: list[Detection] = []
    t = 0.0
    while t < hours * HOUR:
        t += 60.0
        clock[0] = community.wall_ts(t)
        for message in injector.apply(community.due(t)):
            result = decoder.decode(RawMessage(topic=message.topic, payload=message.payload,
                                               received_at=community.wall_ts(message.t_s)))
            assert result.reject is None
            found.extend(engine.process(result.readings))
    return found


def test_the_simulated_community_with_nuisances_a_leak_and_one_drifting_sensor() -> None:
    nuisance = [ScheduledScenario(scenario=NUISANCE_DAY, device_id="gas-1-1-301",
                                  start_s=day * 24 * HOUR) for day in (0, 1)]
    leak = ScheduledScenario(scenario=SLOW_GAS_LEAK, device_id="gas-2-1-301",
                             start_s=4 * HOUR)
    creeping = FaultRun(fault=Drift(metric="lel", per_hour=0.8, after_s=HOUR),
                        device_id="gas-3-1-602")

    found = _community_run(30.0, [*nuisance, leak], [creeping])

    # The leak alarmed and the nuisances did what they do, yet the only drift is the
    # sensor that drifts (5 %LEL off after ~7 h, then six hours more).
    assert ("gas-2-1-301", "gas") in {(d.device_id, d.hazard) for d in found if d.firing}
    assert _drift(found) == [("gas-3-1-602", "lel_drift", True)]
