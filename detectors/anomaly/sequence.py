"""How expected a value was after the values before it: quantile bins and their transitions.

``NoveltyEnsemble``'s views judge each value by its size; this judges the order. A spike
that recurs after the same lead-up stops being surprising once its transitions are
counted, and an ordinary-looking value arriving from an unusual predecessor is. Both
classes pickle to ints, floats, tuples, lists, dicts and deques only.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from typing import Any

__all__ = ["RecentRank", "TransitionSurprise"]

# Values learnt before the first bin edges; the model says nothing until then.
_FIRST_EDGES_AFTER = 100


class TransitionSurprise:
    """``-log P(bin of this value | bins of the last order values)``, learnt online.

    Values fall into ``bins`` quantile bins of the last ``window`` values (edges refreshed
    every ``refresh`` values so the counts keep their meaning), plus one bin below and
    one above everything in that window. Each context (the last 0..``order`` bins) counts
    the bins that followed it; the probability interpolates from the longest context
    seen down to the uniform one (Witten-Bell: a context that has been followed by many
    different bins trusts its own counts less). A context's counts are halved when they
    pass ``cap``, so old habits fade and memory stays bounded.
    """

    __slots__ = ("bins", "cap", "context", "counts", "edges", "learnt", "order", "recent",
                 "refresh", "totals")

    def __init__(self, bins: int = 12, order: int = 1, window: int = 2000,
                 refresh: int = 500, cap: float = 200.0) -> None:
        self.bins, self.order, self.refresh, self.cap = bins, order, refresh, cap
        self.recent: deque[float] = deque(maxlen=window)
        self.edges: list[float] = []
        self.learnt = 0
        self.context: deque[int] = deque(maxlen=order)
        self.counts: dict[tuple[int, ...], dict[int, float]] = {}
        self.totals: dict[tuple[int, ...], float] = {}

    def _bin(self, value: float) -> int:
        edges = self.edges
        if value < edges[0]:
            return 0
        if value > edges[-1]:
            return self.bins + 1
        return 1 + min(bisect.bisect_right(edges, value) - 1, self.bins - 1)

    def _contexts(self) -> list[tuple[int, ...]]:
        history = tuple(self.context)
        return [history[len(history) - k:] if k else () for k in range(len(history) + 1)]

    def surprise(self, value: float) -> float | None:
        """Nats of surprise at ``value`` coming next; ``None`` before the first edges."""
        if not self.edges:
            return None
        symbol = self._bin(value)
        probability = 1.0 / (self.bins + 2)
        for context in self._contexts():
            followers = self.counts.get(context)
            if not followers:
                break
            distinct = len(followers)
            probability = ((followers.get(symbol, 0.0) + distinct * probability)
                           / (self.totals[context] + distinct))
        return -math.log(probability)

    def learn(self, value: float) -> None:
        self.recent.append(value)
        self.learnt += 1
        if (not self.edges and self.learnt >= _FIRST_EDGES_AFTER) \
                or self.learnt % self.refresh == 0:
            ordered = sorted(self.recent)
            size = len(ordered)
            self.edges = [ordered[min(i * size // self.bins, size - 1)]
                          for i in range(self.bins)] + [ordered[-1]]
        if not self.edges:
            return
        symbol = self._bin(value)
        for context in self._contexts():
            followers = self.counts.setdefault(context, {})
            followers[symbol] = followers.get(symbol, 0.0) + 1.0
            total = self.totals.get(context, 0.0) + 1.0
            if total > self.cap:
                followers = {s: c / 2.0 for s, c in followers.items() if c / 2.0 >= 0.25}
                self.counts[context] = followers
                total = sum(followers.values())
            self.totals[context] = total
        self.context.append(symbol)

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.bins, self.order, self.refresh, self.cap, self.recent, self.edges,
                self.learnt, self.context, self.counts, self.totals)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        (self.bins, self.order, self.refresh, self.cap, self.recent, self.edges,
         self.learnt, self.context, self.counts, self.totals) = state


class RecentRank:
    """The fraction of the last ``size`` pushed values that lie below a given one."""

    __slots__ = ("ordered", "size", "window")

    def __init__(self, size: int) -> None:
        self.size = size
        self.window: deque[float] = deque()
        self.ordered: list[float] = []

    def __len__(self) -> int:
        return len(self.window)

    def rank(self, value: float) -> float:
        if not self.window:
            return 0.0
        return bisect.bisect_left(self.ordered, value) / len(self.window)

    def push(self, value: float) -> None:
        bisect.insort(self.ordered, value)
        self.window.append(value)
        if len(self.window) > self.size:
            del self.ordered[bisect.bisect_left(self.ordered, self.window.popleft())]

    def __getstate__(self) -> tuple[int, deque[float]]:
        # The sorted copy is rebuilt on load: saved state stays half the size.
        return self.size, self.window

    def __setstate__(self, state: tuple[int, deque[float]]) -> None:
        self.size, self.window = state
        self.ordered = sorted(self.window)
