"""The detector worker: "readings" in, "detections" out, offsets committed after publishing.

One loop does everything in order — fetch a batch, run the engine, add the periodic
offline check when due, publish, commit — so detections leave in the order the engine
made them (an "offline" never overtakes the "back online" that followed it) and a
batch is committed only once its detections are durable on the bus (at least once).
Workers scale by joining the same consumer group: the bus keys readings by device, so
each device's readings stay in one worker, in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial

from prometheus_client import Counter

from config.settings import Settings
from detectors.engine import DetectorEngine
from shouwang.bus import Bus, BusError, Consumer, Message
from shouwang.codec import CodecError, decode_readings, encode_detection
from shouwang.models import Detection
from shouwang.retry import retry_until_done

__all__ = ["DetectorService"]

log = logging.getLogger(__name__)

_READINGS = Counter("shouwang_detector_readings_total", "readings run through the detectors")
_UNKNOWN_DEVICE = Counter("shouwang_detector_unknown_device_readings_total",
                          "readings of devices missing from the registry, ignored")
_DETECTIONS = Counter("shouwang_detections_total", "detections published",
                      ["hazard", "firing"])
_DECODE_ERRORS = Counter("shouwang_detector_decode_errors_total",
                         "bus messages that could not be decoded and were skipped")
_COMMIT_FAILURES = Counter("shouwang_detector_commit_failures_total",
                           "offset commits that failed (the batch will be redelivered)")


class DetectorService:
    """A detector worker, one member of the ``settings.detectors.group`` consumer group.

    Parameters
    ----------
    settings
        The whole configuration; uses ``detectors`` and the device registry.
    bus
        An entered bus.
    clock
        Wall clock for detection stamps and the offline check; tests inject their own.
    max_batch
        Bus messages fetched (and committed) at once.
    poll_s
        Longest wait for a batch; bounds shutdown and offline-check latency.
    """

    def __init__(self, settings: Settings, bus: Bus, *, clock: Callable[[], float] = time.time,
                 max_batch: int = 1000, poll_s: float = 0.5) -> None:
        self._settings = settings
        self._bus = bus
        self._clock = clock
        self._max_batch = max_batch
        self._poll_s = min(poll_s, settings.detectors.offline_check_s)
        self._reported_errors: set[str] = set()
        self._commit_failing = False

    async def run(self, stop: asyncio.Event) -> None:
        config = self._settings.detectors
        devices = self._settings.device_map()
        started_at = self._clock()
        engine = DetectorEngine(config, devices, clock=self._clock, started_at=started_at)
        next_check = started_at + config.offline_check_s
        log.info("detector worker starting group=%s devices=%d threshold_rules=%d",
                 config.group, len(devices), len(config.thresholds))
        async with self._bus.consumer(["readings"], config.group) as consumer:
            while not stop.is_set():
                messages = await consumer.batch(self._max_batch, self._poll_s)
                found = self._detect(engine, messages) if messages else []
                now = self._clock()
                if now >= next_check:
                    found.extend(engine.tick(now))
                    next_check = now + config.offline_check_s
                if found:
                    await self._publish(found, stop)
                if messages:
                    await self._commit(consumer, messages)
        log.info("detector worker stopped readings=%d unknown_device_readings=%d",
                 engine.readings_seen, engine.unknown_device_readings)

    def _detect(self, engine: DetectorEngine, messages: Sequence[Message]) -> list[Detection]:
        found: list[Detection] = []
        seen, unknown = engine.readings_seen, engine.unknown_device_readings
        for message in messages:
            try:
                readings = decode_readings(message.value)
            except CodecError as err:
                self._skip(message, str(err).partition(":")[0], err)
                continue
            try:
                found.extend(engine.process(readings))
            except (TypeError, ValueError) as err:
                # The codec checks the shape, not each field's type: a value that is not
                # a number must not stop the worker on a message it would fetch forever.
                self._skip(message, "bad field types", err)
        _READINGS.inc(engine.readings_seen - seen)
        if engine.unknown_device_readings != unknown:
            _UNKNOWN_DEVICE.inc(engine.unknown_device_readings - unknown)
        return found

    def _skip(self, message: Message, kind: str, err: Exception) -> None:
        _DECODE_ERRORS.inc()
        if kind in self._reported_errors:
            return
        self._reported_errors.add(kind)
        log.warning("skipping undecodable message kind=%s key=%s partition=%d offset=%d: %s "
                    "(later ones of this kind are only counted)", kind, message.key,
                    message.partition, message.offset, err)

    async def _publish(self, found: Sequence[Detection], stop: asyncio.Event) -> None:
        items = [(d.device_id, encode_detection(d)) for d in found]
        await retry_until_done(partial(self._bus.publish, "detections", items), stop,
                               what="publish detections")
        for d in found:
            _DETECTIONS.labels(d.hazard, "true" if d.firing else "false").inc()

    async def _commit(self, consumer: Consumer, messages: Sequence[Message]) -> None:
        # A lost commit only means redelivery, and the next commit covers these offsets
        # too, so carry on rather than stall the stream.
        try:
            await consumer.commit(messages)
        except BusError as err:
            _COMMIT_FAILURES.inc()
            if not self._commit_failing:
                log.warning("offset commit failed, the batch may be redelivered: %s", err)
            self._commit_failing = True
            return
        if self._commit_failing:
            log.info("offset commits work again")
            self._commit_failing = False
