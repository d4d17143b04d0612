"""Streaming anomaly detectors: each one's own behaviour, the filters, and detect-csv."""

from __future__ import annotations

import csv
import io
import math
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from detectors.anomaly import (
    DETECTORS,
    EWMAScore,
    FlatForest,
    IsolationForestDetector,
    NoveltyEnsemble,
    QuantileFilter,
    RobustZScore,
    SeasonalBaseline,
    ThresholdFilter,
    make_detector,
)
from detectors.anomaly.ensemble import NAB_THRESHOLD
from detectors.anomaly.novelty_views import RangeNovelty, SlotBaseline
from detectors.anomaly.sequence import RecentRank, TransitionSurprise
from detectors.csv_scoring import parse_timestamp, score_csv
from shouwang.cli import main


def feed(detector: object, values: list[float], start_ts: float = 0.0,
         step_s: float = 300.0) -> list[float]:
    scores = []
    for i, value in enumerate(values):
        x = {"ts": start_ts + i * step_s, "value": value}
        scores.append(detector.score_one(x))  # type: ignore[attr-defined]
        detector.learn_one(x)  # type: ignore[attr-defined]
    return scores


def gauss(n: int, seed: int, mu: float = 0.0, sigma: float = 1.0) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(mu, sigma) for _ in range(n)]


def test_robust_z_ignores_an_earlier_spike_that_inflates_ewma() -> None:
    values = gauss(200, seed=1)
    values[150] = 400.0  # one wild reading shortly before the test point
    robust = RobustZScore(window=100)
    ewma = EWMAScore(alpha=0.05)
    feed(robust, values)
    feed(ewma, values)
    # A 6-sigma reading: the median/MAD baseline still sees it, the inflated variance hides it.
    assert robust.score_one({"value": 6.0}) > 0.5
    assert ewma.score_one({"value": 6.0}) < robust.score_one({"value": 6.0})


def test_robust_z_on_a_flat_series_scores_the_first_move_high() -> None:
    detector = RobustZScore(grace_period=10)
    feed(detector, [5.0] * 50)
    assert detector.score_one({"value": 5.0}) == 0.0
    assert detector.score_one({"value": 6.0}) > 0.9


def test_ewma_follows_a_level_shift() -> None:
    detector = EWMAScore(alpha=0.05)
    scores = feed(detector, gauss(300, seed=2) + gauss(300, seed=3, mu=10.0))
    assert scores[300] > 0.6
    assert scores[-1] < 0.4  # the new level became normal


def test_seasonal_baseline_judges_by_time_of_day() -> None:
    hour = 3600.0
    detector = SeasonalBaseline(buckets=24, grace_period=3)
    rng = random.Random(4)
    for i in range(24 * 10):  # evenings high, nights low
        value = (30.0 if 18 <= i % 24 < 22 else 5.0) + rng.gauss(0, 0.5)
        detector.learn_one({"ts": i * hour, "value": value})
    day = 24 * 10 * hour
    assert detector.score_one({"ts": day + 19 * hour, "value": 30.0}) < 0.3
    assert detector.score_one({"ts": day + 3 * hour, "value": 30.0}) > 0.9
    assert detector.score_one({"value": 30.0}) == 0.0  # no time, no season


def test_flat_forest_equals_sklearn_score_samples() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(size=(600, 4))
    forest = IsolationForest(n_estimators=40, random_state=3).fit(train)
    probe = rng.normal(scale=3.0, size=(400, 4))
    assert np.allclose(FlatForest.from_sklearn(forest).score(probe),
                       -forest.score_samples(probe), atol=1e-12)


def test_isolation_forest_refits_and_flags_an_odd_shape() -> None:
    detector = IsolationForestDetector(window=300, refit_every=100, grace_period=200,
                                       n_estimators=30, seed=1)
    wave = [math.sin(i / 5.0) + 0.05 * r for i, r in enumerate(gauss(600, seed=5))]
    scores = feed(detector, wave)
    assert scores[199] == 0.0 and scores[250] > 0.0
    assert detector._state()["fits"] == 5  # first fit at 200, then every 100 values
    assert detector.score_one({"value": 1.0}) < detector.score_one({"value": 6.0})


def test_threshold_filter_protects_the_model_from_flagged_points() -> None:
    protected = ThresholdFilter(RobustZScore(window=50, grace_period=10), threshold=0.6)
    exposed = ThresholdFilter(RobustZScore(window=50, grace_period=10), threshold=0.6,
                              protect_anomaly_detector=False)
    baseline = gauss(60, seed=6)
    for flt in (protected, exposed):
        feed(flt, baseline + [50.0] * 30)  # a sustained excursion
    assert protected.classify(protected.score_one({"value": 50.0}))
    assert not exposed.classify(exposed.score_one({"value": 50.0}))  # it learnt 50 is normal


