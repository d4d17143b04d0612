"""The general-purpose default: several views of the stream, each judged against its own past.

Why a ratio to the recent maximum: one fixed threshold has to serve every stream (a quiet
temperature, a bursty CPU, a daily-cycling taxi count). A raw z-score means different
things on each. "More surprising than anything this view has seen in the last N values"
means the same everywhere; it also reports an incident once, because the incident itself
becomes the maximum that later values must beat.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from detectors.anomaly.base import Detector, feature
from detectors.anomaly.seasonal import SeasonalBaseline

__all__ = ["NoveltyEnsemble"]

# Values the EWMA views learn before their deviations count: the first few variances
# are near zero and would set a maximum nothing later could beat.
_VIEW_WARM_UP = 30


class _RollingMax:
    """Maximum of the last ``size`` values in O(1) amortised (monotonic queue)."""

    __slots__ = ("count", "queue", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.count = 0
        self.queue: deque[tuple[int, float]] = deque()

    def push(self, value: float) -> None:
        while self.queue and self.queue[-1][1] <= value:
            self.queue.pop()
        self.queue.append((self.count, value))
        self.count += 1
        while self.queue[0][0] <= self.count - 1 - self.size:
            self.queue.popleft()

    def max(self) -> float:
        return self.queue[0][1] if self.queue else 0.0

    def __getstate__(self) -> tuple[int, int, deque[tuple[int, float]]]:
        return self.size, self.count, self.queue

    def __setstate__(self, state: tuple[int, int, deque[tuple[int, float]]]) -> None:
        self.size, self.count, self.queue = state


class _Ewma:
    """Exponentially weighted mean and variance; ``z`` is the distance in weighted sigmas."""

    __slots__ = ("alpha", "mean", "n", "var")

    def __init__(self, alpha: float) -> None:
        self.alpha, self.mean, self.var, self.n = alpha, 0.0, 0.0, 0

    def z(self, value: float, min_std: float) -> float:
        std = max(math.sqrt(self.var), min_std * (1.0 + abs(self.mean)))
        return abs(value - self.mean) / std

    def learn(self, value: float) -> None:
        if self.n == 0:
            self.mean = value
        else:
            delta = value - self.mean
            self.mean += self.alpha * delta
            self.var = (1.0 - self.alpha) * (self.var + self.alpha * delta * delta)
        self.n += 1

    def __getstate__(self) -> tuple[float, float, float, int]:
        return self.alpha, self.mean, self.var, self.n

    def __setstate__(self, state: tuple[float, float, float, int]) -> None:
        self.alpha, self.mean, self.var, self.n = state


class NoveltyEnsemble(Detector):
    """Level, jump, drift and time-of-day views, each scored against its own recent maximum.

    Four views give each value a deviation z: a slow EWMA (``slow_alpha``: the value
    against the long-run level and spread), a fast EWMA (``fast_alpha``: a sudden move
    away from the last hours), a drift view (a smoothed level, ``drift_alpha``, against the
    slow level and spread: a sustained shift too small to see in single values) and a
    seasonal baseline (the robust z within its hour of the day). For each view the ratio
    ``r = z / max(z over the last memory values)`` says how much more surprising this value
    is than anything that view saw recently; the score is the largest ``r / (r + 1)``, so
    0.5 means "as surprising as the recent worst" and a new, bigger surprise scores higher.
    On the NAB development subset (bench/nab.py) the best single threshold is about 0.54.

    Parameters
    ----------
    key
        The feature of ``x`` to watch.
    time_key
        The feature with the time in epoch seconds, for the seasonal view (it is skipped
        when absent).
    memory
        Values each view's recent maximum spans.
    grace_period
        Values to learn before scoring; 0.0 until then.
    slow_alpha, fast_alpha
        Weights of the newest value in the slow and fast EWMA views.
    drift_alpha
        Weight of the newest value in the smoothed level of the drift view.
    refractory, damping
        A score no higher than one of the last ``refractory`` scores is multiplied by
        ``damping``: the views that see an incident a few values later stay quiet.
    season_buckets, season_memory
        Time-of-day slots per day, and values kept per slot.
    min_scale
        Floor of every spread, relative to ``1 + |level|``.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(11)
    >>> detector = NoveltyEnsemble()
    >>> scores = []
    >>> for i in range(800):  # 5-minute readings; the level jumps by 15 sigma at i = 700
    ...     x = {"ts": i * 300.0, "value": rng.gauss(20.0, 1.0) + (15.0 if i >= 700 else 0.0)}
    ...     scores.append(detector.score_one(x))
    ...     detector.learn_one(x)
    >>> max(scores[300:700]) < 0.6 < scores[700]
    True
    >>> scores[:300] == [0.0] * 300  # grace period
    True
    """

    def __init__(self, key: str = "value", time_key: str = "ts", memory: int = 1000,
                 grace_period: int = 300, slow_alpha: float = 0.005, fast_alpha: float = 0.05,
                 drift_alpha: float = 0.01, refractory: int = 100, damping: float = 0.9,
                 season_buckets: int = 24, season_memory: int = 14,
                 min_scale: float = 1e-3) -> None:
        self.key = key
        self.time_key = time_key
        self.memory = memory
        self.grace_period = grace_period
        self.slow_alpha = slow_alpha
        self.fast_alpha = fast_alpha
        self.drift_alpha = drift_alpha
        self.refractory = refractory
        self.damping = damping
        self.season_buckets = season_buckets
        self.season_memory = season_memory
        self.min_scale = min_scale

    def _state(self) -> dict[str, Any]:
        state: dict[str, Any] | None = self.__dict__.get("_st")
        if state is None:
            state = self.__dict__["_st"] = {
                "slow": _Ewma(self.slow_alpha), "fast": _Ewma(self.fast_alpha),
                "drift": _Ewma(self.drift_alpha),
                "season": SeasonalBaseline(
                    key=self.key, time_key=self.time_key, buckets=self.season_buckets,
                    memory=self.season_memory, min_scale=self.min_scale),
                "maxima": [_RollingMax(self.memory) for _ in range(4)],
                "scores": _RollingMax(max(self.refractory, 1)), "seen": 0,
            }
        return state

    def _deviations(self, state: dict[str, Any], x: dict[str, Any],
                    value: float) -> tuple[float, float, float, float]:
        slow: _Ewma = state["slow"]
        if slow.n < _VIEW_WARM_UP:
            return 0.0, 0.0, 0.0, 0.0
        season: SeasonalBaseline = state["season"]
        s = season.score_one(x)  # squash(z, half_z), inverted back to z
        seasonal_z = season.half_z * s / max(1.0 - s, 1e-12)
        # Drift: where a smoothed level (including this value) stands in the slow spread.
        drift: _Ewma = state["drift"]
        smoothed = drift.mean + drift.alpha * (value - drift.mean)
        return (slow.z(value, self.min_scale), state["fast"].z(value, self.min_scale),
                seasonal_z, slow.z(smoothed, self.min_scale))

    def _novelty(self, state: dict[str, Any], x: dict[str, Any],
                 deviations: tuple[float, ...]) -> float:
        if state["seen"] < max(self.grace_period, 1):
            return 0.0
        best = 0.0
        for z, recent in zip(deviations, state["maxima"], strict=True):
            ratio = z / max(recent.max(), 1e-9)
            best = max(best, ratio / (ratio + 1.0))
        return best

    def score_one(self, x: dict[str, Any]) -> float:
        value = feature(x, self.key)
        state = self._state()
        if value is None:
            return 0.0
        deviations = self._deviations(state, x, value)
        score = self._novelty(state, x, deviations)
        # learn_one(x) usually follows with the same x and an unchanged state: reuse.
        state["last"] = (state["seen"], value, x.get(self.time_key), deviations, score)
        # Several views see the same incident a few values apart: report it once.
        if self.refractory > 0 and 0.0 < score <= state["scores"].max():
            return score * self.damping
        return score

    def learn_one(self, x: dict[str, Any]) -> None:
        value = feature(x, self.key)
        if value is None:
            return
        state = self._state()
        last = state.get("last")
        if last is not None and last[:3] == (state["seen"], value, x.get(self.time_key)):
            deviations, score = last[3], last[4]
        else:
            deviations = self._deviations(state, x, value)
            score = self._novelty(state, x, deviations)
        state["last"] = None
        if self.refractory > 0:
            state["scores"].push(score)
        for z, recent in zip(deviations, state["maxima"], strict=True):
            recent.push(z)
        state["slow"].learn(value)
        state["fast"].learn(value)
        state["drift"].learn(value)
        state["season"].learn_one(x)
        state["seen"] += 1
