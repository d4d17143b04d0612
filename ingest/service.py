"""Ingest: MQTT in, decoded and checked, handed to the durable hop, then acknowledged.

A flooding device is held back here (``FloodGuard``): rate-limited, then quarantined with a
``flooding`` health detection that alerting routes to maintenance like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from functools import partial

from config.settings import FloodSettings
from ingest import metrics
from ingest.decoder import Decoder
from ingest.flood_guard import FloodGuard, QuarantineChange
from ingest.hops import DurableHop
from ingest.models import RawMessage
from ingest.mqtt_source import MqttSource
from ingest.quarantine_store import QuarantineStore, QuarantineStoreError
from shouwang.models import Detection, DetectionKind, Device, Reading, Reject, Severity
from shouwang.retry import retry_until_done

__all__ = ["IngestService"]

log = logging.getLogger(__name__)


def flooding_detection(change: QuarantineChange) -> Detection:
    """The maintenance alert for a quarantine (firing) or its end (clearing)."""
    if change.quarantined:
        message = f"设备消息泛滥，已隔离，其数据被丢弃：{change.detail}"
    else:
        message = f"设备已解除隔离（{change.by}），期间丢弃 {change.dropped} 条消息"
    return Detection(ts=change.at, device_id=change.device_id, site=change.site,
                     hazard="flooding", kind=DetectionKind.HEALTH, severity=Severity.YELLOW,
                     firing=change.quarantined, metric="messages", value=float(change.dropped),
                     level=1 if change.quarantined else 0, message=message,
                     reading_ts=change.at)


class IngestService:
    """Moves batches from ``source`` through ``hop``; acks only what the hop made durable."""

    def __init__(self, source: MqttSource, hop: DurableHop, devices: Mapping[str, Device], *,
                 topic_root: str, max_payload_bytes: int, max_readings_per_message: int,
                 batch_max_messages: int, flush_ms: int, flood: FloodSettings | None = None,
                 stale_after_s: float | None = None,
                 quarantine_store: QuarantineStore | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._source = source
        self._hop = hop
        self._decoder = Decoder(devices, topic_root=topic_root,
                                max_payload_bytes=max_payload_bytes,
                                max_readings=max_readings_per_message,
                                stale_after_s=stale_after_s)
        self._batch_max = batch_max_messages
        self._flush_s = flush_ms / 1000.0
        self._guard = FloodGuard(flood, devices) if flood is not None and flood.enabled else None
        self._sync_s = flood.sync_s if flood is not None else 2.0
        self._store = quarantine_store
        self._clock = clock
        self._unrecorded: list[QuarantineChange] = []
        self._sync_now = asyncio.Event()
        self._next_tick = 0.0
        self._store_failing = False
        self.messages = 0
        self.readings = 0
        self.rejects = 0

    @property
    def guard(self) -> FloodGuard | None:
        return self._guard

    async def run(self, stop: asyncio.Event) -> None:
        async with AsyncExitStack() as stack, asyncio.TaskGroup() as tasks:
            if self._store is not None and self._guard is not None:
                await stack.enter_async_context(self._store)
                # Its own task: a database that is slow or away never holds up the messages.
                tasks.create_task(self._sync_loop(self._store, self._guard, stop),
                                  name="ingest.quarantine-sync")
            while not stop.is_set():
                batch = await self._source.take(self._batch_max, self._flush_s)
                metrics.QUEUE_DEPTH.set(self._source.pending())
                if self._guard is not None:
                    await self._housekeep(self._guard, stop)
                if batch:
                    await self._handle(batch, stop)

    async def _handle(self, batch: Sequence[RawMessage], stop: asyncio.Event) -> None:
        readings: list[Reading] = []
        rejects: list[Reject] = []
        guard = self._guard
        decode = self._decoder.decode
        # Looked up once a batch: only a quarantine in force costs a topic split per message.
        screen = guard is not None and guard.quarantined
        for message in batch:
            if screen and guard is not None and guard.drop_quarantined(message):
                continue
            result = decode(message)
            if result.reject is not None:
                if guard is not None and not guard.admit_reject(result.reject, message):
                    continue
                rejects.append(result.reject)
                metrics.REJECTS.labels(result.reject.reason).inc()
                log.info("rejected topic=%s reason=%s detail=%s", result.reject.topic,
                         result.reject.reason, result.reject.detail)
            elif guard is None or guard.admit(result.readings[-1], message):
                readings.extend(result.readings)
        if guard is not None:
            rejects.extend(guard.take_rejects())
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
        if guard is not None:
            await self._announce(guard.take_changes(), stop)

    async def _housekeep(self, guard: FloodGuard, stop: asyncio.Event) -> None:
        """Automatic releases and the rejects samples' closing rows, every ``sync_s``."""
        now = self._clock()
        if now < self._next_tick:
            return
        self._next_tick = now + self._sync_s
        guard.tick(now)
        await self._announce(guard.take_changes(), stop)
        summaries = guard.take_rejects()
        if summaries:
            await retry_until_done(partial(self._hop.put, (), summaries), stop,
                                   what="durable hop")
            self.rejects += len(summaries)
        metrics.QUARANTINED.set(len(guard.quarantined_devices()))

    async def _sync_loop(self, store: QuarantineStore, guard: FloodGuard,
                         stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._sync(store, guard, stop)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sync_now.wait(), self._sync_s)
            self._sync_now.clear()

    async def _sync(self, store: QuarantineStore, guard: FloodGuard,
                    stop: asyncio.Event) -> None:
        """Write what changed; pick up releases by an operator and quarantines from before
        (a restart, or another ingest on the same shared subscription)."""
        recording, self._unrecorded = self._unrecorded, []
        try:
            await store.record(recording, guard.quarantined_devices())
            active = await store.active()
        except QuarantineStoreError as err:
            self._unrecorded = recording + self._unrecorded
            if not self._store_failing:
                log.warning("quarantine table unavailable, enforcing from memory: %s", err)
            self._store_failing = True
            return
        if self._store_failing:
            log.info("quarantine table available again")
            self._store_failing = False
        # Changes made while the statements ran are not in the table yet: leave them be.
        made_meanwhile = guard.take_changes()
        self._note(made_meanwhile)
        fresh = {c.device_id for c in self._unrecorded}
        ended = [d for d in guard.in_force() if d not in active and d not in fresh]
        by_whom: dict[str, str] = {}
        if ended:
            with contextlib.suppress(QuarantineStoreError):  # then: "operator", as before
                by_whom = await store.released_by(ended)
        now = self._clock()
        for device_id in ended:
            guard.release(device_id, now, by=by_whom.get(device_id) or "operator")
        guard.restore({d: at for d, at in active.items() if d not in fresh}, now)
        released = guard.take_changes()
        self._note(released)
        # An automatic release was announced by the instance that made it; an operator's
        # is announced by each instance that learns of it (closing the alert is idempotent).
        await self._publish(made_meanwhile + [c for c in released if c.by != "auto"], stop)

    async def _announce(self, changes: list[QuarantineChange], stop: asyncio.Event) -> None:
        self._note(changes)
        await self._publish(changes, stop)

    def _note(self, changes: list[QuarantineChange]) -> None:
        """To be written to the table by the sync task, at once."""
        if changes:
            self._unrecorded.extend(changes)
            self._sync_now.set()

    async def _publish(self, changes: list[QuarantineChange], stop: asyncio.Event) -> None:
        if changes:
            await retry_until_done(
                partial(self._hop.announce, [flooding_detection(c) for c in changes]), stop,
                what="flooding detection")
