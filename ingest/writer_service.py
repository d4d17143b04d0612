"""The store writer (scale-out mode): Kafka ``readings`` and ``rejects`` into PostgreSQL.

Offsets are committed only after the rows are committed; a batch that comes again
after a crash is absorbed by the idempotent writer.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from ingest import metrics
from shouwang.bus import Bus, Message
from shouwang.codec import CodecError, decode_readings, decode_reject
from shouwang.models import Reading, Reject
from shouwang.retry import retry_until_done
from shouwang.store import ReadingStore

__all__ = ["StoreWriterService"]

log = logging.getLogger(__name__)


class StoreWriterService:
    def __init__(self, bus: Bus, store: ReadingStore, *, group: str = "store-writer",
                 batch_max: int = 2000) -> None:
        self._bus = bus
        self._store = store
        self._group = group
        self._batch_max = batch_max
        self.rows_written = 0

    async def run(self, stop: asyncio.Event) -> None:
        async with self._bus.consumer(["readings", "rejects"], self._group) as consumer:
            while not stop.is_set():
                messages = await consumer.batch(self._batch_max, 0.2)
                if not messages:
                    continue
                readings, rejects = self._decode(messages)
                await retry_until_done(partial(self._write, readings, rejects), stop,
                                       what="store write")
                await consumer.commit(messages)

    def _decode(self, messages: list[Message]) -> tuple[list[Reading], list[Reject]]:
        readings: list[Reading] = []
        rejects: list[Reject] = []
        for m in messages:
            try:
                if m.topic == "readings":
                    readings.extend(decode_readings(m.value))
                else:
                    rejects.append(decode_reject(m.value))
            except CodecError as err:
                # Ingest wrote it, so this is a version mismatch: keep it for inspection.
                log.error("undecodable bus message topic=%s offset=%d: %s", m.topic, m.offset, err)
                rejects.append(Reject(received_at=0.0, topic=f"bus:{m.topic}",
                                      reason="bad_bus_message", detail=str(err),
                                      payload=m.value, device_id=m.key or None))
        return readings, rejects

    async def _write(self, readings: list[Reading], rejects: list[Reject]) -> None:
        written = await self._store.write(readings, rejects)
        self.rows_written += written
        metrics.ROWS_WRITTEN.inc(written)
