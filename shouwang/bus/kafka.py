"""The bus on Apache Kafka (aiokafka): keyed by device, consumer groups, manual commits.

``colocate`` maps keys that must share a partition onto one partition key (the wiring
maps each device to its building, so one detector worker sees a whole building);
``publish`` and ``partition_for`` both go through it, so producers and the workers that
ask which devices they own always agree.

``publish`` awaits the broker's acknowledgement (acks=all, idempotent producer), so a
caller may acknowledge its own upstream only afterwards. Consumers never auto-commit:
the service commits after its own durable write (at least once).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.partitioner import murmur2

from shouwang.bus.base import TOPICS, BusError, Message, RebalanceListener

__all__ = ["KafkaBus"]

log = logging.getLogger(__name__)


class KafkaBus:
    def __init__(self, bootstrap: str, *, topic_prefix: str = "", partitions: int = 4,
                 client_id: str = "shouwang", colocate: Mapping[str, str] | None = None) -> None:
        self._bootstrap = bootstrap
        self._prefix = topic_prefix
        self._partitions = partitions
        self._colocate = dict(colocate or {})
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None

    def _name(self, topic: str) -> str:
        return self._prefix + topic

    async def __aenter__(self) -> Self:
        await self._ensure_topics()
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap, client_id=self._client_id, acks="all",
            enable_idempotence=True, linger_ms=2, max_batch_size=1 << 20,
            max_request_size=4 << 20,
        )
        try:
            await producer.start()
        except KafkaError as err:
            await producer.stop()
            raise BusError(f"cannot reach Kafka at {self._bootstrap}: {err}") from err
        self._producer = producer
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def _ensure_topics(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap, client_id=self._client_id)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            wanted = [NewTopic(self._name(t), self._partitions, 1) for t in TOPICS
                      if self._name(t) not in existing]
            if wanted:
                # Another process may create them between our list and create.
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(wanted)
        except KafkaError as err:
            raise BusError(f"cannot create topics on Kafka at {self._bootstrap}: {err}") from err
        finally:
            await admin.close()

    async def publish(self, topic: str, items: Sequence[tuple[str, bytes]]) -> None:
        if self._producer is None:
            raise BusError("publish on a KafkaBus that was not entered")
        name = self._name(topic)
        try:
            futures = [await self._producer.send(name, value=value, key=key.encode(),
                                                 partition=self.partition_for(key))
                       for key, value in items]
            for future in futures:
                await future
        except KafkaError as err:
            raise BusError(f"publish to {name} failed: {err}") from err

    def consumer(self, topics: Sequence[str], group: str, *,
                 from_latest: bool = False,
                 listener: RebalanceListener | None = None) -> _KafkaConsumer:
        return _KafkaConsumer(self, tuple(topics), group, from_latest, listener)

    def partition_for(self, key: str) -> int:
        """Kafka's default partitioner (murmur2) of the key's partition key."""
        shared = self._colocate.get(key, key)
        return int(murmur2(shared.encode()) & 0x7FFFFFFF) % self._partitions


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """Translates aiokafka's callbacks to canonical topic names."""

    def __init__(self, prefix_len: int, listener: RebalanceListener) -> None:
        self._prefix_len = prefix_len
        self._listener = listener

    def _canonical(self, partitions: object) -> list[tuple[str, int]]:
        assert isinstance(partitions, (set, frozenset, list, tuple))
        return sorted((tp.topic[self._prefix_len:], tp.partition) for tp in partitions)

    async def on_partitions_revoked(self, revoked: object) -> None:
        await self._listener.revoked(self._canonical(revoked))

    async def on_partitions_assigned(self, assigned: object) -> None:
        await self._listener.assigned(self._canonical(assigned))


class _KafkaConsumer:
    def __init__(self, bus: KafkaBus, topics: tuple[str, ...], group: str,
                 from_latest: bool, listener: RebalanceListener | None = None) -> None:
        self._bus = bus
        self._topics = topics
        self._group = group
        self._from_latest = from_latest
        self._listener = listener
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> Self:
        bus = self._bus
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bus._bootstrap,
            group_id=bus._prefix + self._group, client_id=bus._client_id,
            enable_auto_commit=False,
            auto_offset_reset="latest" if self._from_latest else "earliest",
            max_partition_fetch_bytes=4 << 20,
        )
        names = [bus._name(t) for t in self._topics]
        if self._listener is None:
            consumer.subscribe(names)
        else:
            consumer.subscribe(names, listener=_Listener(len(bus._prefix), self._listener))
        try:
            await consumer.start()
        except KafkaError as err:
            await consumer.stop()
            raise BusError(f"cannot join group {self._group}: {err}") from err
        self._consumer = consumer
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def batch(self, max_records: int = 1000, timeout_s: float = 0.5) -> list[Message]:
        assert self._consumer is not None, "consumer used outside its context"
        prefix_len = len(self._bus._prefix)
        try:
            fetched = await self._consumer.getmany(timeout_ms=int(timeout_s * 1000),
                                                   max_records=max_records)
        except KafkaError as err:
            raise BusError(f"fetch failed: {err}") from err
        return [
            Message(topic=tp.topic[prefix_len:], key=(r.key or b"").decode(),
                    value=r.value or b"", partition=tp.partition, offset=r.offset)
            for tp, records in fetched.items() for r in records
        ]

    async def commit(self, messages: Sequence[Message]) -> None:
        assert self._consumer is not None, "consumer used outside its context"
        if self._from_latest:
            return
        offsets: dict[TopicPartition, int] = {}
        for m in messages:
            tp = TopicPartition(self._bus._name(m.topic), m.partition)
            offsets[tp] = max(offsets.get(tp, 0), m.offset + 1)
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as err:
            raise BusError(f"commit failed: {err}") from err
