"""The running statistics behind ``NoveltyEnsemble``'s views, each O(1) or one numpy pass.

Their pickled state holds only floats, tuples, dicts and deques (no numpy objects), so a
saved detector loads through the engine's restricted unpickler.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

__all__ = ["Ewma", "RangeNovelty", "RollingMax", "SlotBaseline"]

# MAD of a normal sample times this is its standard deviation.
_MAD_TO_SIGMA = 1.4826
# Values a slot must hold before it has a median worth judging against.
_SLOT_MIN_VALUES = 3
# Values learnt between refreshes of the pooled spread (a median over all slots).
_POOL_REFRESH = 50


class RollingMax:
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


class Ewma:
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


class RangeNovelty:
    """How far the last ``width`` values all lie from the ``size`` values before them.

    The gap of each recent value to its nearest earlier value, over the range seen so
    far; ``gap`` is the smallest of those. It is high only while the stream stays in a
    range it has not visited lately: one wild value does not raise it, a new regime does.
    """

    def __init__(self, width: int, size: int) -> None:
        self.width, self.size = width, size
        self.recent: deque[float] = deque(maxlen=width)
        self.past = np.zeros(size)
        self.stored = 0
        self.low, self.high = math.inf, -math.inf

    def gap(self, value: float) -> float:
        filled = min(self.stored, self.size)
        if filled <= self.width:
            return 0.0
        window = np.asarray([*list(self.recent)[1:], value], dtype=float)
        nearest = float(np.abs(self.past[:filled, None] - window[None, :]).min())
        return nearest / max(self.high - self.low, 1e-9)

    def learn(self, value: float) -> None:
        self.low, self.high = min(self.low, value), max(self.high, value)
        if len(self.recent) == self.width:
            # The oldest recent value leaves the window and becomes "earlier".
            self.past[self.stored % self.size] = self.recent[0]
            self.stored += 1
        self.recent.append(value)

    def __getstate__(self) -> tuple[object, ...]:
        filled = min(self.stored, self.size)
        return (self.width, self.size, self.recent, self.past[:filled].tolist(),
                self.stored, self.low, self.high)

    def __setstate__(self, state: tuple[object, ...]) -> None:
        width, size, recent, past, stored, low, high = state
        assert isinstance(width, int) and isinstance(size, int) and isinstance(stored, int)
        assert isinstance(recent, deque) and isinstance(past, list)
        assert isinstance(low, float) and isinstance(high, float)
        self.width, self.size, self.recent, self.stored = width, size, recent, stored
        self.low, self.high = low, high
        self.past = np.zeros(size)
        self.past[: len(past)] = past


class SlotBaseline:
    """Robust z of a value within its slot of a period (hour of the day, of the week).

    Each slot keeps its last ``memory`` values, so its median and MAD come from few of
    them; the spread used is at least ``pool`` times the median MAD over all slots, which
    keeps one slot's lucky small MAD from turning ordinary values into extreme z.
    """

    def __init__(self, period_s: float, buckets: int, memory: int, pool: float,
                 min_scale: float) -> None:
        self.period_s, self.buckets, self.memory = period_s, buckets, memory
        self.pool, self.min_scale = pool, min_scale
        self.slots: dict[int, deque[float]] = {}
        self.stats: dict[int, tuple[float, float]] = {}  # slot -> (median, MAD)
        self.pooled = 0.0
        self.learnt = 0

    def _slot(self, ts: float) -> int:
        return int((ts % self.period_s) / self.period_s * self.buckets) % self.buckets

    def z(self, ts: float | None, value: float) -> float:
        stat = None if ts is None else self.stats.get(self._slot(ts))
        if stat is None:
            return 0.0
        median, mad = stat
        spread = max(_MAD_TO_SIGMA * max(mad, self.pool * self.pooled),
                     self.min_scale * (1.0 + abs(median)))
        return abs(value - median) / spread

    def learn(self, ts: float | None, value: float) -> None:
        if ts is None:
            return
        index = self._slot(ts)
        values = self.slots.get(index)
        if values is None:
            values = self.slots[index] = deque(maxlen=self.memory)
        values.append(value)
        if len(values) >= _SLOT_MIN_VALUES:
            arr = np.fromiter(values, dtype=float, count=len(values))
            median = float(np.median(arr))
            self.stats[index] = (median, float(np.median(np.abs(arr - median))))
        self.learnt += 1
        if self.learnt % _POOL_REFRESH == 0 and self.stats:
            self.pooled = float(np.median([mad for _, mad in self.stats.values()]))
