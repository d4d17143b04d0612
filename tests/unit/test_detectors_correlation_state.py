"""Correlation groups are part of each device's snapshot: a restart or handover keeps them."""

from __future__ import annotations

import pickle

from config.settings import CorrelationRule, DetectorSettings
from detectors import DetectorEngine
from detectors.correlation import Correlator
from shouwang.catalog import DeviceType
from shouwang.models import Detection, DetectionKind, Device, Location, Reading, Severity

NOW = 1_764_120_000.0


def _devices(count: int, device_type: DeviceType = DeviceType.GAS,
             prefix: str = "g") -> dict[str, Device]:
    where = Location(building="3号楼", unit="1单元", floor="5", room="")
    return {f"{prefix}{i}": Device(id=f"{prefix}{i}", type=device_type, site="s1",
                                   location=where, report_interval_s=60.0)
            for i in range(count)}


def _engine(devices: dict[str, Device]) -> DetectorEngine:
    return DetectorEngine(DetectorSettings(), devices, clock=lambda: NOW, started_at=NOW)


def _lel(device_id: str, value: float, at: float) -> Reading:
    return Reading(ts=at, device_id=device_id, site="s1", metric="lel", value=value,
                   received_at=at)


def _summary(found: list[Detection]) -> list[tuple[str, str, bool]]:
    return [(d.device_id, d.hazard, d.firing) for d in found]


def _moved(source: DetectorEngine, devices: dict[str, Device], *,
           drop_correlation: bool = False) -> DetectorEngine:
    """A new worker that restored every device's snapshot (optionally without the
    correlation part, as a version 2 snapshot was)."""
    engine = _engine(devices)
    for device_id in devices:
        blob = source.snapshot(device_id)
        if drop_correlation:
            version, *rest = pickle.loads(blob)
            rest[5] = ()
            blob = pickle.dumps((version, *rest))
        assert engine.restore(device_id, blob)
    return engine


def test_a_spreading_leak_clears_once_on_the_worker_that_took_over() -> None:
    devices = _devices(2)
    first = _engine(devices)
    fired = first.process([_lel("g0", 30.0, NOW + 1), _lel("g1", 32.0, NOW + 2)])
    assert ("g1", "gas_spread", True) in _summary(fired)

    second = _moved(first, devices)
    cleared = second.process([_lel("g0", 2.0, NOW + 60), _lel("g1", 2.0, NOW + 61)])

    assert _summary(cleared) == [("g0", "gas", False), ("g1", "gas", False),
                                 ("g1", "gas_spread", False)]
    # Without the groups in the snapshot the spread alert would never be cleared.
    lost = _moved(first, devices, drop_correlation=True).process(
        [_lel("g0", 2.0, NOW + 60), _lel("g1", 2.0, NOW + 61)])
    assert ("g1", "gas_spread", False) not in _summary(lost)


def test_a_recognised_outage_stays_one_alert_across_a_restart() -> None:
    devices = _devices(6, DeviceType.SMOKE, prefix="k")
    first = _engine(devices)
    outage = first.tick(NOW + 181.0)
    assert [h for _, h, _ in _summary(outage)] == ["power_outage"]

    second = _moved(first, devices)
    back = second.process([Reading(ts=NOW + 300, device_id=d, site="s1", metric="smoke",
                                   value=0.2, received_at=NOW + 300) for d in devices])

    # One clear for the outage, no "back online" for offline alerts never sent.
    assert [(h, f) for _, h, f in _summary(back)] == [("power_outage", False)]


def test_a_snapshot_taken_mid_group_continues_exactly() -> None:
    devices = _devices(3)
    stream = [_lel("g0", 30.0, NOW + 1), _lel("g1", 2.0, NOW + 2), _lel("g2", 31.0, NOW + 3),
              _lel("g0", 2.0, NOW + 60), _lel("g2", 1.0, NOW + 61)]
    for cut in range(1, len(stream)):
        whole = _engine(devices)
        whole.process(stream[:cut])
        expected = whole.process(stream[cut:])
        first = _engine(devices)
        first.process(stream[:cut])
        assert _summary(_moved(first, devices).process(stream[cut:])) == _summary(expected)


def test_a_device_handed_to_another_worker_leaves_its_groups() -> None:
    rule = CorrelationRule(name="gas_spread", hazards=("gas",), min_devices=2,
                           result_hazard="gas_spread", message="多个燃气探测器报警")
    devices = _devices(3)
    correlator = Correlator([rule], devices)

    def gas(device_id: str, firing: bool = True) -> Detection:
        return Detection(ts=NOW, device_id=device_id, site="s1", hazard="gas",
                         kind=DetectionKind.HAZARD, severity=Severity.ORANGE, firing=firing)

    correlator.process([gas("g0"), gas("g1")], NOW)
    saved = correlator.dump("g0")
    assert [(name, hazard, published) for name, hazard, _, _, published in saved] == [
        ("gas_spread", "gas", True)]

    correlator.forget("g0")
    assert correlator.dump("g0") == ()
    correlator.load("g0", saved)
    assert correlator.dump("g0") == saved
    # A rule that no longer exists is skipped rather than failing the restore.
    correlator.load("g2", [("renamed", "gas", NOW, False, True)])
    assert correlator.dump("g2") == ()



def test_a_version_2_snapshot_restores_without_the_new_parts() -> None:
    devices = _devices(2)
    first = _engine(devices)
    first.process([_lel("g0", 30.0, NOW + 1), _lel("g1", 31.0, NOW + 2)])
    version, *rest = pickle.loads(first.snapshot("g0"))
    assert version == 4
    old = pickle.dumps((2, *rest[:5], rest[-1]))  # as saved before this version

    second = _engine(devices)
    assert second.restore("g0", old)
    assert second.levels("g0")["gas"] == 1
    _, *restored = pickle.loads(second.snapshot("g0"))
    # No groups, no episode, drift levels not started (the first reading starts them).
    assert restored[5] == () and restored[7] == (0, -1)
    assert [metric for metric, level, *_ in restored[6] if level != level] == ["lel", "co"]
