"""Flood quarantines while PostgreSQL is down, with two ingest instances sharing the table.

Scale-out shape: each ingest sees its share of a shared MQTT subscription (here a scripted
source, so the flood guard's clock — the receive times — is the test's), publishes to the
bus, and a store writer moves the bus into a private PostgreSQL cluster that the test stops
and starts (the shared server on 55432 is never touched). While the database is down:

- instance A quarantines a flooding device from memory; the failing sync is logged once
  per outage, not per attempt or per message, and A keeps going;
- the well-behaved devices' readings are accepted (acknowledged) and wait on the bus;
- a quarantine from before the outage ends on A after its quiet period.

When the database is back: every normal reading lands exactly once, A's quarantine and
release reach ``device_quarantine``, instance B learns both at its next sync without a
second alert, and the ended quarantine is not read back from the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from config.settings import FloodSettings, Settings, load
from ingest import IngestService, KafkaHop, StoreWriterService
from ingest.flood_guard import QuarantineChange
from ingest.models import RawMessage
from ingest.quarantine_store import QuarantineStore, QuarantineStoreError
from shouwang.bus import MemoryBus
from shouwang.codec import decode_detection
from shouwang.embedded import EmbeddedPostgres
from shouwang.store import ReadingStore
from shouwang.wiring import prepare_store
from tests.faults.broker import free_port
from tests.integration.db_query import db_rows, rejected_messages

pytestmark = pytest.mark.integration

log = logging.getLogger(__name__)

SCHEMA = "quarantine_outage"
ROOT = "shouwang/v1"
SITE = "north"
FLOODER = "gas-flood"
EXPIRING = "gas-old"   # quarantined before the outage, quiet throughout it
NORMAL = tuple(f"gas-{i}" for i in range(5))
FLOOD_RATE = 50        # messages a second; the limit is 20 (interval 1 s x rate_factor 20)
FLOOD_S = 6
FLOOD = FloodSettings(rate_factor=20, min_rate_per_s=1, burst_messages=20,
                      quarantine_after_s=2, release_quiet_s=30, reject_sample_s=1, sync_s=0.2)
VALUES = {"lel": 1.0, "battery": 90.0}
TIMEOUT_S = 30.0


class Clock:
    """The ingest's wall clock, moved by the test (housekeeping: automatic releases)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ScriptedSource:
    """One instance's share of the shared subscription, with the receive times we choose."""

    def __init__(self) -> None:
        self._buffer: list[RawMessage] = []
        self._ready = asyncio.Event()
        self.acked = 0

    def feed(self, messages: Sequence[RawMessage]) -> None:
        self._buffer.extend(messages)
        self._ready.set()

    async def take(self, max_messages: int, timeout_s: float) -> list[RawMessage]:
        if not self._buffer:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), timeout_s)
        taken, self._buffer = self._buffer[:max_messages], self._buffer[max_messages:]
        if not self._buffer:
            self._ready.clear()
        return taken

    def pending(self) -> int:
        return len(self._buffer)

    def ack(self, messages: Sequence[RawMessage]) -> None:
        self.acked += len(messages)


class CountingStore(QuarantineStore):
    """The real table, counting sync attempts: failed ones and completed ones."""

    def __init__(self, dsn: str, schema: str) -> None:
        super().__init__(dsn, schema)
        self.failures = 0
        self.completed = 0

    async def record(self, changes: Sequence[QuarantineChange],
                     dropped: Mapping[str, int]) -> None:
        try:
            await super().record(changes, dropped)
        except QuarantineStoreError:
            self.failures += 1
            raise

    async def active(self) -> dict[str, float]:
        result = await super().active()
        self.completed += 1
        return result


@dataclass
class Instance:
    ingest: IngestService
    source: ScriptedSource
    store: CountingStore
    clock: Clock


def _settings(dsn: str) -> Settings:
    return load(None, database={"dsn": dsn, "schema_name": SCHEMA},
                mqtt={"topic_root": ROOT},
                sites=[{"id": SITE, "name": "North"}],
                devices=[{"id": d, "type": "gas", "site": SITE, "report_interval_s": 1.0}
                         for d in (FLOODER, EXPIRING, *NORMAL)])


def _message(device: str, seq: int, at: float) -> RawMessage:
    payload = orjson.dumps({"ts": at, "seq": seq, "values": VALUES})
    return RawMessage(topic=f"{ROOT}/{SITE}/{device}/telemetry", payload=payload,
                      received_at=at, mid=seq + 1, qos=1)


