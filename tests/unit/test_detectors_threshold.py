"""Threshold rules: levels, hysteresis, direction, device overrides, and the engine around them."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.settings import DetectorSettings
from detectors import DetectorEngine, Threshold
from shouwang.catalog import DeviceType
from shouwang.models import Detection, DetectionKind, Device, Reading, Severity

NOW = 1_764_120_000.0


def _engine(*devices: Device) -> DetectorEngine:
    return DetectorEngine(DetectorSettings(), {d.id: d for d in devices}, clock=lambda: NOW,
                          started_at=NOW)


def _gas(device_id: str = "g1", thresholds: dict[str, tuple[float, float]] | None = None,
         ) -> Device:
    return Device(id=device_id, type=DeviceType.GAS, site="s1", thresholds=thresholds or {})


def _readings(device_id: str, metric: str, values: Iterable[float], *,
              drill: bool = False) -> list[Reading]:
    return [Reading(ts=NOW - 100 + i, device_id=device_id, site="s1", metric=metric,
                    value=float(v), seq=i, drill=drill) for i, v in enumerate(values)]


def _summary(found: list[Detection]) -> list[tuple[str, int, bool, Severity]]:
    return [(d.hazard, d.level, d.firing, d.severity) for d in found]


def test_crossing_a_level_fires_once_with_a_chinese_message() -> None:
    engine = _engine(_gas())
    readings = _readings("g1", "lel", [3, 10, 32.5, 33, 34])

    found = engine.process(readings)

    assert len(found) == 1
    d = found[0]
    assert (d.hazard, d.kind, d.severity, d.level, d.firing) == (
        "gas", DetectionKind.HAZARD, Severity.ORANGE, 1, True)
    assert (d.device_id, d.site, d.metric, d.value) == ("g1", "s1", "lel", 32.5)
    assert d.message == "可燃气体浓度 32.5 %LEL，超过一级报警值 25"
    assert d.reading_ts == readings[2].ts
    assert d.ts == NOW


def test_value_exactly_at_the_level_counts_as_reaching_it() -> None:
    found = _engine(_gas()).process(_readings("g1", "lel", [25]))

    assert _summary(found) == [("gas", 1, True, Severity.ORANGE)]
    assert found[0].message == "可燃气体浓度 25 %LEL，达到一级报警值 25"


def test_oscillating_around_a_level_within_hysteresis_fires_exactly_once() -> None:
    engine = _engine(_gas())
    wobble = [25.0 + (0.5 if i % 2 == 0 else -0.5) for i in range(200)]

    found = engine.process(_readings("g1", "lel", wobble))

    assert _summary(found) == [("gas", 1, True, Severity.ORANGE)]


def test_escalates_to_level_two_then_steps_down_only_past_the_hysteresis() -> None:
    engine = _engine(_gas())

    found = engine.process(_readings("g1", "lel", [30, 52, 60, 47, 45, 44, 30]))

    assert _summary(found) == [
        ("gas", 1, True, Severity.ORANGE),
        ("gas", 2, True, Severity.RED),
        ("gas", 1, True, Severity.ORANGE),
    ]
    assert found[1].message == "可燃气体浓度 52 %LEL，超过二级报警值 50"
    assert found[2].value == 44
    assert found[2].message == "可燃气体浓度 44 %LEL，回落至一级（报警值 25）"


def test_jumping_straight_to_level_two_skips_level_one() -> None:
    found = _engine(_gas()).process(_readings("g1", "lel", [0, 80]))

    assert _summary(found) == [("gas", 2, True, Severity.RED)]


def test_clears_once_when_the_value_goes_back_past_level_minus_hysteresis() -> None:
    engine = _engine(_gas())

    found = engine.process(_readings("g1", "lel", [30, 22, 20, 19.9, 10, 3]))

    assert _summary(found) == [
        ("gas", 1, True, Severity.ORANGE),
        ("gas", 0, False, Severity.ORANGE),
    ]
    assert found[1].value == 19.9
    assert found[1].message == "可燃气体浓度 19.9 %LEL，已恢复正常"


def test_clear_from_level_two_straight_to_normal() -> None:
    found = _engine(_gas()).process(_readings("g1", "lel", [55, 5]))

    assert _summary(found) == [("gas", 2, True, Severity.RED), ("gas", 0, False, Severity.RED)]


def test_state_is_per_device_and_carries_across_batches() -> None:
    engine = _engine(_gas("g1"), _gas("g2"))

    first = engine.process(_readings("g1", "lel", [30]) + _readings("g2", "lel", [10]))
    second = engine.process(_readings("g1", "lel", [31]) + _readings("g2", "lel", [31]))

    assert [(d.device_id, d.level) for d in first] == [("g1", 1)]
    assert [(d.device_id, d.level) for d in second] == [("g2", 1)]
    assert engine.levels("g1") == {"gas": 1, "co": 0}


def test_drill_flag_is_carried_to_the_detection() -> None:
    found = _engine(_gas()).process(_readings("g1", "lel", [40], drill=True))

    assert found[0].drill is True


def test_below_rule_fires_on_a_low_heart_rate_and_clears_above_level_plus_hysteresis() -> None:
    engine = _engine(Device(id="w1", type=DeviceType.WEARABLE, site="s1"))

    found = engine.process(_readings("w1", "heart_rate", [70, 46, 44, 48, 30, 34, 41, 49, 51]))

    assert _summary(found) == [
        ("heart_rate_low", 1, True, Severity.YELLOW),
        ("heart_rate_low", 2, True, Severity.ORANGE),
        ("heart_rate_low", 1, True, Severity.YELLOW),
        ("heart_rate_low", 0, False, Severity.YELLOW),
    ]
    assert found[0].message == "心率 44 bpm，低于一级报警值 45"
    assert found[2].message == "心率 41 bpm，回升至一级（报警值 45）"


def test_heart_rate_jumping_from_high_to_low_clears_one_hazard_and_fires_the_other() -> None:
    engine = _engine(Device(id="w1", type=DeviceType.WEARABLE, site="s1"))

    found = engine.process(_readings("w1", "heart_rate", [130, 40]))

    assert _summary(found) == [
        ("heart_rate_high", 1, True, Severity.YELLOW),
        ("heart_rate_high", 0, False, Severity.YELLOW),
        ("heart_rate_low", 1, True, Severity.YELLOW),
    ]


def test_device_override_replaces_the_rule_levels_for_that_device_only() -> None:
    engine = _engine(_gas("g1", thresholds={"lel": (10.0, 20.0)}), _gas("g2"))

    found = engine.process(_readings("g1", "lel", [12, 21]) + _readings("g2", "lel", [12, 21]))

    assert [(d.device_id, d.level, d.severity) for d in found] == [
        ("g1", 1, Severity.ORANGE), ("g1", 2, Severity.RED)]
    assert found[0].message == "可燃气体浓度 12 %LEL，超过一级报警值 10"


def test_override_keeps_the_rule_hysteresis() -> None:
    engine = _engine(_gas("g1", thresholds={"lel": (10.0, 20.0)}))

    found = engine.process(_readings("g1", "lel", [12, 6, 4.9]))

    assert [(d.level, d.firing) for d in found] == [(1, True), (0, False)]
    assert found[1].value == 4.9


def test_heart_rate_override_applies_to_the_rule_whose_direction_it_matches() -> None:
    wearable = Device(id="w1", type=DeviceType.WEARABLE, site="s1",
                      thresholds={"heart_rate": (110.0, 140.0)})
    engine = _engine(wearable)

    found = engine.process(_readings("w1", "heart_rate", [115, 80, 44]))

    assert _summary(found) == [
        ("heart_rate_high", 1, True, Severity.YELLOW),
        ("heart_rate_high", 0, False, Severity.YELLOW),
        ("heart_rate_low", 1, True, Severity.YELLOW),  # the low rule keeps its default 45
    ]


def test_override_in_the_wrong_order_is_ignored_with_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="detectors.threshold"):
        engine = _engine(_gas("g1", thresholds={"lel": (40.0, 30.0)}))

    assert _summary(engine.process(_readings("g1", "lel", [30]))) == [
        ("gas", 1, True, Severity.ORANGE)]
    assert "device_id=g1 metric=lel" in caplog.text


def test_a_rule_clear_waits_while_another_rule_of_the_same_hazard_still_fires() -> None:
    engine = _engine(Device(id="k1", type=DeviceType.SMOKE, site="s1"))

    found = engine.process(
        _readings("k1", "smoke", [4]) + _readings("k1", "alarm", [1])
        + _readings("k1", "smoke", [0.5]) + _readings("k1", "alarm", [0]))

    assert [(d.hazard, d.metric, d.level, d.firing) for d in found] == [
        ("smoke", "smoke", 1, True),
        ("smoke", "alarm", 1, True),
        ("smoke", "alarm", 0, False),  # the smoke-density clear was held back
    ]


def test_metrics_without_rules_and_other_kinds_are_ignored() -> None:
    engine = _engine(_gas())

    # Battery 1 % is a health finding (tests/unit/test_detectors_health.py), not a hazard.
    found = engine.process(_readings("g1", "battery", [1, 0]) + _readings("g1", "rssi", [-130]))

    assert [d.kind for d in found] == [DetectionKind.HEALTH]
    assert [d.hazard for d in found] == ["battery_low"]


def test_engine_ignores_and_counts_readings_of_unknown_devices() -> None:
    engine = _engine(_gas("g1"))

    found = engine.process(_readings("ghost", "lel", [90, 95]) + _readings("g1", "lel", [90]))

    assert [d.device_id for d in found] == ["g1"]
    assert engine.unknown_device_readings == 2
    assert engine.readings_seen == 3


def test_threshold_rejects_levels_in_the_wrong_order() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        Threshold(hazard="gas", metric="lel", levels=(50.0, 25.0),
                  severities=(Severity.ORANGE, Severity.RED), hysteresis=5.0)
    with pytest.raises(ValueError, match="strictly decreasing"):
        Threshold(hazard="hr", metric="heart_rate", direction="below", levels=(35.0, 45.0),
                  severities=(Severity.YELLOW, Severity.ORANGE), hysteresis=5.0)


_GAS = Threshold(hazard="gas", metric="lel", levels=(25.0, 50.0),
                 severities=(Severity.ORANGE, Severity.RED), hysteresis=5.0)


@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=60))
def test_levels_rise_at_once_fall_only_past_hysteresis_and_never_repeat(
        values: list[float]) -> None:
    engine = _engine(_gas())
    found = engine.process(_readings("g1", "lel", values))

    emitted = [0] + [d.level for d in found]
    assert all(a != b for a, b in pairwise(emitted))
    level = 0
    for value in values:
        new = _GAS.next_level(level, value)
        reached = sum(value >= bound for bound in (25.0, 50.0))
        assert new >= reached  # a crossed level is entered at once
        if new < level:  # it fell: the value went back past the level it left
            assert value < (25.0, 50.0)[level - 1] - 5.0
        level = new
    assert emitted[-1] == level
