"""EWMA: exponentially weighted mean and variance, scored as a z-score."""

from __future__ import annotations

import math
from typing import Any

from detectors.anomaly.base import Detector, feature, squash

__all__ = ["EWMAScore"]


class EWMAScore(Detector):
    """Score the distance from an exponentially weighted mean, in weighted standard deviations.

    Cheap (two floats of state) and quick to follow a slow drift; a step change scores
    high at once and fades as the mean catches up.

    Parameters
    ----------
    key
        The feature of ``x`` to watch.
    alpha
        Weight of the newest value, in (0, 1]; about ``2 / (alpha) - 1`` values of memory.
    grace_period
        Values to learn before scoring; ``score_one`` returns 0.0 until then.
    half_z
        The z at which the score is 0.5.
    min_std
        Floor of the standard deviation, relative to ``1 + |mean|``.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(3)
    >>> detector = EWMAScore(alpha=0.05, grace_period=20)
    >>> for _ in range(200):
    ...     detector.learn_one({"value": rng.gauss(5.0, 0.5)})
    >>> detector.score_one({"value": 5.1}) < 0.2
    True
    >>> detector.score_one({"value": 9.0}) > 0.6
    True
    """

    # One per device metric in the engine: slots keep it near 100 bytes plus two floats.
    __slots__ = ("_mean", "_n", "_var", "alpha", "grace_period", "half_z", "key", "min_std")

    def __init__(self, key: str = "value", alpha: float = 0.02, grace_period: int = 30,
                 half_z: float = 4.0, min_std: float = 1e-3) -> None:
        self.key = key
        self.alpha = alpha
        self.grace_period = grace_period
        self.half_z = half_z
        self.min_std = min_std
        # Slots have no class default; an empty model, not learnt state.
        self._n = 0
        self._mean = 0.0
        self._var = 0.0

    def learn_one(self, x: dict[str, Any]) -> None:
        value = feature(x, self.key)
        if value is None:
            return
        n = self._n
        if n == 0:
            self._mean, self._var = value, 0.0
        else:
            # West's incremental form: the variance uses the deviation from the old mean.
            delta = value - self._mean
            self._mean += self.alpha * delta
            self._var = (1.0 - self.alpha) * (self._var + self.alpha * delta * delta)
        self._n = n + 1

    def score_one(self, x: dict[str, Any]) -> float:
        value = feature(x, self.key)
        if value is None or self._n < max(self.grace_period, 1):
            return 0.0
        std = max(math.sqrt(self._var), self.min_std * (1.0 + abs(self._mean)))
        return squash((value - self._mean) / std, self.half_z)
