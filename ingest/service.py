"""Ingest: MQTT in, decoded and checked, handed to the durable hop, then acknowledged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from functools import partial

from ingest import metrics
from ingest.decoder import Decoder
from ingest.hops import DurableHop
from ingest.mqtt_source import MqttSource
from shouwang.models import Device, Reading, Reject
from shouwang.retry import retry_until_done

__all__ = ["IngestService"]

log = logging.getLogger(__name__)


class IngestService:
    """Moves batches from ``source`` through ``hop``; acks only what the hop made durable."""

    def __init__(self, source: MqttSource, hop: DurableHop, devices: Mapping[str, Device], *,
                 topic_root: str, max_payload_bytes: int, max_readings_per_message: int,
                 batch_max_messages: int, flush_ms: int) -> None:
        self._source = source
        self._hop = hop
        self._decoder = Decoder(devices, topic_root=topic_root,
                                max_payload_bytes=max_payload_bytes,
                                max_readings=max_readings_per_message)
        self._batch_max = batch_max_messages
        self._flush_s = flush_ms / 1000.0
        self.messages = 0
        self.readings = 0
        self.rejects = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batch = await self._source.take(self._batch_max, self._flush_s)
            metrics.QUEUE_DEPTH.set(self._source.pending())
            if not batch:
                continue
            readings: list[Reading] = []
            rejects: list[Reject] = []
            for message in batch:
                result = self._decoder.decode(message)
                if result.reject is not None:
                    rejects.append(result.reject)
                    metrics.REJECTS.labels(result.reject.reason).inc()
                    log.info("rejected topic=%s reason=%s detail=%s", result.reject.topic,
                             result.reject.reason, result.reject.detail)
                else:
                    readings.extend(result.readings)
            with metrics.FLUSH_SECONDS.time():
                await retry_until_done(partial(self._hop.put, readings, rejects), stop,
                                       what="durable hop")
            # Acknowledge only now: a crash before this line means redelivery, not loss.
            self._source.ack(batch)
            self.messages += len(batch)
            self.readings += len(readings)
            self.rejects += len(rejects)
            metrics.MESSAGES.inc(len(batch))
            metrics.READINGS.inc(len(readings))
