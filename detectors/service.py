"""The detector worker: "readings" in, "detections" out, offsets committed after publishing.

One loop does everything in order — fetch a batch, run the engine, add the periodic
offline check when due, publish, commit — so detections leave in the order the engine
made them (an "offline" never overtakes the "back online" that followed it) and a
batch is committed only once its detections are durable on the bus (at least once).
Workers scale by joining the same consumer group: the bus keys readings by device, so
each device's readings stay in one worker, in order.

With a database, each device's detector state follows its partition (``_Partitions``):
saved every ``snapshot_interval_s`` and when the partition is revoked or the worker
stops, loaded when the partition is assigned, before any of its messages is read.
Only devices of assigned partitions are checked for silence, so two workers never
both report one device offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial

from prometheus_client import Counter

from config.settings import Settings
from detectors.engine import DetectorEngine
from detectors.snapshot import StateStore
from detectors.training import ModelKeeper
from shouwang.bus import Bus, BusError, Consumer, Message
from shouwang.codec import CodecError, decode_readings, encode_detection
from shouwang.models import Detection, Device
from shouwang.retry import retry_until_done
from shouwang.store.db import StoreError

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
_SNAPSHOTS = Counter("shouwang_detector_state_saved_total", "device states saved")
_RESTORES = Counter("shouwang_detector_state_restored_total", "device states restored")
_SNAPSHOT_FAILURES = Counter("shouwang_detector_state_failures_total",
                             "state saves or loads that failed (state restarts fresh)")
_READINGS_TOPIC = "readings"


class _Partitions:
    """Which devices this worker owns, and their state's trip to and from the database.

    It is the consumer's rebalance listener. ``lock`` is held by the worker loop while
    it handles a batch, so a revoke saves state only between batches: every reading
    of a revoked partition that was processed is in the saved state.
    """

    def __init__(self, engine: DetectorEngine, devices: Mapping[str, Device], bus: Bus,
                 store: StateStore | None, clock: Callable[[], float]) -> None:
        self._engine = engine
        self._store = store
        self._clock = clock
        self.lock = asyncio.Lock()
        self._partition_of = {device_id: bus.partition_for(device_id) for device_id in devices}
        self._assigned: set[int] = set()
        self.owned: set[str] = set()
        self._dirty: set[str] = set()
        # Kafka's eager rebalance revokes everything, then assigns: what comes straight
        # back to us is still current in memory and needs no trip to the database.
        self._just_revoked: set[str] = set()

    async def assigned(self, partitions: Sequence[tuple[str, int]]) -> None:
        gained = {p for topic, p in partitions if topic == _READINGS_TOPIC}
        async with self.lock:
            self._assigned |= gained
            gained_devices = [d for d, p in self._partition_of.items() if p in gained]
            self.owned.update(gained_devices)
            kept, self._just_revoked = self._just_revoked, set()
            devices = [d for d in gained_devices if d not in kept]
            for device_id in devices:
                self._engine.reset(device_id)  # whatever we held before is stale now
            restored = 0
            if self._store is not None and devices:
                try:
                    states = await self._store.load(devices)
                except StoreError as err:
                    _SNAPSHOT_FAILURES.inc()
                    log.warning("cannot load detector state, %d devices start afresh: %s",
                                len(devices), err)
                    states = {}
                restored = sum(self._engine.restore(d, blob) for d, blob in states.items())
                _RESTORES.inc(restored)
            log.info("partitions assigned %s: %d devices, %d kept, %d states restored",
                     sorted(gained), len(gained_devices), len(gained_devices) - len(devices),
                     restored)

    async def revoked(self, partitions: Sequence[tuple[str, int]]) -> None:
        lost = {p for topic, p in partitions if topic == _READINGS_TOPIC}
        async with self.lock:
            devices = [d for d in self.owned if self._partition_of[d] in lost]
            await self._save(devices)
            self._assigned -= lost
            self.owned.difference_update(devices)
            self._just_revoked = set(devices)
            log.info("partitions revoked %s: %d device states saved", sorted(lost),
                     len(devices))

    def mine(self, messages: Sequence[Message]) -> list[Message]:
        """The messages of partitions still assigned (a revoke may follow a fetch)."""
        assigned = self._assigned
        return [m for m in messages if m.partition in assigned]

    def touch(self, messages: Iterable[Message]) -> None:
        if self._store is not None:
            self._dirty.update(m.key for m in messages)

    async def save_changed(self) -> None:
        """Save the owned devices whose state changed since the last save."""
        dirty, self._dirty = self._dirty, set()
        await self._save([d for d in dirty if d in self.owned])

    async def save_all(self) -> None:
        await self._save(list(self.owned))

    async def _save(self, devices: Sequence[str]) -> None:
        if self._store is None or not devices:
            return
        engine = self._engine
        states = [(d, engine.snapshot(d)) for d in devices if engine.knows(d)]
        try:
            await self._store.save(states, self._clock())
        except StoreError as err:
            _SNAPSHOT_FAILURES.inc()
            log.warning("cannot save detector state of %d devices: %s", len(states), err)
            self._dirty.update(devices)  # try again at the next interval
            return
        _SNAPSHOTS.inc(len(states))


async def _end_task(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    stop.set()
    try:
        await task
    except Exception:  # its own failures are logged; the worker's stop must go on
        log.exception("anomaly model keeper failed")


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
    dsn, schema
        PostgreSQL for detector state snapshots; ``None`` keeps state in memory only.
    """

    def __init__(self, settings: Settings, bus: Bus, *, clock: Callable[[], float] = time.time,
                 max_batch: int = 1000, poll_s: float = 0.5, dsn: str | None = None,
                 schema: str = "public") -> None:
        self._settings = settings
        self._bus = bus
        self._dsn = dsn
        self._schema = schema
        self._clock = clock
        self._max_batch = max_batch
        self._poll_s = min(poll_s, settings.detectors.offline_check_s)
        self._reported_errors: set[str] = set()
        self._commit_failing = False

    async def run(self, stop: asyncio.Event) -> None:
        config = self._settings.detectors
        devices = self._settings.device_map()
        started_at = self._clock()
        engine = DetectorEngine(config, devices, clock=self._clock, started_at=started_at,
                                defer_models=True)
        next_check = started_at + config.offline_check_s
        next_snapshot = started_at + config.snapshot_interval_s
        log.info("detector worker starting group=%s devices=%d threshold_rules=%d state=%s",
                 config.group, len(devices), len(config.thresholds),
                 "database" if self._dsn else "memory")
        async with contextlib.AsyncExitStack() as stack:
            store = (await stack.enter_async_context(StateStore(self._dsn, self._schema))
                     if self._dsn else None)
            partitions = _Partitions(engine, devices, self._bus, store, self._clock)
            consumer = await stack.enter_async_context(
                self._bus.consumer([_READINGS_TOPIC], config.group, listener=partitions))
            if self._dsn:
                # Per-type models: newest at start, then on schedule (and training if set).
                keeper = ModelKeeper(engine, config.training, self._dsn, self._schema,
                                     clock=self._clock, poll_s=self._poll_s)
                await keeper.load_once()
                keeper_stop = asyncio.Event()
                keeper_task = asyncio.create_task(keeper.run(keeper_stop), name="detect.models")
                stack.push_async_callback(_end_task, keeper_stop, keeper_task)
            try:
                while not stop.is_set():
                    fetched = await consumer.batch(self._max_batch, self._poll_s)
                    async with partitions.lock:
                        messages = partitions.mine(fetched) if fetched else fetched
                        found = self._detect(engine, messages) if messages else []
                        partitions.touch(messages)
                        now = self._clock()
                        if now >= next_check:
                            found.extend(engine.tick(now, partitions.owned))
                            next_check = now + config.offline_check_s
                        if found:
                            await self._publish(found, stop)
                        if messages:
                            await self._commit(consumer, messages)
                        if now >= next_snapshot:
                            await partitions.save_changed()
                            next_snapshot = now + config.snapshot_interval_s
            finally:
                # Before leaving the group: the next owner must find this state.
                async with partitions.lock:
                    await partitions.save_all()
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
        found.extend(engine.score_models())  # the whole batch in one vectorised call
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
