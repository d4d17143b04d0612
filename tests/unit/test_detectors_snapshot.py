"""Engine state snapshots: a restored engine continues exactly where the saved one was."""

from __future__ import annotations

import pickle
import random

import pytest

from config.settings import DetectorSettings
from detectors import DetectorEngine
from shouwang.catalog import DeviceType
from shouwang.models import Detection, Device, Reading

NOW = 1_764_120_000.0
DEVICES = {d.id: d for d in (Device(id="g1", type=DeviceType.GAS, site="s1"),
                             Device(id="k1", type=DeviceType.SMOKE, site="s1"))}


def _engine() -> DetectorEngine:
    return DetectorEngine(DetectorSettings(), DEVICES, clock=lambda: NOW, started_at=NOW)


def _stream() -> list[Reading]:
    """A gas leak with a forecast, a stuck smoke sensor, a low battery, lost messages."""
    rng = random.Random(9)
    out: list[Reading] = []
    for i in range(120):
        t = NOW + 5.0 * i
        out.append(Reading(ts=t, device_id="g1", site="s1", metric="lel",
                           value=round(2.0 + 0.12 * 5 * i + rng.gauss(0, 0.4), 2),
                           seq=3 * i, received_at=t))
        out.append(Reading(ts=t, device_id="g1", site="s1", metric="battery",
                           value=30.0 - i * 0.2, seq=3 * i, received_at=t))
        out.append(Reading(ts=t, device_id="k1", site="s1", metric="smoke", value=0.4,
                           seq=i, received_at=t))
    return out


def _key(found: list[Detection]) -> list[tuple[str, str, bool, int, str]]:
    return [(d.device_id, d.hazard, d.firing, d.level, d.message) for d in found]


@pytest.mark.parametrize("cut", [40, 97, 151, 260])
def test_restored_engine_continues_like_one_never_stopped(cut: int) -> None:
    stream = _stream()
    whole = _engine()
    whole.process(stream[:cut])
    expected = whole.process(stream[cut:])

    first = _engine()
    first.process(stream[:cut])
    blobs = {d: first.snapshot(d) for d in DEVICES}
    second = _engine()
    assert all(second.restore(d, blob) for d, blob in blobs.items())
    resumed = second.process(stream[cut:])

    assert _key(resumed) == _key(expected)
    assert {d: second.snapshot(d) for d in DEVICES} == {d: whole.snapshot(d) for d in DEVICES}
    # The stream did exercise what the state holds.
    hazards = {h for _, h, *_ in _key(_engine().process(stream))}
    assert {"gas", "gas_forecast", "stuck", "battery_low", "seq_gap"} <= hazards


def test_a_fresh_engine_without_restore_repeats_findings() -> None:
    stream = _stream()
    first = _engine()
    first.process(stream[:200])

    assert _key(_engine().process(stream[200:])) != _key(
        _restored(first).process(stream[200:]))


def _restored(source: DetectorEngine) -> DetectorEngine:
    engine = _engine()
    for d in DEVICES:
        engine.restore(d, source.snapshot(d))
    return engine


def test_unusable_snapshots_reset_the_device_instead_of_running_code() -> None:
    engine = _engine()
    engine.process(_stream()[:200])

    class Evil:
        def __reduce__(self) -> tuple[object, ...]:
            return (print, ("pwned",))

    assert not engine.restore("g1", pickle.dumps(Evil()))
    assert not engine.restore("k1", b"not a pickle")
    assert not engine.restore("g1", pickle.dumps((99, 0.0, False, (), None, ())))
    assert engine.levels("g1") == {"gas": 0, "co": 0}
    assert engine.health_firing("k1") == frozenset()


def _alarm(ts: float) -> Reading:
    return Reading(ts=ts, device_id="g1", site="s1", metric="lel", value=52.0, seq=1,
                   received_at=ts)


def test_a_restored_engine_skips_a_replayed_capture_at_once() -> None:
    """After a restart or handover an old alarm played again raises nothing, before the
    device has sent anything newer to the new worker."""
    stream = _stream()
    first = _engine()
    first.process(stream[:90])  # calm lel, up to NOW + 145 s
    second = _engine()
    assert second.restore("g1", first.snapshot("g1"))

    assert second.process([_alarm(NOW + 145.0 - 301.0)]) == []
    assert second.replayed_readings == 1
    assert second.levels("g1")["gas"] == 0
    # Inside the window it is a late reading, not a replay: it is run.
    assert [d.hazard for d in second.process([_alarm(NOW + 145.0 - 299.0)])] == ["gas"]


def test_a_version_3_snapshot_restores_without_the_replay_window() -> None:
    first = _engine()
    first.process(_stream()[:90])
    version, *rest = pickle.loads(first.snapshot("g1"))
    assert version == 4 and rest[-2] == NOW + 145.0
    old = pickle.dumps((3, *rest[:-2], rest[-1]))  # as saved before the window was kept

    second = _engine()
    assert second.restore("g1", old)
    # Nothing newer known yet: the old alarm is run (as before the window was saved).
    assert [d.hazard for d in second.process([_alarm(NOW - 400.0)])] == ["gas"]
    assert second.replayed_readings == 0