def test_quantile_filter_adapts_to_the_stream_and_waits_for_its_grace() -> None:
    flt = QuantileFilter(EWMAScore(alpha=0.1, grace_period=10), q=0.95, grace_period=100)
    feed(flt, gauss(50, seed=7))
    assert not flt.classify(1.0)  # still warming up
    feed(flt, gauss(400, seed=8))
    flagged = [flt.classify(s) for s in feed(flt, gauss(2000, seed=9))]
    assert 0.01 < sum(flagged) / len(flagged) < 0.12


def test_novelty_ensemble_reports_an_incident_once() -> None:
    values = gauss(1500, seed=10, mu=20.0)
    values[1200:1260] = [v + 12.0 for v in values[1200:1260]]  # an hour-long excursion
    scores = feed(NoveltyEnsemble(), values)
    assert scores[1200] > max(scores[300:1200])
    alarms = [i for i, s in enumerate(scores) if s > 0.6 and i >= 1200]
    assert alarms and alarms[0] == 1200
    assert len(alarms) < 10  # later readings of the same excursion are no longer novel


def test_range_novelty_ignores_a_spike_and_sees_a_new_level() -> None:
    history = gauss(600, seed=13)
    spiked, shifted = RangeNovelty(width=10, size=500), RangeNovelty(width=10, size=500)
    for value in history:
        spiked.learn(value)
        shifted.learn(value)
    for value in gauss(9, seed=14, mu=20.0):  # the stream settles 20 sigma higher
        shifted.learn(value)
    # One wild value: the other nine recent values are where the stream has been.
    assert spiked.gap(40.0) < 0.01
    # All ten recent values far from everything before them, over the range seen.
    assert shifted.gap(20.0) > 0.5


def test_slot_baseline_pools_the_spread_over_slots() -> None:
    hour = 3600.0
    pooled = SlotBaseline(86_400.0, buckets=24, memory=14, pool=1.0, min_scale=1e-3)
    alone = SlotBaseline(86_400.0, buckets=24, memory=14, pool=0.0, min_scale=1e-3)
    rng = random.Random(15)
    for i in range(24 * 14):
        # Hour 3 happens to read the same value every day; the other hours vary.
        value = 10.0 if i % 24 == 3 else 10.0 + rng.gauss(0.0, 1.0)
        pooled.learn(i * hour, value)
        alone.learn(i * hour, value)
    at_three = 24 * 14 * hour + 3 * hour
    # Its own MAD of 0 makes half a unit look extreme; the pooled spread does not.
    assert alone.z(at_three, 10.5) > 10.0
    assert pooled.z(at_three, 10.5) < 1.0
    assert pooled.z(at_three, 16.0) > 3.0
    assert pooled.z(None, 16.0) == 0.0  # no time, no slot


def test_novelty_ensemble_treats_moves_within_news_z_as_noise() -> None:
    def after_calm(news_z: float, value: float) -> float:
        rng = random.Random(8)
        detector = NoveltyEnsemble(news_z=news_z)
        feed(detector, [10.0 + rng.uniform(-1.0, 1.0) for _ in range(1500)])
        return detector.score_one({"ts": 1500 * 300.0, "value": value})

    # Uniform noise never strays 2 sigma: without the floor 2.6 sigma is news.
    assert after_calm(0.0, 11.5) > NAB_THRESHOLD > after_calm(3.0, 11.5)
    assert after_calm(3.0, 14.0) > NAB_THRESHOLD  # 7 sigma is news either way


def test_transition_surprise_learns_which_value_comes_next() -> None:
    model = TransitionSurprise(bins=12, order=1)
    assert model.surprise(0.0) is None  # no bin edges yet
    for _ in range(300):  # three lows, then a high, over and over
        for value in (0.0, 0.0, 0.0, 10.0):
            model.learn(value)
    # Last learnt: a high. A low always follows one; another high never has.
    after_high = model.surprise(0.0), model.surprise(10.0)
    assert after_high[0] is not None and after_high[1] is not None
    assert after_high[0] < 0.1 < 2.0 < after_high[1]
    model.learn(0.0)
    in_turn = model.surprise(10.0)  # a high after a low: seen a third of the time
    assert in_turn is not None and after_high[0] < in_turn < after_high[1] - 1.0
    # A value beyond everything in the window has a bin of its own: never seen, surprising.
    beyond = model.surprise(50.0)
    assert beyond is not None and beyond > after_high[1]


def test_recent_rank_counts_only_its_window() -> None:
    ranks = RecentRank(10)
    assert ranks.rank(5.0) == 0.0
    for value in range(100):
        ranks.push(float(value))
    assert len(ranks) == 10  # 90..99 remain
    assert ranks.rank(95.0) == 0.5
    assert ranks.rank(10.0) == 0.0
    assert ranks.rank(1000.0) == 1.0


