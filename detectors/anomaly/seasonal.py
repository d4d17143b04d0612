"""Seasonal baseline: what is normal at this time of day (or of week)."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from detectors.anomaly.base import Detector, feature, squash

__all__ = ["SeasonalBaseline"]

_MAD_TO_SIGMA = 1.4826


class SeasonalBaseline(Detector):
    """Score a value against the recent values seen in the same time-of-day bucket.

    The period is cut into ``buckets`` equal slots; each keeps its last ``memory`` values
    and is scored with a robust z (median and MAD). A reading that is normal at 19:00
    (cooking CO, evening water use) can then be unusual at 03:00.

    Parameters
    ----------
    key
        The feature of ``x`` to watch.
    time_key
        The feature holding the reading time in epoch seconds (UTC).
    period_s
        Length of the season: 86 400 for a day, 604 800 for a week.
    buckets
        Slots per period.
    memory
        Values kept per slot.
    grace_period
        Values a slot must hold before it scores; 0.0 until then.
    half_z
        The robust z at which the score is 0.5.
    min_scale
        Floor of the spread, relative to ``1 + |median|``.

    Examples
    --------
    >>> import math, random
    >>> rng = random.Random(1)
    >>> detector = SeasonalBaseline(buckets=24, grace_period=3)
    >>> hour = 3600.0
    >>> for i in range(24 * 7):  # a week of hourly values with a daily cycle
    ...     x = {"ts": i * hour, "value": 10 * math.sin(2 * math.pi * i / 24) + rng.gauss(0, 0.3)}
    ...     detector.learn_one(x)
    >>> t = 24 * 7 * hour + 6 * hour  # 06:00, the daily peak
    >>> detector.score_one({"ts": t, "value": 10.0}) < 0.3
    True
    >>> detector.score_one({"ts": t, "value": -10.0}) > 0.8
    True
    """

    def __init__(self, key: str = "value", time_key: str = "ts", period_s: float = 86_400.0,
                 buckets: int = 24, memory: int = 30, grace_period: int = 3,
                 half_z: float = 4.0, min_scale: float = 1e-3) -> None:
        self.key = key
        self.time_key = time_key
        self.period_s = period_s
        self.buckets = buckets
        self.memory = memory
        self.grace_period = grace_period
        self.half_z = half_z
        self.min_scale = min_scale

    def _slot(self, x: dict[str, Any]) -> deque[float] | None:
        ts = feature(x, self.time_key)
        if ts is None:
            return None
        slots: dict[int, deque[float]] = self.__dict__.setdefault("_slots", {})
        index = int((ts % self.period_s) / self.period_s * self.buckets) % self.buckets
        slot = slots.get(index)
        if slot is None:
            slot = slots[index] = deque(maxlen=self.memory)
        return slot

    def learn_one(self, x: dict[str, Any]) -> None:
        value = feature(x, self.key)
        slot = self._slot(x)
        if value is not None and slot is not None:
            slot.append(value)

    def score_one(self, x: dict[str, Any]) -> float:
        value = feature(x, self.key)
        slot = self._slot(x)
        if value is None or slot is None or len(slot) < max(self.grace_period, 1):
            return 0.0
        arr = np.fromiter(slot, dtype=float, count=len(slot))
        median = float(np.median(arr))
        mad = float(np.median(np.abs(arr - median)))
        scale = max(_MAD_TO_SIGMA * mad, self.min_scale * (1.0 + abs(median)))
        return squash((value - median) / scale, self.half_z)
