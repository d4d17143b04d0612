"""Deciding apart from scoring: turn a detector's score into "anomalous or not"."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from detectors.anomaly.base import AnomalyDetector, Detector

__all__ = ["QuantileFilter", "ThresholdFilter"]


class ThresholdFilter(Detector):
    """Flag a score at or above a fixed threshold.

    With ``protect_anomaly_detector`` (the default) a flagged point is not learnt, so one
    spike does not teach the model that spikes are normal.

    Parameters
    ----------
    detector
        The wrapped anomaly detector.
    threshold
        Scores at or above it are anomalous.
    protect_anomaly_detector
        Skip ``learn_one`` on points the filter flags.

    Examples
    --------
    >>> import random
    >>> from detectors.anomaly.robust_z import RobustZScore
    >>> rng = random.Random(2)
    >>> flt = ThresholdFilter(RobustZScore(window=50, grace_period=10), threshold=0.6)
    >>> for _ in range(60):
    ...     flt.learn_one({"value": rng.gauss(0.0, 1.0)})
    >>> flt.classify(flt.score_one({"value": 0.3})), flt.classify(flt.score_one({"value": 30.0}))
    (False, True)
    """

    __slots__ = ("detector", "protect_anomaly_detector", "threshold")

    def __init__(self, detector: AnomalyDetector, threshold: float = 0.5,
                 protect_anomaly_detector: bool = True) -> None:
        self.detector = detector
        self.threshold = threshold
        self.protect_anomaly_detector = protect_anomaly_detector

    def score_one(self, x: dict[str, Any]) -> float:
        return self.detector.score_one(x)

    def classify(self, score: float) -> bool:
        """True when ``score`` means anomalous."""
        return score >= self.threshold

    def learn_one(self, x: dict[str, Any]) -> None:
        if self.protect_anomaly_detector and self.classify(self.detector.score_one(x)):
            return
        self.detector.learn_one(x)

    def score_and_learn(self, x: dict[str, Any]) -> float:
        """``score_one`` then ``learn_one`` with one scoring pass (the stream's hot path)."""
        detector = self.detector
        score = detector.score_one(x)
        if not (self.protect_anomaly_detector and score >= self.threshold):
            detector.learn_one(x)
        return score


class QuantileFilter(Detector):
    """Flag a score above the ``q`` quantile of the last ``window`` scores.

    The threshold adapts to each stream's own score distribution, so one setting serves
    devices whose detectors score on different scales.

    Parameters
    ----------
    detector
        The wrapped anomaly detector.
    q
        Quantile of recent scores above which a score is anomalous.
    window
        Recent scores kept to estimate the quantile.
    grace_period
        Scores needed before anything is flagged.
    protect_anomaly_detector
        Skip ``learn_one`` on points the filter flags.

    Examples
    --------
    >>> import random
    >>> from detectors.anomaly.ewma import EWMAScore
    >>> rng = random.Random(4)
    >>> flt = QuantileFilter(EWMAScore(alpha=0.1, grace_period=10), q=0.98)
    >>> for _ in range(300):
    ...     flt.learn_one({"value": rng.gauss(0.0, 1.0)})
    >>> flt.classify(flt.score_one({"value": 0.1})), flt.classify(flt.score_one({"value": 9.0}))
    (False, True)
    """

    def __init__(self, detector: AnomalyDetector, q: float = 0.99, window: int = 1000,
                 grace_period: int = 100, protect_anomaly_detector: bool = True) -> None:
        self.detector = detector
        self.q = q
        self.window = window
        self.grace_period = grace_period
        self.protect_anomaly_detector = protect_anomaly_detector

    def _scores(self) -> deque[float]:
        scores: deque[float] | None = self.__dict__.get("_recent")
        if scores is None:
            scores = self.__dict__["_recent"] = deque(maxlen=self.window)
        return scores

    def score_one(self, x: dict[str, Any]) -> float:
        return self.detector.score_one(x)

    def classify(self, score: float) -> bool:
        """True when ``score`` is above the running quantile (never during warm-up)."""
        scores = self._scores()
        if len(scores) < max(self.grace_period, 1):
            return False
        return score > float(np.quantile(np.fromiter(scores, float, len(scores)), self.q))

    def learn_one(self, x: dict[str, Any]) -> None:
        score = self.detector.score_one(x)
        flagged = self.classify(score)
        self._scores().append(score)
        if self.protect_anomaly_detector and flagged:
            return
        self.detector.learn_one(x)
