"""The next durable hop after MQTT: once ``put`` returns, the batch survives a crash.

Scale-out: Kafka (``KafkaHop``) — readings and rejects are published with acks=all and
the store writer moves them into PostgreSQL. Embedded: the database itself
(``DatabaseHop``) — rows are committed, then readings go onto the in-process bus for
the detectors.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Protocol

from ingest import metrics
from shouwang.bus import Bus
from shouwang.codec import encode_detection, encode_readings, encode_reject
from shouwang.models import Detection, Reading, Reject
from shouwang.store import ReadingStore

__all__ = ["DatabaseHop", "DurableHop", "KafkaHop", "group_by_device"]


class DurableHop(Protocol):
    async def put(self, readings: Sequence[Reading], rejects: Sequence[Reject]) -> None: ...

    async def announce(self, detections: Sequence[Detection]) -> None:
        """Ingest's own detections (a device quarantined for flooding) to alerting."""
        ...


def _detection_items(detections: Sequence[Detection]) -> list[tuple[str, bytes]]:
    return [(d.device_id, encode_detection(d)) for d in detections]


def group_by_device(readings: Sequence[Reading]) -> list[tuple[str, bytes]]:
    """Bus items for the ``readings`` topic: one message per device, in arrival order."""
    per_device: defaultdict[str, list[Reading]] = defaultdict(list)
    for r in readings:
        per_device[r.device_id].append(r)
    return [(device_id, encode_readings(rows)) for device_id, rows in per_device.items()]


class KafkaHop:
    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def put(self, readings: Sequence[Reading], rejects: Sequence[Reject]) -> None:
        if readings:
            await self._bus.publish("readings", group_by_device(readings))
        if rejects:
            await self._bus.publish("rejects", [(r.device_id or r.topic, encode_reject(r))
                                                for r in rejects])

    async def announce(self, detections: Sequence[Detection]) -> None:
        await self._bus.publish("detections", _detection_items(detections))


class DatabaseHop:
    def __init__(self, store: ReadingStore, bus: Bus) -> None:
        self._store = store
        self._bus = bus

    async def put(self, readings: Sequence[Reading], rejects: Sequence[Reject]) -> None:
        metrics.ROWS_WRITTEN.inc(await self._store.write(readings, rejects))
        if readings:
            await self._bus.publish("readings", group_by_device(readings))

    async def announce(self, detections: Sequence[Detection]) -> None:
        await self._bus.publish("detections", _detection_items(detections))
