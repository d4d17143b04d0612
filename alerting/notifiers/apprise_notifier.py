"""Sending through apprise: the only module that imports it.

Written against apprise 2.x (``AppriseResult``, the ``timeout`` argument). A fresh
``Apprise`` object per send keeps one plugin's built-in throttle (several seconds
between requests for many plugins) from delaying the next alert.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from urllib.parse import urlsplit

import apprise

from alerting.notifiers.base import NotifyError
from config.settings import Receiver

__all__ = ["AppriseNotifier", "InvalidReceiverUrl", "validate_urls"]

log = logging.getLogger(__name__)


class InvalidReceiverUrl(ValueError):
    """A receiver's apprise URL cannot be used; the message names the receiver and URL."""


def _shown(url: str) -> str:
    """A URL fit for logs: apprise's own privacy form, or scheme and host if it cannot parse.

    >>> _shown("nonsense://user:secret@host/x")
    'nonsense://host/…'
    """
    plugin = apprise.Apprise.instantiate(url)
    if plugin is not None:
        return str(plugin.url(privacy=True))  # type: ignore[no-untyped-call]  # apprise
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}/…" if parts.scheme else "(not a URL)"


def validate_urls(receivers: Sequence[Receiver]) -> None:
    """Raise ``InvalidReceiverUrl`` listing every URL apprise cannot parse (call at startup)."""
    problems = [
        f"alerting.receivers[{index}] ({receiver.name}) urls[{position}]: apprise cannot use "
        f"{_shown(url)} (unknown scheme or malformed URL)"
        for index, receiver in enumerate(receivers)
        for position, url in enumerate(receiver.urls)
        if apprise.Apprise.instantiate(url) is None
    ]
    if problems:
        raise InvalidReceiverUrl("invalid receiver URL(s):\n  " + "\n  ".join(problems))


def _problem(result: apprise.AppriseResult) -> str:
    """The last warning or error apprise logged for this call, e.g. the HTTP status."""
    last = ""
    for entry in result.logs():
        if entry.level in ("WARNING", "ERROR", "CRITICAL"):
            last = entry.message
    return last or result.status.name.lower()


class AppriseNotifier:
    """Sends to every URL of a receiver at once; delivered when at least one accepts.

    A receiver is one channel (``Receiver.channel``), so its URLs are alternative routes
    to the same people: one that accepts is a delivery. A URL that fails while another
    accepted is logged, not retried, since a retry would repeat the delivered message.
    """

    def __init__(self) -> None:
        # In-memory: no plugin state written to the user's home directory.
        self._asset = apprise.AppriseAsset(storage_mode="memory")
        # apprise logs every failed attempt itself; what it says is captured per call
        # (``result.logs()``) and the dispatcher reports a failing receiver once.
        apprise_log = apprise.logger
        apprise_log.propagate = False
        if not apprise_log.handlers:
            apprise_log.addHandler(logging.NullHandler())  # not Python's stderr last resort

    async def send(self, receiver: Receiver, title: str, body: str, *,
                   timeout_s: float) -> None:
        # Each URL has its own deadline, so a hanging one cannot hide another's delivery.
        outcomes = await asyncio.gather(
            *(self._send_one(url, title, body, timeout_s) for url in receiver.urls))
        failures = [problem for problem, _ in outcomes if problem]
        if len(failures) == len(outcomes):
            # Worth retrying unless every URL is one apprise cannot use at all.
            retryable = any(retryable for _, retryable in outcomes)
            raise NotifyError("; ".join(failures), retryable=retryable)
        if failures:
            log.warning("receiver=%s delivered, but some URLs failed: %s", receiver.name,
                        "; ".join(failures))

    async def _send_one(self, url: str, title: str, body: str,
                        timeout_s: float) -> tuple[str, bool]:
        """``("", _)`` when the URL accepted the message, else (what went wrong, retryable)."""
        notifier = apprise.Apprise(asset=self._asset)
        if not notifier.add(url):
            # validate_urls() runs at startup, so only a URL changed since gets here.
            return f"{_shown(url)}: apprise cannot use this URL", False
        try:
            async with asyncio.timeout(timeout_s):
                result = await notifier.async_notify(body=body, title=title, timeout=timeout_s)
        except TimeoutError:
            return f"{_shown(url)}: no answer within {timeout_s:g}s", True
        with result:
            if result:
                return "", True
            return f"{_shown(url)}: {_problem(result)}", True
