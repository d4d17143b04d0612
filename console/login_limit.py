"""The login rate limit: failed attempts counted per name and per client address."""

from __future__ import annotations

from collections import OrderedDict, deque

__all__ = ["LoginLimiter"]

_MAX_TRACKED = 10_000  # keys kept; the oldest go first, so memory stays bounded


class LoginLimiter:
    """At most ``attempts`` failed logins per key (a name, a client address) per window."""

    def __init__(self, *, attempts: int, window_s: float) -> None:
        self._attempts = attempts
        self._window_s = window_s
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, keys: list[str], now: float) -> float:
        """Seconds until a login may be tried again; 0 when it may be tried now."""
        wait = 0.0
        for key in keys:
            failures = self._failures.get(key)
            if failures is None:
                continue
            while failures and failures[0] <= now - self._window_s:
                failures.popleft()
            if len(failures) >= self._attempts:
                wait = max(wait, failures[0] + self._window_s - now)
        return wait

    def failed(self, keys: list[str], now: float) -> None:
        for key in keys:
            failures = self._failures.setdefault(key, deque(maxlen=self._attempts))
            failures.append(now)
            self._failures.move_to_end(key)
        while len(self._failures) > _MAX_TRACKED:
            self._failures.popitem(last=False)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)
