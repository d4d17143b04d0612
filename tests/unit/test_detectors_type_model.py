"""Per-type IsolationForest: fitted on history, stored without pickle, scored in batches."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest

from config.settings import DetectorSettings, TrainingSettings
from detectors import DetectorEngine
from detectors.anomaly.type_forest import TypeForest, feature_metrics
from detectors.typed import MODEL_HAZARD
from shouwang.catalog import DeviceType
from shouwang.models import Detection, DetectionKind, Device, Reading
from simulators.devices import DeviceSignal

EPOCH = 1_764_086_400.0 - 8 * 3600.0  # midnight in UTC+8
STEP_S = 60.0


def _history(devices: int, hours: float, seed: int, start: float = EPOCH
             ) -> tuple[np.ndarray, np.ndarray]:
    """(values, ts) of simulated gas kitchens: noise, cooking CO at meal times."""
    rows, stamps = [], []
    for n in range(devices):
        signal = DeviceSignal(Device(id=f"h{seed}-{n}", type=DeviceType.GAS, site="s",
                                     report_interval_s=STEP_S), seed)
        for i in range(int(hours * 3600 / STEP_S)):
            sample = signal.sample(t_s=i * STEP_S, epoch_s=start + i * STEP_S)
            rows.append([sample[m] for m in feature_metrics(DeviceType.GAS)])
            stamps.append(start + i * STEP_S)
    return np.asarray(rows), np.asarray(stamps)


@pytest.fixture(scope="module")
def model() -> TypeForest:
    values, ts = _history(devices=8, hours=48.0, seed=1)
    return TypeForest.fit(DeviceType.GAS, values, ts, version=3, seed=0)


def _engine(model: TypeForest | None, devices: dict[str, Device],
            **training: object) -> DetectorEngine:
    settings = DetectorSettings(training=TrainingSettings(**training))  # type: ignore[arg-type]
    engine = DetectorEngine(settings, devices, clock=lambda: EPOCH, started_at=EPOCH)
    if model is not None:
        engine.install_models([model])
    return engine


def _readings(device_id: str, values: np.ndarray, ts: np.ndarray) -> list[Reading]:
    metrics = feature_metrics(DeviceType.GAS)
    return [Reading(ts=float(t), device_id=device_id, site="s", metric=m, value=float(v))
            for row, t in zip(values, ts, strict=True) for m, v in zip(metrics, row,
                                                                        strict=True)]


def _episodes(found: list[Detection]) -> list[tuple[str, bool, float]]:
    return [(d.device_id, d.firing, d.reading_ts) for d in found if d.hazard == MODEL_HAZARD]


def test_the_stored_form_loads_to_the_same_scores_without_pickle(model: TypeForest) -> None:
    values, ts = _history(devices=1, hours=6.0, seed=9)
    again = TypeForest.from_bytes(model.to_bytes(), model.params())

    assert np.array_equal(again.score(values, ts), model.score(values, ts))
    assert again.version == 3 and again.metrics == ("lel", "co")
    assert b"pickle" not in model.to_bytes() and model.to_bytes()[:2] == b"PK"  # a zip of .npy


def test_a_stored_model_that_is_not_plain_arrays_is_refused(model: TypeForest) -> None:
    class Evil:
        def __reduce__(self) -> tuple[object, ...]:
            return (exec, ("raise SystemExit('ran code')",))

    with pytest.raises(ValueError, match="unusable"):
        TypeForest.from_bytes(pickle.dumps(Evil()), model.params())
    # An .npz holding an object array (a pickle inside) is refused by numpy itself.
    buffer = io.BytesIO()
    arrays = dict(np.load(io.BytesIO(model.to_bytes())))
    arrays["center"] = np.array([Evil()], dtype=object)
    np.savez(buffer, **arrays)
    with pytest.raises(ValueError):
        TypeForest.from_bytes(buffer.getvalue(), model.params())
    # Arrays that do not fit together (a node pointing outside its tree) are refused.
    arrays = dict(np.load(io.BytesIO(model.to_bytes())))
    arrays["left"] = arrays["left"] + 10_000
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with pytest.raises(ValueError, match="do not fit"):
        TypeForest.from_bytes(buffer.getvalue(), model.params())
    with pytest.raises(ValueError, match="catalogue"):
        TypeForest.from_bytes(model.to_bytes(), {**model.params(), "metrics": ["lel"]})


def test_ordinary_days_stay_quiet_and_an_odd_combination_is_one_episode(
        model: TypeForest) -> None:
    devices = {f"g{i}": Device(id=f"g{i}", type=DeviceType.GAS, site="s") for i in range(4)}
    engine = _engine(model, devices)
    day = EPOCH + 3 * 86400.0
    quiet: list[Detection] = []
    for i, device_id in enumerate(devices):
        values, ts = _history(devices=1, hours=24.0, seed=20 + i, start=day)
        quiet += engine.process(_readings(device_id, values, ts))
    # Four unseen kitchens for a whole day, meals included: no episode.
    assert _episodes(quiet) == []

    # 3 a.m., clean air but 25 ppm CO (under level 1, 50 ppm): a combination never seen.
    night = day + 86400.0 + 3 * 3600.0
    odd = np.array([[0.5, 25.0]] * 5 + [[0.5, 1.2]] * 12)
    stamps = night + STEP_S * np.arange(len(odd))
    found = engine.process(_readings("g0", odd, stamps))

    assert _episodes(found) == [("g0", True, stamps[2]), ("g0", False, stamps[14])]
    first = next(d for d in found if d.hazard == MODEL_HAZARD)
    assert first.kind is DetectionKind.ANOMALY and first.metric == "co"
    assert "模型 v3" in first.message
    assert engine.model_versions() == {"gas": 3}


def test_one_odd_message_is_not_an_episode_and_batches_score_like_single_messages(
        model: TypeForest) -> None:
    devices = {"g0": Device(id="g0", type=DeviceType.GAS, site="s")}
    rows = np.array([[0.5, 1.2], [0.5, 1.3], [0.5, 30.0], [0.6, 1.2]] + [[0.5, 25.0]] * 4
                    + [[0.5, 1.0]] * 12)
    stamps = EPOCH + 3 * 3600.0 + STEP_S * np.arange(len(rows))
    stream = _readings("g0", rows, stamps)

    batched = _engine(model, devices).process(stream)
    single = _engine(model, devices)
    one_by_one = [d for i in range(0, len(stream), 2) for d in single.process(stream[i:i + 2])]

    assert _episodes(batched) == _episodes(one_by_one) == [
        ("g0", True, stamps[6]), ("g0", False, stamps[17])]
    assert _episodes(_engine(model, devices, confirm=1).process(stream))[0] == (
        "g0", True, stamps[2])


def test_without_a_model_nothing_is_scored_and_the_episode_is_in_the_snapshot(
        model: TypeForest) -> None:
    devices = {"g0": Device(id="g0", type=DeviceType.GAS, site="s")}
    rows = np.array([[0.5, 25.0]] * 4 + [[0.5, 1.0]] * 12)
    stamps = EPOCH + 3 * 3600.0 + STEP_S * np.arange(len(rows))
    stream = _readings("g0", rows, stamps)
    assert _episodes(_engine(None, devices).process(stream)) == []

    for cut in (4, 8, 20):
        whole = _engine(model, devices)
        whole.process(stream[:cut])
        expected = whole.process(stream[cut:])
        first = _engine(model, devices)
        first.process(stream[:cut])
        second = _engine(model, devices)
        assert second.restore("g0", first.snapshot("g0"))
        assert second.model_firing("g0") == first.model_firing("g0")
        assert _episodes(second.process(stream[cut:])) == _episodes(expected)
