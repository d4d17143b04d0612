"""The login rate limit: failed attempts counted per client, per name and client, per name."""

from __future__ import annotations

from collections import OrderedDict, deque

__all__ = ["LoginLimiter"]

_MAX_TRACKED = 10_000  # keys kept; the oldest go first, so memory stays bounded


class LoginLimiter:
    """Failed logins allowed per window: ``attempts`` per client address and per name from
    one address, ``name_attempts`` per name from all addresses together.

    Why three counts: one address guessing is stopped after ``attempts`` whatever names it
    tries, and cannot lock a name's owner out (the owner logs in from another address);
    guessing one name from many addresses is stopped by the larger per-name count.

    >>> limiter = LoginLimiter(attempts=2, name_attempts=3, window_s=60.0)
    >>> for _ in range(2):
    ...     limiter.failed("duty", "203.0.113.9", now=0.0)
    >>> limiter.retry_after("duty", "203.0.113.9", now=1.0)  # that address waits
    59.0
    >>> limiter.retry_after("duty", "198.51.100.7", now=1.0)  # the owner does not
    0.0
    >>> limiter.failed("duty", "192.0.2.4", now=2.0)  # a third address: the name waits
    >>> limiter.retry_after("duty", "198.51.100.7", now=3.0)
    57.0
    """

    def __init__(self, *, attempts: int, name_attempts: int, window_s: float) -> None:
        self._window_s = window_s
        self._allowed = {"addr": attempts, "pair": attempts, "name": name_attempts}
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    @staticmethod
    def _keys(name: str, address: str) -> dict[str, str]:
        name = name.casefold()
        return {"addr": f"addr:{address}", "pair": f"pair:{address}:{name}",
                "name": f"name:{name}"}

    def retry_after(self, name: str, address: str, now: float) -> float:
        """Seconds until this name may be tried from this address; 0 when it may now."""
        wait = 0.0
        for kind, key in self._keys(name, address).items():
            failures = self._failures.get(key)
            if failures is None:
                continue
            while failures and failures[0] <= now - self._window_s:
                failures.popleft()
            if len(failures) >= self._allowed[kind]:
                wait = max(wait, failures[0] + self._window_s - now)
        return wait

    def failed(self, name: str, address: str, now: float) -> None:
        for kind, key in self._keys(name, address).items():
            failures = self._failures.setdefault(key, deque(maxlen=self._allowed[kind]))
            failures.append(now)
            self._failures.move_to_end(key)
        while len(self._failures) > _MAX_TRACKED:
            self._failures.popitem(last=False)

    def succeeded(self, name: str, address: str) -> None:
        """The right password from this address: its own guesses at the name are forgiven."""
        self._failures.pop(self._keys(name, address)["pair"], None)