def test_novelty_ensemble_order_nudge_is_bounded_and_can_be_turned_off() -> None:
    values = gauss(1500, seed=18, mu=20.0)
    values[1200:1230] = [v + 9.0 for v in values[1200:1230]]
    nudged = feed(NoveltyEnsemble(), values)
    plain = feed(NoveltyEnsemble(sequence_weight=0.0), values)
    weight = NoveltyEnsemble().sequence_weight
    assert nudged != plain
    for with_order, without in zip(nudged, plain, strict=True):
        # The factor 1 + w * (p**2 - 0.5) lies within 1 -+ w / 2.
        assert without * (1 - weight / 2) - 1e-12 <= with_order
        assert with_order <= min(without * (1 + weight / 2), 1.0) + 1e-12
    assert 1200 <= max(range(300, 1500), key=nudged.__getitem__) < 1230  # the excursion


class _AnomalyOnlyUnpickler(pickle.Unpickler):
    """As the engine loads detector state: the anomaly package's classes and deques only."""

    def find_class(self, module: str, name: str) -> type:
        if module.startswith("detectors.anomaly.") or (module, name) == ("collections",
                                                                          "deque"):
            found: type = super().find_class(module, name)
            return found
        raise pickle.UnpicklingError(f"{module}.{name}")


def test_novelty_ensemble_state_loads_without_numpy_objects() -> None:
    detector = NoveltyEnsemble()
    values = gauss(900, seed=16, mu=5.0)
    feed(detector, values)
    restored = _AnomalyOnlyUnpickler(io.BytesIO(pickle.dumps(detector))).load()
    probe = [{"ts": (900 + i) * 300.0, "value": v} for i, v in enumerate(gauss(50, seed=17))]
    assert feed(restored, [x["value"] for x in probe], start_ts=900 * 300.0) == \
        feed(detector, [x["value"] for x in probe], start_ts=900 * 300.0)
    assert pickle.dumps(restored) == pickle.dumps(detector)


def test_registry_builds_fresh_detectors_and_names_unknown_ones() -> None:
    assert "default" in DETECTORS
    first, second = make_detector("default"), make_detector("default")
    assert first is not second
    with pytest.raises(KeyError, match="robust_z"):
        make_detector("nope")


def test_parse_timestamp_formats() -> None:
    assert parse_timestamp("2014-04-01 00:05:00") == 1396310700.0
    assert parse_timestamp("2014-04-01T00:05:00Z") == 1396310700.0
    assert parse_timestamp("2014-04-01T08:05:00+08:00") == 1396310700.0
    assert parse_timestamp("1396310700") == 1396310700.0
    assert parse_timestamp("1396310700000") == 1396310700.0
    assert parse_timestamp("soon") is None


def _write_series(path: Path, n: int) -> None:
    rng = random.Random(12)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["timestamp", "value"])
        for i in range(n):
            value = 10 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 1)
            value += 25 if i == 1100 else 0
            minute = i * 5
            writer.writerow([f"2024-01-{1 + minute // 1440:02d} {minute // 60 % 24:02d}:"
                             f"{minute % 60:02d}:00", f"{value:.3f}"])


def _scores(path: Path) -> list[str]:
    with path.open(newline="") as fh:
        return [row["anomaly_score"] for row in csv.DictReader(fh)]


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_detect_csv_is_strictly_streaming(tmp_path: Path, name: str) -> None:
    full, cut = tmp_path / "full.csv", tmp_path / "cut.csv"
    _write_series(full, 1400)
    k = 1101  # the cut keeps the spike at row 1100 as its last row
    lines = full.read_text().splitlines(keepends=True)
    cut.write_text("".join(lines[: k + 1]))
    assert main(["detect-csv", "--detector", name, str(full), str(tmp_path / "a.csv")]) == 0
    assert main(["detect-csv", "--detector", name, str(cut), str(tmp_path / "b.csv")]) == 0
    full_scores, cut_scores = _scores(tmp_path / "a.csv"), _scores(tmp_path / "b.csv")
    assert len(full_scores) == 1400 and len(cut_scores) == k
    assert full_scores[:k] == cut_scores
    assert all(0.0 <= float(s) <= 1.0 for s in full_scores)
    # The spike (or, for views of change, the step back from it) is the top score.
    scores = [float(s) for s in full_scores]
    assert max(scores[1100:1102]) == max(scores[400:])


def test_detect_csv_keeps_columns_and_rejects_a_bad_header(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("timestamp,value,note\n2024-01-01 00:00:00,1.5,a\n2024-01-01 00:05:00,,b\n")
    assert score_csv(make_detector("ewma"), src, tmp_path / "out.csv") == 2
    assert (tmp_path / "out.csv").read_text().splitlines() == [
        "timestamp,value,note,anomaly_score",
        "2024-01-01 00:00:00,1.5,a,0.000000",
        "2024-01-01 00:05:00,,b,0.000000",
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text("time,reading\n1,2\n")
    assert main(["detect-csv", str(bad), str(tmp_path / "x.csv")]) == 1


def test_detect_csv_help_lists_every_detector(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["detect-csv", "--help"])
    out = capsys.readouterr().out
    for name in DETECTORS:
        assert name in out
