"""Robust z-score: distance from the rolling median in units of the rolling MAD."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from detectors.anomaly.base import Detector, feature, squash

__all__ = ["RobustZScore"]

# MAD * 1.4826 estimates the standard deviation of normally distributed data.
_MAD_TO_SIGMA = 1.4826


class RobustZScore(Detector):
    """Score how far a value is from the median of the last ``window`` values.

    The spread is the median absolute deviation, so a few earlier spikes in the window
    neither move the centre nor inflate the scale (unlike a mean and standard deviation).

    Parameters
    ----------
    key
        The feature of ``x`` to watch.
    window
        How many recent values form the baseline.
    grace_period
        Values to learn before scoring; ``score_one`` returns 0.0 until then.
    half_z
        The robust z at which the score is 0.5.
    min_scale
        Floor of the spread, relative to ``1 + |median|``, so a flat series still gives
        a finite z when it finally moves.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(7)
    >>> detector = RobustZScore(window=50, grace_period=20)
    >>> for _ in range(100):
    ...     detector.learn_one({"value": rng.gauss(10.0, 1.0)})
    >>> detector.score_one({"value": 10.2}) < 0.2
    True
    >>> detector.score_one({"value": 25.0}) > 0.7
    True
    >>> RobustZScore().score_one({"value": 1.0})  # still in its grace period
    0.0
    """

    def __init__(self, key: str = "value", window: int = 300, grace_period: int = 30,
                 half_z: float = 4.0, min_scale: float = 1e-3) -> None:
        self.key = key
        self.window = window
        self.grace_period = grace_period
        self.half_z = half_z
        self.min_scale = min_scale

    def _values(self) -> deque[float]:
        values: deque[float] | None = self.__dict__.get("_recent")
        if values is None:
            values = self.__dict__["_recent"] = deque(maxlen=self.window)
        return values

    def learn_one(self, x: dict[str, Any]) -> None:
        value = feature(x, self.key)
        if value is not None:
            self._values().append(value)

    def z(self, value: float) -> float:
        """The robust z of ``value`` against the current window (0.0 while warming up)."""
        values = self._values()
        if len(values) < max(self.grace_period, 1):
            return 0.0
        arr = np.fromiter(values, dtype=float, count=len(values))
        median = float(np.median(arr))
        mad = float(np.median(np.abs(arr - median)))
        scale = max(_MAD_TO_SIGMA * mad, self.min_scale * (1.0 + abs(median)))
        return abs(value - median) / scale

    def score_one(self, x: dict[str, Any]) -> float:
        value = feature(x, self.key)
        if value is None:
            return 0.0
        return squash(self.z(value), self.half_z)
