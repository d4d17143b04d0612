"""Wearable/device events and device presence (offline by silence, Last Will, recovery)."""

from __future__ import annotations

from config.settings import DetectorSettings
from detectors import DetectorEngine
from shouwang.catalog import DeviceType
from shouwang.models import Detection, DetectionKind, Device, Reading, ReadingKind, Severity

START = 1_764_120_000.0
INTERVAL = 60.0
WINDOW = 3 * INTERVAL  # DetectorSettings().offline_after_intervals == 3


def _devices() -> dict[str, Device]:
    return {
        "w1": Device(id="w1", type=DeviceType.WEARABLE, site="s1", report_interval_s=INTERVAL),
        "g1": Device(id="g1", type=DeviceType.GAS, site="s1", report_interval_s=INTERVAL),
    }


def _engine(started_at: float | None = START) -> DetectorEngine:
    return DetectorEngine(DetectorSettings(), _devices(), clock=lambda: START,
                          started_at=started_at)


def _event(name: str, ts: float = START, device_id: str = "w1") -> Reading:
    return Reading(ts=ts, device_id=device_id, site="s1", metric=name, value=1.0,
                   kind=ReadingKind.EVENT, received_at=ts)


def _telemetry(ts: float, device_id: str = "g1", value: float = 1.0) -> Reading:
    return Reading(ts=ts, device_id=device_id, site="s1", metric="lel", value=value,
                   received_at=ts)


def _status(online: bool, ts: float, device_id: str = "g1") -> Reading:
    return Reading(ts=ts, device_id=device_id, site="s1", metric="online",
                   value=1.0 if online else 0.0, kind=ReadingKind.STATUS, received_at=ts)


def _offline(found: list[Detection]) -> list[tuple[str, bool]]:
    return [(d.device_id, d.firing) for d in found if d.hazard == "offline"]


def test_sos_fires_red_and_every_press_is_its_own_detection() -> None:
    engine = _engine()

    found = engine.process([_event("sos", START + 1), _event("sos", START + 2)])

    assert [(d.hazard, d.kind, d.severity, d.firing) for d in found] == [
        ("sos", DetectionKind.HAZARD, Severity.RED, True)] * 2
    assert [d.reading_ts for d in found] == [START + 1, START + 2]
    assert found[0].device_id == "w1" and found[0].metric == "sos"
    assert "SOS" in found[0].message


def test_fall_fires_orange_hazard() -> None:
    found = _engine().process([_event("fall")])

    assert [(d.hazard, d.kind, d.severity, d.firing) for d in found] == [
        ("fall", DetectionKind.HAZARD, Severity.ORANGE, True)]


def test_tamper_is_a_health_finding_and_unknown_events_are_ignored() -> None:
    found = _engine().process([_event("tamper", device_id="g1"), _event("doorbell")])

    assert [(d.hazard, d.kind, d.severity) for d in found] == [
        ("tamper", DetectionKind.HEALTH, Severity.YELLOW)]


def test_device_goes_offline_after_its_silence_window_and_is_flagged_once() -> None:
    engine = _engine()
    engine.process([_telemetry(START + 100)])

    before = engine.tick(START + 100 + WINDOW - 1)
    at_window = engine.tick(START + 100 + WINDOW)
    later = engine.tick(START + 100 + WINDOW + 600)

    # The wearable was never heard: it counts from the start, so it is overdue first.
    assert _offline(before) == [("w1", True)]
    assert _offline(at_window) == [("g1", True)]
    g1 = next(d for d in at_window if d.device_id == "g1")
    assert (g1.kind, g1.severity, g1.metric, g1.value) == (
        DetectionKind.HEALTH, Severity.BLUE, "online", 0.0)
    assert g1.reading_ts == START + 100
    assert g1.ts == START + 100 + WINDOW
    assert g1.message == "设备离线：已 3 分钟未上报（上报周期 60 秒）"
    assert later == []


def test_a_fresh_worker_counts_unseen_devices_from_its_start() -> None:
    engine = _engine()

    assert engine.tick(START + WINDOW - 1) == []
    assert sorted(_offline(engine.tick(START + WINDOW))) == [("g1", True), ("w1", True)]


def test_without_a_start_time_the_first_tick_is_the_start() -> None:
    engine = _engine(started_at=None)

    assert engine.tick(START + 10_000) == []
    assert engine.tick(START + 10_000 + WINDOW - 1) == []
    assert len(engine.tick(START + 10_000 + WINDOW)) == 2


def test_any_message_brings_an_offline_device_back_once() -> None:
    engine = _engine()
    engine.tick(START + WINDOW)
    assert engine.is_offline("g1")

    back = engine.process([_telemetry(START + WINDOW + 5), _telemetry(START + WINDOW + 6)])
    wearable_back = engine.process([_event("fall", START + WINDOW + 7)])

    assert _offline(back) == [("g1", False)]
    assert (back[0].kind, back[0].message, back[0].value) == (
        DetectionKind.HEALTH, "设备恢复在线", 1.0)
    assert [(d.hazard, d.firing) for d in wearable_back] == [("offline", False), ("fall", True)]
    assert not engine.is_offline("g1")
    assert engine.tick(START + WINDOW + 8) == []


def test_silence_is_measured_from_the_receive_time_and_never_moves_back() -> None:
    engine = _engine()
    engine.process([_telemetry(START + 500)])
    engine.process([_telemetry(START + 10)])  # a redelivered, older message

    assert _offline(engine.tick(START + 500 + WINDOW - 1)) == [("w1", True)]
    assert _offline(engine.tick(START + 500 + WINDOW)) == [("g1", True)]


def test_last_will_marks_the_device_offline_at_once_and_status_online_recovers() -> None:
    engine = _engine()

    gone = engine.process([_status(False, START + 1)])
    again = engine.process([_status(False, START + 2)])
    ticked = engine.tick(START + 3)
    back = engine.process([_status(True, START + 4)])
    steady = engine.process([_status(True, START + 5)])

    assert _offline(gone) == [("g1", True)]
    assert gone[0].message == "设备离线：连接断开"
    assert gone[0].reading_ts == START + 1
    assert again == [] and ticked == []
    assert _offline(back) == [("g1", False)]
    assert steady == []


def test_a_reading_while_online_produces_no_presence_finding() -> None:
    engine = _engine()

    assert engine.process([_telemetry(START + 1), _status(True, START + 2)]) == []
