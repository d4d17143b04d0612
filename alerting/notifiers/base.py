"""The one interface the outbox sends through; channels live behind it."""

from __future__ import annotations

from typing import Protocol

from config.settings import Receiver

__all__ = ["Notifier", "NotifyError"]


class NotifyError(Exception):
    """A send failed; ``retryable`` says whether trying again later can help."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Notifier(Protocol):
    async def send(self, receiver: Receiver, title: str, body: str, *,
                   timeout_s: float) -> None:
        """Deliver one message to ``receiver`` within ``timeout_s`` or raise ``NotifyError``."""
        ...
