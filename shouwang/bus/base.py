"""The bus contract: keyed topics, consumer groups, at-least-once delivery.

Two implementations keep the same behaviour: ``MemoryBus`` for the one-process
embedded default and ``KafkaBus`` for scale-out. Contract tests run against both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

__all__ = ["TOPICS", "Bus", "BusError", "Consumer", "Message", "RebalanceListener"]

# Canonical topic names (DESIGN.md "Bus topics"); a bus may prefix them for isolation.
TOPICS = ("readings", "detections", "alert-updates", "rejects")


class BusError(RuntimeError):
    """A bus operation failed (broker unreachable, message not durable)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    topic: str  # canonical name, without the bus prefix
    key: str
    value: bytes
    partition: int = 0
    offset: int = 0


class RebalanceListener(Protocol):
    """Told which ``(topic, partition)`` pairs a group member gains and loses.

    ``revoked`` runs before another member may read those partitions: the place to save
    per-key state. ``assigned`` runs before the first message of the new partitions.
    """

    async def assigned(self, partitions: Sequence[tuple[str, int]]) -> None: ...

    async def revoked(self, partitions: Sequence[tuple[str, int]]) -> None: ...


class Consumer(Protocol):
    """One member of a consumer group. Enter it before reading."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None: ...

    async def batch(self, max_records: int = 1000, timeout_s: float = 0.5) -> list[Message]:
        """Up to ``max_records`` messages, waiting at most ``timeout_s`` for the first."""
        ...

    async def commit(self, messages: Sequence[Message]) -> None:
        """Mark these (and everything before them on their partitions) as processed."""
        ...


class Bus(Protocol):
    """Enter the bus once per process; publish returns only when the message is durable."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None: ...

    async def publish(self, topic: str, items: Sequence[tuple[str, bytes]]) -> None:
        """Publish ``(key, value)`` pairs in order; same key, same partition, same order."""
        ...

    def consumer(self, topics: Sequence[str], group: str, *,
                 from_latest: bool = False,
                 listener: RebalanceListener | None = None) -> Consumer:
        """A group member. ``from_latest`` is for live viewers (the console): a group
        that starts at the end, never commits, and never holds messages back.
        ``listener`` hears of partitions gained and lost."""
        ...

    def partition_for(self, key: str) -> int:
        """The partition a key goes to (every topic of a bus has the same count)."""
        ...
