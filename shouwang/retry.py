"""One retry loop for durable writes: jittered exponential backoff, logged once."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["retry_until_done"]

T = TypeVar("T")

log = logging.getLogger(__name__)


async def retry_until_done(action: Callable[[], Awaitable[T]], stop: asyncio.Event, *,
                              what: str, first_delay_s: float = 0.5,
                              max_delay_s: float = 5.0) -> T:
    """Run ``action`` until it succeeds; the caller keeps its data meanwhile.

    Gives up (re-raising the last error) only when ``stop`` is set, so shutdown is
    not held hostage by a dead dependency. The wait is capped at a few seconds: a
    dependency that comes back is used again at once, and a retry costs little.
    """
    delay = first_delay_s
    failures = 0
    while True:
        try:
            result = await action()
        except Exception as err:  # any failure of the dependency: back off and try again
            failures += 1
            if failures == 1:
                log.error("%s failed, retrying with backoff: %s", what, err)
            if stop.is_set():
                raise
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, max_delay_s)
            continue
        if failures:
            log.warning("%s recovered after %d failed attempts", what, failures)
        return result
