"""In-process bus for the embedded default: Kafka's semantics without a broker.

Each topic is a set of partitioned logs; consumer groups keep committed offsets, and a
reopened group member resumes from its last commit (uncommitted messages come again).
Logs are trimmed once every group that has ever read a topic has committed past an
entry, and ``publish`` waits while a topic holds ``max_backlog`` untrimmed messages:
memory stays bounded and a slow consumer slows the producer instead of losing data.
A topic no group has joined yet keeps only its newest ``max_backlog`` messages, as
Kafka's retention would, so an absent optional consumer never stalls a producer.
Unlike Kafka, a group that first joins after others have committed starts where the
log was trimmed: in one process every group joins at startup, before traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Self

from shouwang.bus.base import BusError, Message, RebalanceListener

__all__ = ["MemoryBus"]


class _Partition:
    __slots__ = ("base", "entries")

    def __init__(self) -> None:
        self.base = 0  # offset of entries[0]
        self.entries: list[tuple[str, bytes]] = []

    @property
    def end(self) -> int:
        return self.base + len(self.entries)


class _Topic:
    def __init__(self, partitions: int) -> None:
        self.partitions = [_Partition() for _ in range(partitions)]
        self.committed: dict[str, list[int]] = {}  # group -> next offset per partition

    def size(self) -> int:
        return sum(len(p.entries) for p in self.partitions)

    def trim(self, keep: int) -> None:
        if not self.committed:
            self._retain(keep)
            return
        for index, part in enumerate(self.partitions):
            low = min(offsets[index] for offsets in self.committed.values())
            drop = low - part.base
            if drop > 0:
                del part.entries[:drop]
                part.base = low

    def _retain(self, keep: int) -> None:
        per_partition = max(1, keep // len(self.partitions))
        for part in self.partitions:
            drop = len(part.entries) - per_partition
            if drop > 0:
                del part.entries[:drop]
                part.base += drop


class MemoryBus:
    def __init__(self, partitions: int = 4, max_backlog: int = 200_000,
                 colocate: Mapping[str, str] | None = None) -> None:
        self._partitions = partitions
        self._colocate = dict(colocate or {})  # key -> partition key, as on KafkaBus
        self._max_backlog = max_backlog
        self._topics: dict[str, _Topic] = {}
        self._changed = asyncio.Condition()
        self._members: defaultdict[tuple[str, str], int] = defaultdict(int)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        return None

    def _topic(self, name: str) -> _Topic:
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topics[name] = _Topic(self._partitions)
        return topic

    def partition_for(self, key: str) -> int:
        return zlib.crc32(self._colocate.get(key, key).encode()) % self._partitions

    async def publish(self, topic: str, items: Sequence[tuple[str, bytes]]) -> None:
        log = self._topic(topic)
        async with self._changed:
            await self._changed.wait_for(
                lambda: not log.committed or log.size() < self._max_backlog)
            for key, value in items:
                log.partitions[self.partition_for(key)].entries.append((key, value))
            if not log.committed:
                log.trim(self._max_backlog)
            self._changed.notify_all()

    def consumer(self, topics: Sequence[str], group: str, *,
                 from_latest: bool = False,
                 listener: RebalanceListener | None = None) -> _MemoryConsumer:
        return _MemoryConsumer(self, tuple(topics), group, from_latest, listener)

    # Used by _MemoryConsumer only.
    def _join(self, topics: tuple[str, ...], group: str,
              from_latest: bool) -> dict[str, list[int]]:
        positions = {}
        for name in topics:
            if from_latest:  # a live viewer: not a group member that holds back trimming
                positions[name] = [p.end for p in self._topic(name).partitions]
                continue
            if self._members[(name, group)]:
                raise BusError(f"the in-process bus allows one member per group ({group!r})")
            self._members[(name, group)] += 1
            log = self._topic(name)
            committed = log.committed.setdefault(group, [p.base for p in log.partitions])
            positions[name] = list(committed)
        return positions

    def _leave(self, topics: tuple[str, ...], group: str, from_latest: bool) -> None:
        if from_latest:
            return
        for name in topics:
            self._members[(name, group)] -= 1


class _MemoryConsumer:
    def __init__(self, bus: MemoryBus, topics: tuple[str, ...], group: str,
                 from_latest: bool, listener: RebalanceListener | None = None) -> None:
        self._bus = bus
        self._topics = topics
        self._group = group
        self._from_latest = from_latest
        self._listener = listener
        self._positions: dict[str, list[int]] = {}

    def _all_partitions(self) -> list[tuple[str, int]]:
        return [(name, p) for name in self._topics for p in range(self._bus._partitions)]

    async def __aenter__(self) -> Self:
        self._positions = self._bus._join(self._topics, self._group, self._from_latest)
        if self._listener is not None:
            # The only member of its group: it holds every partition from join to leave.
            await self._listener.assigned(self._all_partitions())
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if self._listener is not None:
                await self._listener.revoked(self._all_partitions())
        finally:
            self._bus._leave(self._topics, self._group, self._from_latest)

    def _take(self, max_records: int) -> list[Message]:
        out: list[Message] = []
        for name in self._topics:
            log = self._bus._topic(name)
            positions = self._positions[name]
            for index, part in enumerate(log.partitions):
                start = max(positions[index], part.base)
                stop = min(part.end, start + max_records - len(out))
                for offset in range(start, stop):
                    key, value = part.entries[offset - part.base]
                    out.append(Message(topic=name, key=key, value=value, partition=index,
                                       offset=offset))
                positions[index] = stop
                if len(out) >= max_records:
                    return out
        return out

    async def batch(self, max_records: int = 1000, timeout_s: float = 0.5) -> list[Message]:
        out = self._take(max_records)
        if out:
            return out
        async with self._bus._changed:
            def arrived() -> bool:
                out.extend(self._take(max_records))
                return bool(out)

            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._bus._changed.wait_for(arrived), timeout_s)
        return out

    async def commit(self, messages: Sequence[Message]) -> None:
        if self._from_latest:
            return
        async with self._bus._changed:
            for m in messages:
                committed = self._bus._topic(m.topic).committed[self._group]
                committed[m.partition] = max(committed[m.partition], m.offset + 1)
            for name in {m.topic for m in messages}:
                self._bus._topic(name).trim(self._bus._max_backlog)
            self._bus._changed.notify_all()
