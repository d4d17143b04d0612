"""Sensor health: stuck, out of range, battery, seq gaps and duplicates, clock skew."""

from __future__ import annotations

from config.settings import DetectorSettings, HealthSettings
from detectors import DetectorEngine
from shouwang.catalog import DeviceType
from shouwang.models import Detection, DetectionKind, Device, Reading, ReadingKind, Severity

NOW = 1_764_120_000.0


def _engine(**health: object) -> DetectorEngine:
    settings = DetectorSettings(health=HealthSettings.model_validate(health))
    device = Device(id="g1", type=DeviceType.GAS, site="s1")
    return DetectorEngine(settings, {"g1": device}, clock=lambda: NOW, started_at=NOW)


def _message(seq: int | None, values: dict[str, float], *, ts: float | None = None,
             received_at: float | None = None, kind: ReadingKind = ReadingKind.TELEMETRY,
             ) -> list[Reading]:
    """The readings of one device message: one ts and one seq shared by all values."""
    at = NOW + 60.0 * (seq or 0) if ts is None else ts
    return [Reading(ts=at, device_id="g1", site="s1", metric=metric, value=value, seq=seq,
                    kind=kind, received_at=at if received_at is None else received_at)
            for metric, value in values.items()]


def _health(found: list[Detection]) -> list[tuple[str, bool]]:
    assert all(d.kind is DetectionKind.HEALTH for d in found)
    return [(d.hazard, d.firing) for d in found]


def test_a_stuck_value_fires_once_and_clears_when_it_moves() -> None:
    engine = _engine(stuck_samples=5)
    found: list[Detection] = []
    for seq in range(12):
        found += engine.process(_message(seq, {"lel": 7.5, "co": 1.0 + seq}))
    found += engine.process(_message(12, {"lel": 7.6, "co": 20.0}))

    assert _health(found) == [("stuck", True), ("stuck", False)]
    assert found[0].metric == "lel" and found[0].severity is Severity.YELLOW
    assert "连续 5 次读数均为 7.5" in found[0].message


def test_a_value_at_the_bottom_of_its_range_is_the_normal_clean_air_reading() -> None:
    engine = _engine(stuck_samples=5)
    found: list[Detection] = []
    for seq in range(50):
        found += engine.process(_message(seq, {"lel": 0.0}))

    assert found == []


def test_out_of_physical_range_fires_and_clears_only_after_a_run_of_good_readings() -> None:
    engine = _engine()
    found = engine.process(_message(1, {"lel": -12.0}))
    assert _health(found) == [("out_of_range", True)]
    assert found[0].message == "可燃气体浓度 -12 超出传感器量程 0–100，传感器可能故障"

    later: list[Detection] = []
    for seq in range(2, 61):
        later += engine.process(_message(seq, {"lel": 1.0 + seq % 3}))
    assert later == []
    later += engine.process(_message(61, {"lel": 1.0}))
    assert _health(later) == [("out_of_range", False)]


def test_battery_low_has_hysteresis() -> None:
    engine = _engine(battery_low=20.0, battery_clear=25.0)
    found: list[Detection] = []
    for seq, level in enumerate((30, 21, 20, 19, 22, 20.5, 24, 26, 19)):
        found += engine.process(_message(seq, {"battery": float(level)}))

    assert _health(found) == [("battery_low", True), ("battery_low", False),
                              ("battery_low", True)]
    assert found[0].severity is Severity.BLUE


def test_lost_messages_fire_seq_gap_per_window() -> None:
    engine = _engine(seq_window=10, seq_loss_ratio=0.2)
    found: list[Detection] = []
    seq = 100
    for _ in range(10):  # every other message lost: 10 received, 9 lost
        found += engine.process(_message(seq, {"lel": 1.0, "co": 2.0, "battery": 90.0}))
        seq += 2
    assert _health(found) == [("seq_gap", True)]
    assert "丢失 9 条" in found[0].message

    for _ in range(10):  # a clean window
        found += engine.process(_message(seq, {"lel": 1.0, "co": 2.0, "battery": 90.0}))
        seq += 1
    assert _health(found)[1:] == [("seq_gap", False)]


def test_duplicates_fire_but_readings_of_one_message_and_restarts_do_not() -> None:
    engine = _engine(seq_window=10, seq_duplicate_ratio=0.2, seq_reset_gap=1000)
    found: list[Detection] = []
    # A restart: seq falls from 5000 to 0 (not a duplicate); one message, many values.
    found += engine.process(_message(5000, {"lel": 1.0, "co": 2.0}, ts=NOW))
    for seq in range(9):
        found += engine.process(_message(seq, {"lel": 1.0, "co": 2.0, "battery": 90.0},
                                         ts=NOW + 10 + seq))
    assert found == []
    # An event shares the device's seq counter: the next number is no gap.
    found += engine.process(_message(9, {"sos": 1.0}, ts=NOW + 30, kind=ReadingKind.EVENT))
    assert [d.hazard for d in found] == ["sos"]

    found.clear()
    for seq in range(10, 15):  # each message arrives twice (a gateway resending)
        for copy in range(2):
            found += engine.process(_message(seq, {"lel": 1.0}, ts=NOW + 40 + seq + copy * 0.5))
    assert _health(found) == [("seq_duplicate", True)]


def test_clock_skew_needs_several_skewed_messages_and_clears_the_same_way() -> None:
    engine = _engine(max_clock_skew_s=300.0, clock_skew_samples=3)
    found: list[Detection] = []
    for seq in range(1, 4):  # device clock 1 h behind
        at = NOW + 60.0 * seq
        found += engine.process(_message(seq, {"lel": 1.0, "co": 2.0}, ts=at - 3600.0,
                                         received_at=at))
    assert _health(found) == [("clock_skew", True)]
    assert "-3600 秒" in found[0].message

    engine.process(_message(4, {"lel": 1.0}))
    engine.process(_message(5, {"lel": 1.0}))
    assert _health(engine.process(_message(6, {"lel": 1.0}))) == [("clock_skew", False)]
