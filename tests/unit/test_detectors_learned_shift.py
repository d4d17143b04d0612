"""A level shift that lasts becomes the new normal: the episode closes and the baseline moves."""

from __future__ import annotations

import pickle
import random

import pytest
from pydantic import ValidationError

from config.settings import AnomalySettings, DetectorSettings
from detectors import DetectorEngine
from shouwang.catalog import DeviceType
from shouwang.models import Detection, DetectionKind, Device, Reading

NOW = 1_764_120_000.0
STEP_S = 30.0
DEVICES = {"k1": Device(id="k1", type=DeviceType.SMOKE, site="s1")}


def _engine(**anomaly: object) -> DetectorEngine:
    settings = DetectorSettings(anomaly=AnomalySettings(**anomaly))  # type: ignore[arg-type]
    return DetectorEngine(settings, DEVICES, clock=lambda: NOW, started_at=NOW)


def _stream(level: object, samples: int, seed: int = 5) -> list[Reading]:
    """Room temperature of k1: ``level(i)`` plus 0.1 °C of noise, every 30 s."""
    rng = random.Random(seed)
    return [Reading(ts=NOW + STEP_S * i, device_id="k1", site="s1", metric="temperature",
                    value=round(level(i) + rng.gauss(0.0, 0.1), 2),  # type: ignore[operator]
                    seq=i, received_at=NOW + STEP_S * i) for i in range(samples)]


def _episodes(found: list[Detection]) -> list[tuple[bool, int]]:
    return [(d.firing, round((d.reading_ts - NOW) / STEP_S)) for d in found
            if d.kind is DetectionKind.ANOMALY]


def _moved(i: int) -> float:
    """Four hours at 22 °C, then the heater by the sensor: 30 °C from then on."""
    return 30.0 if i >= 480 else 22.0


def test_a_lasting_shift_closes_its_episode_and_is_learnt() -> None:
    found = _engine().process(_stream(_moved, 1200))

    # Opens on the jump, closes after adopt_after (120) readings in the new regime,
    # and six more hours at 30 °C raise nothing.
    assert _episodes(found) == [(True, 480), (False, 599)]
    closing = [d for d in found if d.kind is DetectionKind.ANOMALY][-1]
    assert "已适应新水平" in closing.message and "120" in closing.message


def test_after_adopting_the_new_level_a_return_is_itself_a_change() -> None:
    def back(i: int) -> float:
        return 30.0 if 480 <= i < 900 else 22.0

    assert _episodes(_engine().process(_stream(back, 1000))) == [
        (True, 480), (False, 599), (True, 900)]


def test_adoption_can_be_switched_off_and_short_episodes_are_not_adopted() -> None:
    # 0 = never: the protected filter keeps flagging the new level for hours.
    assert _episodes(_engine(adopt_after=0).process(_stream(_moved, 1200))) == [(True, 480)]

    def bump(i: int) -> float:  # 40 minutes: shorter than adopt_after
        return 30.0 if 480 <= i < 560 else 22.0

    assert _episodes(_engine().process(_stream(bump, 700))) == [(True, 480), (False, 569)]


@pytest.mark.parametrize("cut", [500, 598, 600, 700])
def test_the_episode_length_survives_a_snapshot(cut: int) -> None:
    stream = _stream(_moved, 1000)
    whole = _engine()
    whole.process(stream[:cut])
    expected = whole.process(stream[cut:])

    first = _engine()
    first.process(stream[:cut])
    second = _engine()
    assert second.restore("k1", first.snapshot("k1"))

    assert _episodes(second.process(stream[cut:])) == _episodes(expected)
    assert second.snapshot("k1") == whole.snapshot("k1")


def test_an_older_snapshot_without_the_length_restores() -> None:
    engine = _engine()
    engine.process(_stream(_moved, 520))
    version, *rest = pickle.loads(engine.snapshot("k1"))
    rest[-1] = tuple(item[:3] for item in rest[-1])  # as saved before lengths existed
    restored = _engine()

    assert restored.restore("k1", pickle.dumps((version, *rest)))
    assert restored.anomaly_firing("k1") == frozenset({"temperature_anomaly"})
    # Counted afresh from the restore: adopted 120 readings later, not earlier.
    later = restored.process(_stream(_moved, 700)[520:])
    assert _episodes(later) == [(False, 639)]


def test_adopt_after_is_validated() -> None:
    with pytest.raises(ValidationError, match="adopt_after"):
        AnomalySettings(adopt_after=-1)
