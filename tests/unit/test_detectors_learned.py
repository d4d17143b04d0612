"""Learned anomaly in the engine's stream: one detection per episode, snapshotted, configured."""

from __future__ import annotations

import pickle
import random
from collections.abc import Callable

import pytest
from pydantic import ValidationError

from config.settings import AnomalySettings, DetectorSettings
from detectors import DetectorEngine
from shouwang.catalog import DeviceType
from shouwang.models import Detection, DetectionKind, Device, Reading, Severity

NOW = 1_764_120_000.0
STEP_S = 30.0
DEVICES = {"g1": Device(id="g1", type=DeviceType.GAS, site="s1"),
           "k1": Device(id="k1", type=DeviceType.SMOKE, site="s1")}


def _engine(**anomaly: object) -> DetectorEngine:
    settings = DetectorSettings(anomaly=AnomalySettings(**anomaly))  # type: ignore[arg-type]
    return DetectorEngine(settings, DEVICES, clock=lambda: NOW, started_at=NOW)


def _co(i: int, rng: random.Random, bump: Callable[[int], float]) -> Reading:
    """CO of g1 at sample i: 1.5 ppm of noise plus ``bump(i)``."""
    return Reading(ts=NOW + STEP_S * i, device_id="g1", site="s1", metric="co",
                   value=round(1.5 + abs(rng.gauss(0.0, 0.3)) + bump(i), 2), seq=i,
                   received_at=NOW + STEP_S * i)


def _episode(i: int) -> float:
    """Four hours of clean air, then 30 ppm for 20 minutes (below level 1: 50 ppm)."""
    return 30.0 if 480 <= i < 520 else 0.0


def _stream(bump: Callable[[int], float] = _episode, samples: int = 700) -> list[Reading]:
    rng = random.Random(4)
    return [_co(i, rng, bump) for i in range(samples)]


def _anomalies(found: list[Detection]) -> list[tuple[str, bool, float]]:
    return [(d.hazard, d.firing, d.reading_ts) for d in found
            if d.kind is DetectionKind.ANOMALY]


def test_one_detection_opens_an_episode_and_one_closes_it() -> None:
    found = _engine().process(_stream())

    assert _anomalies(found) == [
        ("co_anomaly", True, NOW + STEP_S * 480),
        # Ten calm readings after the last flagged one.
        ("co_anomaly", False, NOW + STEP_S * 529)]
    first = next(d for d in found if d.kind is DetectionKind.ANOMALY)
    assert first.severity is Severity.BLUE and first.metric == "co" and first.value > 30.0
    assert "偏离" in first.message
    # 30 ppm is under CO level 1: no hazard fired, only the learned detector saw it.
    assert [d for d in found if d.kind is DetectionKind.HAZARD] == []


def test_the_filter_does_not_learn_the_episode_so_it_is_not_split() -> None:
    # Forty flagged readings: an unprotected EWMA would adapt and end the episode early,
    # then open another when the value falls back.
    found = _engine(clear_after=1).process(_stream())

    assert [firing for _, firing, _ in _anomalies(found)] == [True, False]


def test_noise_and_a_slow_drift_open_no_episode() -> None:
    def drift(i: int) -> float:  # 6 ppm over eight hours: the EWMA follows it
        return 6.0 * i / 960

    assert _anomalies(_engine().process(_stream(drift, samples=960))) == []
    assert _anomalies(_engine().process(_stream(lambda i: 0.0, samples=2880))) == []


def test_disabled_or_unwatched_metrics_emit_nothing() -> None:
    assert _anomalies(_engine(enabled=False).process(_stream())) == []
    assert _anomalies(_engine(metrics=("lel",)).process(_stream())) == []


def test_another_registry_detector_runs_in_the_stream() -> None:
    found = _engine(detector="robust_z", threshold=0.8).process(_stream())

    assert _anomalies(found)[0] == ("co_anomaly", True, NOW + STEP_S * 480)


def test_configuration_is_checked_by_key() -> None:
    with pytest.raises(ValidationError, match="detector"):
        AnomalySettings(detector="magic")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="threshold"):
        AnomalySettings(threshold=1.5)


@pytest.mark.parametrize("detector", ["ewma", "robust_z"])
@pytest.mark.parametrize("cut", [300, 490, 525])
def test_a_restored_engine_continues_the_episode(detector: str, cut: int) -> None:
    stream = _stream()
    whole = _engine(detector=detector, threshold=0.8)
    whole.process(stream[:cut])
    expected = whole.process(stream[cut:])

    first = _engine(detector=detector, threshold=0.8)
    first.process(stream[:cut])
    second = _engine(detector=detector, threshold=0.8)
    assert second.restore("g1", first.snapshot("g1"))
    assert second.anomaly_firing("g1") == first.anomaly_firing("g1")

    assert _anomalies(second.process(stream[cut:])) == _anomalies(expected)
    assert _anomalies(expected), "the stream after the cut exercises the episode"
    assert second.snapshot("g1") == whole.snapshot("g1")


def test_mid_episode_snapshot_reports_the_open_episode() -> None:
    engine = _engine()
    engine.process(_stream()[:500])
    assert engine.anomaly_firing("g1") == frozenset({"co_anomaly"})
    assert engine.anomaly_firing("k1") == frozenset()


def test_a_snapshot_without_anomaly_state_still_restores_the_rest() -> None:
    engine = _engine()
    engine.process([Reading(ts=NOW, device_id="g1", site="s1", metric="lel", value=30.0)])
    _, *rest = pickle.loads(engine.snapshot("g1"))
    old = pickle.dumps((1, *rest[:5]))  # as saved before learned anomaly existed

    restored = _engine()
    assert restored.restore("g1", old)
    assert restored.levels("g1")["gas"] == 1
    assert restored.anomaly_firing("g1") == frozenset()


def test_a_detector_blob_naming_another_class_is_refused() -> None:
    engine = _engine()
    engine.process(_stream()[:100])
    version, *rest = pickle.loads(engine.snapshot("g1"))
    evil = pickle.dumps(print)  # any callable outside the anomaly package
    rest[-1] = tuple((metric, calm, evil if blob else blob, *more)
                     for metric, calm, blob, *more in rest[-1])
    restored = _engine()

    assert restored.restore("g1", pickle.dumps((version, *rest)))
    # Only that model starts afresh (no saved detector); the rest of the state is kept.
    _, *saved = pickle.loads(restored.snapshot("g1"))
    assert {metric: blob for metric, _, blob, *_ in saved[-1]} == {"lel": None, "co": None}
    assert pickle.dumps(saved[:-1]) == pickle.dumps(rest[:-1])  # bytes: nan != nan
