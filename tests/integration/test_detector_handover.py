"""Two detector workers in one Kafka consumer group: a partition's state moves with it."""

from __future__ import annotations

import asyncio
import signal
import sys
import time

import pytest

from config.settings import DeviceConfig, Settings, SiteConfig
from detectors import DetectorService
from detectors.snapshot import StateStore
from shouwang.bus import Consumer, MemoryBus
from shouwang.bus.kafka import KafkaBus
from shouwang.catalog import DeviceType
from shouwang.codec import decode_detection, encode_readings
from shouwang.models import Detection, Reading
from shouwang.store import connect

pytestmark = pytest.mark.integration

PARTITIONS = 4


def _devices(bus: KafkaBus) -> list[str]:
    """Two gas devices on every partition."""
    chosen: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    index = 0
    while any(len(ids) < 2 for ids in chosen.values()):
        device_id = f"g{index}"
        ids = chosen[bus.partition_for(device_id)]
        if len(ids) < 2:
            ids.append(device_id)
        index += 1
    return sorted(d for ids in chosen.values() for d in ids)


def _settings(devices: list[str], group: str) -> Settings:
    return Settings.model_validate({
        "sites": [SiteConfig(id="s1", name="测试小区")],
        "devices": [DeviceConfig(id=d, type=DeviceType.GAS, site="s1") for d in devices],
        "detectors": {"group": group, "snapshot_interval_s": 1.0},
    })


async def _publish(bus: KafkaBus, devices: list[str], lel: float, seq: int) -> None:
    now = time.time()
    await bus.publish("readings", [
        (d, encode_readings([Reading(ts=now, device_id=d, site="s1", metric="lel", value=lel,
                                     seq=seq, received_at=now)]))
        for d in devices])


async def _collect(reader: Consumer, found: list[Detection], count: int,
                   timeout_s: float = 40.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while len(found) < count and loop.time() < deadline:
        batch = await reader.batch(100, 0.2)
        found += [decode_detection(m.value) for m in batch]
        await reader.commit(batch)


async def _saved_states(pg_dsn: str, schema: str) -> int:
    conn = await connect(pg_dsn, schema, autocommit=True)
    try:
        cur = await conn.execute("SELECT count(*) FROM detector_state")
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])
    finally:
        await conn.close()


async def test_a_killed_workers_partitions_continue_on_the_other_without_lost_or_double_alerts(
        kafka_bootstrap: str, run_id: str, pg_dsn: str, db_schema: str) -> None:
    async with KafkaBus(kafka_bootstrap, topic_prefix=f"{run_id}.",
                        partitions=PARTITIONS) as bus:
        devices = _devices(bus)
        settings = _settings(devices, "detectors")
        stops = {name: asyncio.Event() for name in ("a", "b")}

        def start(name: str) -> asyncio.Task[None]:
            service = DetectorService(settings, bus, poll_s=0.1, dsn=pg_dsn, schema=db_schema)
            return asyncio.create_task(service.run(stops[name]), name=f"test.worker-{name}")

        found: list[Detection] = []
        worker_a = start("a")
        worker_b: asyncio.Task[None] | None = None
        try:
            async with bus.consumer(["detections"], "test-reader") as reader:
                # A alone: every device reaches level 1.
                await _publish(bus, devices, 30.0, seq=1)
                await _collect(reader, found, len(devices))
                assert len(found) == len(devices)

                # B joins: the group rebalances and A saves the state of what it hands over.
                worker_b = start("b")
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 40.0
                while (await _saved_states(pg_dsn, db_schema) < len(devices)
                       and loop.time() < deadline):
                    await asyncio.sleep(0.2)
                assert await _saved_states(pg_dsn, db_schema) == len(devices)

                # A is killed; B takes all partitions and restores each device's level.
                worker_a.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await worker_a
                # Still level 1 (inside the hysteresis): a worker that forgot would fire
                # again here. Then back to normal: a worker that forgot would stay silent.
                await _publish(bus, devices, 28.0, seq=2)
                await _publish(bus, devices, 10.0, seq=3)
                await _collect(reader, found, 2 * len(devices))
                await _collect(reader, found, 2 * len(devices) + 1, timeout_s=3.0)  # any extra
        finally:
            for stop in stops.values():
                stop.set()
            if not worker_a.done():
                worker_a.cancel()
            if worker_b is not None:
                await worker_b

    by_device = {d: [(x.hazard, x.level, x.firing) for x in found if x.device_id == d]
                 for d in devices}
    assert by_device == {d: [("gas", 1, True), ("gas", 0, False)] for d in devices}
    async with StateStore(pg_dsn, db_schema) as store:
        assert set(await store.load(devices)) == set(devices)


