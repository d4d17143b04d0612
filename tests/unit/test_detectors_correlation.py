"""Correlation rules from config: fire confirmation, spreading gas, one alert for an outage."""

from __future__ import annotations

import pydantic
import pytest

from config.settings import CorrelationRule, DetectorSettings
from detectors import DetectorEngine
from detectors.correlation import Correlator
from shouwang.catalog import DeviceType
from shouwang.models import Detection, DetectionKind, Device, Location, Reading, Severity

NOW = 1_764_120_000.0
RULES = {r.name: r for r in DetectorSettings().correlations}


def _device(device_id: str, device_type: DeviceType, building: str = "3号楼",
            room: str = "") -> Device:
    return Device(id=device_id, type=device_type, site="s1", report_interval_s=60.0,
                  location=Location(building=building, unit="1单元", floor="5", room=room))


def _finding(device_id: str, hazard: str, *, firing: bool = True) -> Detection:
    return Detection(ts=NOW, device_id=device_id, site="s1", hazard=hazard,
                     kind=DetectionKind.HAZARD, severity=Severity.ORANGE, firing=firing,
                     level=1 if firing else 0)


def _summary(found: list[Detection]) -> list[tuple[str, str, bool]]:
    return [(d.device_id, d.hazard, d.firing) for d in found]


def test_smoke_with_a_fast_temperature_rise_in_one_room_confirms_a_fire() -> None:
    devices = {d.id: d for d in (_device("k1", DeviceType.SMOKE, room="501"),
                                 _device("k2", DeviceType.SMOKE, room="502"))}
    correlator = Correlator([RULES["fire_confirmed"]], devices)

    # Steam in 502 (smoke, no heat) and heat in 501 alone confirm nothing.
    assert _summary(correlator.process([_finding("k2", "smoke")], NOW)) == [("k2", "smoke", True)]
    assert len(correlator.process([_finding("k1", "heat_rise")], NOW + 10)) == 1
    found = correlator.process([_finding("k1", "smoke")], NOW + 60)

    assert _summary(found) == [("k1", "smoke", True), ("k1", "fire", True)]
    fire = found[1]
    assert (fire.severity, fire.kind) == (Severity.RED, DetectionKind.HAZARD)
    assert fire.message == ("3号楼 1单元 5层 501：烟雾与温度快速上升同时出现，"
                            "火灾可能性高（1 台设备）")
    # Repeats do not re-fire; it clears when both of its findings have cleared.
    assert _summary(correlator.process([_finding("k1", "smoke")], NOW + 70)) == [
        ("k1", "smoke", True)]
    assert _summary(correlator.process([_finding("k1", "heat_rise", firing=False)],
                                       NOW + 80)) == [("k1", "heat_rise", False)]
    assert _summary(correlator.process([_finding("k1", "smoke", firing=False)], NOW + 90)) == [
        ("k1", "smoke", False), ("k1", "fire", False)]


def test_findings_outside_the_window_do_not_combine() -> None:
    devices = {"k1": _device("k1", DeviceType.SMOKE, room="501")}
    correlator = Correlator([RULES["fire_confirmed"]], devices)

    correlator.process([_finding("k1", "smoke")], NOW)
    found = correlator.process([_finding("k1", "heat_rise")], NOW + 301)

    assert _summary(found) == [("k1", "heat_rise", True)]


def test_two_gas_alarms_in_one_building_raise_severity_and_other_buildings_do_not_count(
        ) -> None:
    devices = {d.id: d for d in (_device("g1", DeviceType.GAS), _device("g2", DeviceType.GAS),
                                 _device("g9", DeviceType.GAS, building="7号楼"))}
    engine = DetectorEngine(DetectorSettings(), devices, clock=lambda: NOW, started_at=NOW)

    def lel(device_id: str, value: float) -> list[Reading]:
        return [Reading(ts=NOW, device_id=device_id, site="s1", metric="lel", value=value)]

    assert _summary(engine.process(lel("g1", 30) + lel("g9", 30))) == [
        ("g1", "gas", True), ("g9", "gas", True)]
    found = engine.process(lel("g2", 31))

    assert _summary(found) == [("g2", "gas", True), ("g2", "gas_spread", True)]
    assert found[1].severity is Severity.RED
    assert "（2 台设备）" in found[1].message