def _traffic(start: float) -> tuple[list[RawMessage], int, int]:
    """The flooder at 50/s for FLOOD_S, each normal device once a second, in time order."""
    messages: list[tuple[float, RawMessage]] = []
    flood = FLOOD_S * FLOOD_RATE
    for n in range(flood):
        at = start + n / FLOOD_RATE
        messages.append((at, _message(FLOODER, n, at)))
    normal = 0
    for second in range(FLOOD_S):
        for index, device in enumerate(NORMAL):
            at = start + second + (index + 0.5) / len(NORMAL) / 2
            messages.append((at, _message(device, second, at)))
            normal += 1
    messages.sort(key=lambda item: item[0])
    return [m for _, m in messages], flood, normal


async def _feed(instance: Instance, messages: Sequence[RawMessage]) -> None:
    """Hand ``messages`` over in batches, the clock following them; wait until acked."""
    for chunk in range(0, len(messages), 50):
        batch = messages[chunk:chunk + 50]
        instance.clock.now = batch[-1].received_at
        taken = instance.source.acked + len(batch)
        instance.source.feed(batch)

        async def drained(taken: int = taken) -> bool:
            return instance.source.acked == taken
        await _until(drained, "the batch to be taken")


async def _until(probe: Callable[[], Awaitable[bool]], what: str,
                 timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not await probe():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        await asyncio.sleep(0.05)


async def _more_syncs(*instances: Instance, count: int = 3) -> None:
    """Until each instance has completed ``count`` more syncs with the table."""
    before = [i.store.completed for i in instances]

    async def synced() -> bool:
        return all(i.store.completed >= n + count for i, n in zip(instances, before, strict=True))
    await _until(synced, f"{count} more syncs")


async def _rows(dsn: str, query: str, *args: object) -> list[tuple[Any, ...]]:
    return await db_rows(dsn, SCHEMA, query, *args)  # every table here is in SCHEMA


@contextlib.asynccontextmanager
async def _instances(settings: Settings, dsn: str, bus: MemoryBus,
                     start: float) -> AsyncIterator[tuple[Instance, Instance]]:
    """Ingest A and B on one bus and one quarantine table, and the store writer."""
    stop = asyncio.Event()
    pair = []
    for _ in range(2):
        source = ScriptedSource()
        store = CountingStore(dsn, SCHEMA)
        clock = Clock(start)
        ingest = IngestService(source, KafkaHop(bus), settings.device_map(),  # type: ignore[arg-type]
                               topic_root=ROOT, max_payload_bytes=4096,
                               max_readings_per_message=10, batch_max_messages=100,
                               flush_ms=20, flood=FLOOD, quarantine_store=store, clock=clock)
        pair.append(Instance(ingest, source, store, clock))
    async with ReadingStore(dsn, SCHEMA) as readings, asyncio.TaskGroup() as tasks:
        tasks.create_task(StoreWriterService(bus, readings).run(stop), name="test.writer")
        running = [tasks.create_task(i.ingest.run(stop), name=f"test.ingest-{n}")
                   for n, i in enumerate(pair)]
        try:
            yield pair[0], pair[1]
            assert not any(task.done() for task in running), "an ingest stopped"
        finally:
            stop.set()


async def test_quarantine_sync_with_the_database_down(
        data_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    t0 = time.time()
    async with EmbeddedPostgres(data_root / "pg", port=free_port()) as pg:
        dsn = pg.dsn
        settings = _settings(dsn)
        await prepare_store(dsn, settings)
        await _rows(dsn, "INSERT INTO device_quarantine (device_id, site, quarantined_at) "
                         "VALUES (%s, %s, now() - interval '5 minutes') RETURNING 1",
                    EXPIRING, SITE)
        async with MemoryBus() as bus, \
                bus.consumer(["detections"], "test.detections") as detections, \
                _instances(settings, dsn, bus, t0) as (a, b):

            async def both_restored() -> bool:
                return all(i.ingest.guard is not None
                           and i.ingest.guard.is_quarantined(EXPIRING) for i in (a, b))
            await _until(both_restored, "both instances to read the quarantine table")
            guard_a, guard_b = a.ingest.guard, b.ingest.guard
            assert guard_a is not None and guard_b is not None

            outage_started = len(caplog.records)
            await pg.stop()
            failures_before = (a.store.failures, b.store.failures)
            completed_before = (a.store.completed, b.store.completed)

            async def both_failing() -> bool:
                return a.store.failures >= 1 and b.store.failures >= 1
            await _until(both_failing, "the syncs to notice the outage")

            # A sees the flood (and the normal devices) while the table is away.
            flood_start = t0 + 10
            traffic, flood_sent, normal_sent = _traffic(flood_start)
            await _feed(a, traffic)
            assert guard_a.is_quarantined(FLOODER) and guard_a.quarantines == 1
            assert not guard_b.is_quarantined(FLOODER)

            # The quarantine from before the outage ends on A: quiet for release_quiet_s
            # (the flooder, over its limit until flood_start + FLOOD_S, stays).
            a.clock.now = t0 + FLOOD.release_quiet_s + 1

            async def expired() -> bool:
                return not guard_a.is_quarantined(EXPIRING)
            await _until(expired, "the old quarantine to end on A")
            assert guard_a.is_quarantined(FLOODER)

            # Many failed syncs (every sync_s and at each change), one warning each.
            async def retried() -> bool:
                return a.store.failures - failures_before[0] >= 10
            await _until(retried, "A to retry the sync")
            during = caplog.records[outage_started:]
            unavailable = [r for r in during if "quarantine table unavailable" in r.message]
            assert len(unavailable) == 2, [r.message for r in unavailable]  # A and B, once
            loud = [r for r in during if r.levelno >= logging.WARNING]
            assert len(loud) <= 6, [r.getMessage() for r in loud]
            assert (a.store.completed, b.store.completed) == completed_before
            # Every message was accepted and acknowledged; nothing is in the table yet.
            assert a.source.acked == flood_sent + normal_sent
            dropped = guard_a.dropped
            assert dropped > 0 and guard_a.rate_limited > 0

            # The database comes back.
            await pg.start()
            assert pg.dsn == dsn

            async def normal_landed() -> bool:
                rows = await _rows(dsn, "SELECT count(*), count(DISTINCT (device_id, seq)) "
                                        "FROM readings WHERE device_id <> %s", FLOODER)
                return rows[0] == (normal_sent * len(VALUES), normal_sent)
            await _until(normal_landed, "every normal reading to land, once")

            table: list[tuple[Any, ...]] = []

            async def table_caught_up() -> bool:
                table[:] = await _rows(dsn, "SELECT device_id, released_at IS NULL, "
                                            "released_by, dropped FROM device_quarantine "
                                            "ORDER BY device_id")
                return table == [(FLOODER, True, "", dropped), (EXPIRING, False, "auto", 0)]
            await _until(table_caught_up, "A's quarantine and release to reach the table "
                         f"(last seen {table})")

            async def b_learned() -> bool:
                return guard_b.is_quarantined(FLOODER) and not guard_b.is_quarantined(EXPIRING)
            await _until(b_learned, "B to learn both at its next sync")

            # Not resurrected: a few more completed syncs on both leave it released.
            await _more_syncs(a, b)
            # B, which dropped nothing yet, must not overwrite A's count with its own.
            assert await table_caught_up(), table
            assert not guard_a.is_quarantined(EXPIRING) and not guard_b.is_quarantined(EXPIRING)
            assert guard_a.is_quarantined(FLOODER) and guard_b.is_quarantined(FLOODER)
            assert (await _rows(dsn, "SELECT count(*) FROM device_quarantine WHERE "
                                     "released_at IS NULL")) == [(1,)]

            # B enforces it on its own share: dropped and counted, no second quarantine.
            # (B's clock stays put: its quiet period counts from when it read the table.)
            b.source.feed([_message(FLOODER, 10_000, b.clock.now)])

            async def b_dropped() -> bool:
                return guard_b.dropped == 1 and b.source.acked == 1
            await _until(b_dropped, "B to drop the flooder's message")
            assert guard_b.quarantines == 0

            async def counts_summed() -> bool:
                rows = await _rows(dsn, "SELECT dropped FROM device_quarantine WHERE "
                                        "device_id = %s", FLOODER)
                return rows == [(dropped + 1,)]
            await _until(counts_summed, "the table to count both instances' drops")
            await _more_syncs(a, b)
            assert await counts_summed(), "the count must stay summed"

            # The flooder's messages add up: landed, rate-limited or dropped in quarantine,
            # and the sampled rejects rows stand for exactly those held back.
            landed = (await _rows(dsn, "SELECT count(DISTINCT seq) FROM readings WHERE "
                                       "device_id = %s", FLOODER))[0][0]
            assert landed + guard_a.rate_limited + guard_a.dropped == flood_sent
            assert landed <= FLOOD.burst_messages + 20 * (FLOOD.quarantine_after_s + 2)

            async def rejects_add_up() -> bool:
                rows = await _rows(dsn, "SELECT reason, detail FROM rejects WHERE "
                                        "device_id = %s", FLOODER)
                return (rejected_messages(rows, "rate_limited") == guard_a.rate_limited
                        and rejected_messages(rows, "quarantined") == dropped + guard_b.dropped)
            await _until(rejects_add_up, "the sampled rejects to add up")
            rows = (await _rows(dsn, "SELECT count(*) FROM rejects"))[0][0]
            assert rows <= 2 * (FLOOD_S / FLOOD.reject_sample_s + 3), rows

            # One alert per change: A's quarantine, A's release of the old one (B, learning
            # of an automatic release, does not announce it again), never one per failed sync.
            messages = await detections.batch(100, 1.0)
            seen = [(d.device_id, d.firing) for d in map(decode_detection,
                                                         (m.value for m in messages))]
            assert seen.count((FLOODER, True)) == 1, seen
            assert (FLOODER, False) not in seen and (EXPIRING, True) not in seen, seen
            assert seen.count((EXPIRING, False)) == 1, seen
            releases = [r.getMessage() for r in caplog.records
                        if "released from quarantine device_id=" + EXPIRING in r.getMessage()]
            assert len(releases) == 2 and all("by=auto" in r for r in releases), releases
            log.info("outage: flood %d = %d landed + %d rate-limited + %d dropped; %d normal "
                     "landed; %d failed syncs on A, %d on B; detections %s", flood_sent,
                     landed, guard_a.rate_limited, dropped, normal_sent,
                     a.store.failures, b.store.failures, seen)


async def test_each_instance_quarantines_its_share_and_the_row_adds_up(
        data_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A flood split over both instances during the outage: each quarantines on its own
    share; once the database is back the one row keeps the first quarantine and counts the
    messages both dropped."""
    t0 = time.time()
    async with EmbeddedPostgres(data_root / "pg", port=free_port()) as pg:
        dsn = pg.dsn
        await prepare_store(dsn, _settings(dsn))
        async with MemoryBus() as bus, _instances(_settings(dsn), dsn, bus, t0) as (a, b):
            await _more_syncs(a, b, count=1)
            guard_a, guard_b = a.ingest.guard, b.ingest.guard
            assert guard_a is not None and guard_b is not None
            await pg.stop()

            async def both_failing() -> bool:
                return a.store.failures >= 1 and b.store.failures >= 1
            await _until(both_failing, "the syncs to notice the outage")
            # 100 a second, alternating between the instances as a shared subscription does:
            # 50 a second each, over the limit of 20 on both shares.
            flood = [_message(FLOODER, n, t0 + 10 + n / 100) for n in range(FLOOD_S * 100)]
            await asyncio.gather(_feed(a, flood[0::2]), _feed(b, flood[1::2]))
            assert guard_a.is_quarantined(FLOODER) and guard_b.is_quarantined(FLOODER)
            assert guard_a.dropped > 0 and guard_b.dropped > 0
            await pg.start()

            async def row_adds_up() -> bool:
                rows = await _rows(dsn, "SELECT released_at IS NULL, dropped FROM "
                                        "device_quarantine WHERE device_id = %s", FLOODER)
                return rows == [(True, guard_a.dropped + guard_b.dropped)]
            await _until(row_adds_up, "one active row counting both instances' drops")
            await _more_syncs(a, b)
            assert await row_adds_up(), "the count must stay summed"
            assert guard_a.is_quarantined(FLOODER) and guard_b.is_quarantined(FLOODER)
            log.info("split flood %d: A dropped %d, B dropped %d; the row counts %d",
                     len(flood), guard_a.dropped, guard_b.dropped,
                     guard_a.dropped + guard_b.dropped)
    unavailable = [r for r in caplog.records if "quarantine table unavailable" in r.message]
    assert len(unavailable) == 2, [r.message for r in unavailable]