async def test_a_restarted_worker_on_the_in_process_bus_resumes_from_the_database(
        pg_dsn: str, db_schema: str) -> None:
    devices = ["g1", "g2"]
    settings = _settings(devices, "detectors")
    found: list[Detection] = []
    async with MemoryBus() as bus, bus.consumer(["detections"], "test-reader") as reader:
        for lel, expected in ((30.0, 2), (10.0, 4)):  # the clear needs the saved level
            stop = asyncio.Event()
            worker = asyncio.create_task(
                DetectorService(settings, bus, poll_s=0.05, dsn=pg_dsn, schema=db_schema)
                .run(stop), name="test.worker")
            await bus.publish("readings", [
                (d, encode_readings([Reading(ts=time.time(), device_id=d, site="s1",
                                             metric="lel", value=lel)])) for d in devices])
            await _collect(reader, found, expected, timeout_s=20.0)
            stop.set()
            await worker  # each run saves on the way out; the next one loads it

    assert [(x.device_id, x.level, x.firing) for x in found] == [
        ("g1", 1, True), ("g2", 1, True), ("g1", 0, False), ("g2", 0, False)]


async def test_a_worker_killed_with_sigkill_hands_over_its_last_periodic_snapshot(
        kafka_bootstrap: str, run_id: str, pg_dsn: str, db_schema: str) -> None:
    prefix = f"{run_id}."
    async with KafkaBus(kafka_bootstrap, topic_prefix=prefix, partitions=PARTITIONS) as bus:
        devices = _devices(bus)
        settings = _settings(devices, "detectors")
        worker_a = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.integration.detector_worker_proc", kafka_bootstrap,
            prefix, pg_dsn, db_schema, *devices,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        stop_b = asyncio.Event()
        worker_b: asyncio.Task[None] | None = None
        found: list[Detection] = []
        try:
            async with bus.consumer(["detections"], "test-reader") as reader:
                await _publish(bus, devices, 30.0, seq=1)
                await _collect(reader, found, len(devices), timeout_s=60.0)
                assert len(found) == len(devices)
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 20.0
                while (await _saved_states(pg_dsn, db_schema) < len(devices)
                       and loop.time() < deadline):
                    await asyncio.sleep(0.2)  # the periodic snapshot after processing

                worker_b = asyncio.create_task(
                    DetectorService(settings, bus, poll_s=0.1, dsn=pg_dsn, schema=db_schema)
                    .run(stop_b), name="test.worker-b")
                worker_a.send_signal(signal.SIGKILL)  # no goodbye: no revoke, no final save
                await worker_a.wait()

                await _publish(bus, devices, 28.0, seq=2)
                await _publish(bus, devices, 10.0, seq=3)
                await _collect(reader, found, 2 * len(devices), timeout_s=60.0)
                await _collect(reader, found, 2 * len(devices) + 1, timeout_s=3.0)
        finally:
            if worker_a.returncode is None:
                worker_a.kill()
                await worker_a.wait()
            stop_b.set()
            if worker_b is not None:
                await worker_b

    by_device = {d: [(x.hazard, x.level, x.firing) for x in found if x.device_id == d]
                 for d in devices}
    assert by_device == {d: [("gas", 1, True), ("gas", 0, False)] for d in devices}
