"""One contract for every streaming anomaly detector (River's check_estimator idea).

Each detector must pickle and restore to the same state, clone to a fresh copy, be
deterministic, survive missing, malformed and new features, keep scores in [0, 1], and
beat random (ROC AUC > 0.5) on a labelled synthetic stream.
"""

from __future__ import annotations

import math
import pickle
import random
from collections.abc import Callable
from typing import Any

import pytest
from sklearn.metrics import roc_auc_score

from detectors.anomaly import (
    DETECTORS,
    Detector,
    EWMAScore,
    IsolationForestDetector,
    NoveltyEnsemble,
    QuantileFilter,
    RobustZScore,
    SeasonalBaseline,
    ThresholdFilter,
)

# Every class, default-constructed where the defaults are fast enough for a unit test.
FACTORIES: dict[str, Callable[[], Detector]] = {
    "RobustZScore": RobustZScore,
    "EWMAScore": EWMAScore,
    "SeasonalBaseline": SeasonalBaseline,
    "IsolationForestDetector": lambda: IsolationForestDetector(
        window=400, refit_every=200, grace_period=200, n_estimators=30, seed=3),
    "NoveltyEnsemble": NoveltyEnsemble,
    "ThresholdFilter": lambda: ThresholdFilter(RobustZScore(), threshold=0.6),
    "QuantileFilter": lambda: QuantileFilter(EWMAScore(), q=0.99),
    **{f"registry:{name}": factory for name, factory in DETECTORS.items()},
}

STEP_S = 300.0
WARM_UP = 400


def labelled_stream(seed: int = 42, n: int = 2400) -> tuple[list[dict[str, Any]], list[int]]:
    """A daily cycle plus noise every 5 minutes, with isolated spikes labelled 1."""
    rng = random.Random(seed)
    spikes = set(rng.sample(range(WARM_UP, n), 24))
    rows, labels = [], []
    for i in range(n):
        value = 50.0 + 10.0 * math.sin(2 * math.pi * i * STEP_S / 86_400) + rng.gauss(0, 1.0)
        if i in spikes:
            value += rng.choice((-1, 1)) * rng.uniform(8.0, 15.0)
        rows.append({"ts": 1_700_000_000.0 + i * STEP_S, "value": value})
        labels.append(int(i in spikes))
    return rows, labels


STREAM, LABELS = labelled_stream()


def run(detector: Detector, rows: list[dict[str, Any]]) -> list[float]:
    scores = []
    for x in rows:
        scores.append(detector.score_one(x))
        detector.learn_one(x)
    return scores


def test_every_detector_class_is_under_contract() -> None:
    import detectors.anomaly as package

    classes = {obj.__name__ for obj in vars(package).values()
               if isinstance(obj, type) and issubclass(obj, Detector) and obj is not Detector}
    assert classes <= set(FACTORIES)


@pytest.fixture(params=sorted(FACTORIES), name="make")
def make_fixture(request: pytest.FixtureRequest) -> Callable[[], Detector]:
    return FACTORIES[request.param]


def test_scores_are_in_unit_interval_and_zero_before_learning(
        make: Callable[[], Detector]) -> None:
    detector = make()
    assert detector.score_one(STREAM[0]) == 0.0
    scores = run(detector, STREAM[:1200])
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert any(s > 0.0 for s in scores), "never left its grace period"


def test_beats_random_on_labelled_stream(make: Callable[[], Detector]) -> None:
    scores = run(make(), STREAM)
    auc = roc_auc_score(LABELS[WARM_UP:], scores[WARM_UP:])
    assert auc > 0.5
    # Isolated 8-15 sigma spikes are easy: a detector near random here is broken.
    assert auc > 0.75, auc


def test_pickle_restores_the_same_state(make: Callable[[], Detector]) -> None:
    detector = make()
    run(detector, STREAM[:900])
    restored = pickle.loads(pickle.dumps(detector))
    assert run(restored, STREAM[900:1500]) == run(detector, STREAM[900:1500])


def test_clone_is_fresh_with_the_same_hyper_parameters(make: Callable[[], Detector]) -> None:
    trained = make()
    run(trained, STREAM[:900])
    clone = trained.clone()
    assert repr(clone) == repr(trained)
    assert run(clone, STREAM[:1200]) == run(make(), STREAM[:1200])


def test_deterministic(make: Callable[[], Detector]) -> None:
    assert run(make(), STREAM[:1500]) == run(make(), STREAM[:1500])


def test_missing_malformed_and_new_features(make: Callable[[], Detector]) -> None:
    detector = make()
    run(detector, STREAM[:800])
    odd: list[dict[str, Any]] = [
        {}, {"ts": STREAM[800]["ts"]}, {"value": None}, {"value": math.nan},
        {"value": "high"}, {"value": True}, {"ts": "yesterday", "value": 50.0},
        {**STREAM[800], "humidity": 80.0, "label": "kitchen"},
    ]
    for x in odd:
        score = detector.score_one(x)
        assert 0.0 <= score <= 1.0
        detector.learn_one(x)
    # A reading without a usable value is not learnt: the model is as if it never came.
    twin, clean = make(), make()
    run(twin, STREAM[:800])
    run(clean, STREAM[:800])
    for x in odd[:6]:
        twin.learn_one(x)
    assert run(twin, STREAM[801:1000]) == run(clean, STREAM[801:1000])
    assert all(0.0 <= s <= 1.0 for s in run(detector, STREAM[801:1000]))


def test_hyper_parameters_are_stored_as_given(make: Callable[[], Detector]) -> None:
    detector = make()
    params = detector._params()
    assert params, "a detector exposes its hyper-parameters"
    assert type(detector)(**params)._params() == params