def test_a_building_wide_power_cut_is_one_alert_not_two_hundred() -> None:
    building = [_device(f"d{i:03d}", DeviceType.SMOKE) for i in range(200)]
    elsewhere = [_device(f"e{i}", DeviceType.GAS, building="7号楼") for i in range(3)]
    devices = {d.id: d for d in building + elsewhere}
    engine = DetectorEngine(DetectorSettings(), devices, clock=lambda: NOW, started_at=NOW)

    found = engine.tick(NOW + 181.0)  # everyone silent for three report intervals

    outage = [d for d in found if d.hazard == "power_outage"]
    assert len(outage) == 1 and outage[0].firing
    assert outage[0].kind is DetectionKind.HEALTH and outage[0].severity is Severity.YELLOW
    assert not any(d.hazard == "offline" and d.device_id.startswith("d") for d in found)
    # Three devices in another building are not "many": reported one by one.
    assert sorted(d.device_id for d in found if d.hazard == "offline") == ["e0", "e1", "e2"]

    back = engine.process([Reading(ts=NOW + 200, device_id=d.id, site="s1", metric="smoke",
                                   value=0.2, received_at=NOW + 200) for d in building])
    assert _summary(back) == [(outage[0].device_id, "power_outage", False)]


def test_members_reported_before_the_outage_was_recognised_are_cleared() -> None:
    devices = {f"d{i}": _device(f"d{i}", DeviceType.SMOKE) for i in range(6)}
    correlator = Correlator([RULES["power_outage"]], devices)

    early = correlator.process([_finding(f"d{i}", "offline") for i in range(2)], NOW)
    found = correlator.process([_finding(f"d{i}", "offline") for i in range(2, 6)], NOW + 5)

    assert _summary(early) == [("d0", "offline", True), ("d1", "offline", True)]
    assert _summary(found) == [("d4", "power_outage", True), ("d0", "offline", False),
                               ("d1", "offline", False)]


def test_rules_are_config_data_and_are_validated() -> None:
    settings = DetectorSettings.model_validate({"correlations": [{
        "name": "basement_flood", "hazards": ["flood"], "scope": "site", "min_devices": 2,
        "result_hazard": "flood_wide", "severity": "orange", "message": "多处积水",
    }]})
    devices = {d: Device(id=d, type=DeviceType.WATER, site="s1") for d in ("w1", "w2")}
    correlator = Correlator(settings.correlations, devices)
    correlator.process([_finding("w1", "flood")], NOW)

    assert [d.hazard for d in correlator.process([_finding("w2", "flood")], NOW)] == [
        "flood", "flood_wide"]
    with pytest.raises(pydantic.ValidationError, match="min_devices"):
        CorrelationRule(name="x", hazards=("gas",), min_devices=0, result_hazard="y",
                        message="z")


def test_the_engine_confirms_a_fire_from_smoke_and_a_fast_temperature_rise() -> None:
    device = _device("k1", DeviceType.SMOKE, room="501")
    engine = DetectorEngine(DetectorSettings(), {"k1": device}, clock=lambda: NOW,
                            started_at=NOW)
    found: list[Detection] = []
    for i in range(30):  # +12 °C/min, smoke thickening: a fire, well before 54 °C
        t = NOW + 5.0 * i
        found += engine.process([
            Reading(ts=t, device_id="k1", site="s1", metric="temperature",
                    value=25.0 + 0.2 * 5.0 * i),
            Reading(ts=t, device_id="k1", site="s1", metric="smoke", value=0.5 + 0.2 * i)])

    hazards = [d.hazard for d in found if d.firing]
    assert {"heat_rise", "smoke", "fire"} <= set(hazards)
    assert hazards.count("fire") == 1
    assert hazards.index("fire") > max(hazards.index("heat_rise"), hazards.index("smoke"))
