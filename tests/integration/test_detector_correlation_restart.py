"""A correlated finding survives a worker restart: its clear comes from the next worker, once."""

from __future__ import annotations

import asyncio

import pytest

from config.settings import DeviceConfig, Settings, SiteConfig
from detectors import DetectorService
from shouwang.bus import MemoryBus
from shouwang.catalog import DeviceType
from shouwang.codec import decode_detection, encode_readings
from shouwang.models import Detection, Reading

pytestmark = pytest.mark.integration

START = 1_764_120_000.0


def _settings() -> Settings:
    return Settings(
        sites=(SiteConfig(id="s1", name="测试小区"),),
        devices=tuple(DeviceConfig(id=d, type=DeviceType.GAS, site="s1", building="3号楼",
                                   report_interval_s=60.0) for d in ("g1", "g2")),
    )


def _lel(device_id: str, value: float, ts: float) -> tuple[str, bytes]:
    return device_id, encode_readings([Reading(ts=ts, device_id=device_id, site="s1",
                                               metric="lel", value=value, received_at=ts)])


async def _worker_until(bus: MemoryBus, dsn: str, schema: str, want: int,
                        reader_group: str) -> list[Detection]:
    """Run one worker until ``want`` detections came out (or 60 s), then stop it."""
    stop = asyncio.Event()
    worker = asyncio.create_task(DetectorService(
        _settings(), bus, clock=lambda: START + 100.0, poll_s=0.1, dsn=dsn,
        schema=schema).run(stop), name="test.detector-worker")
    found: list[Detection] = []
    try:
        async with bus.consumer(["detections"], reader_group) as reader:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60.0
            while len(found) < want and loop.time() < deadline:
                batch = await reader.batch(100, 0.2)
                await reader.commit(batch)
                found += [decode_detection(m.value) for m in batch]
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30.0)
    return found


async def test_the_spread_alarm_clears_once_after_a_restart(pg_dsn: str, db_schema: str) -> None:
    async with MemoryBus() as bus:
        await bus.publish("readings", [_lel("g1", 30.0, START + 1), _lel("g2", 31.0, START + 2)])
        before = await _worker_until(bus, pg_dsn, db_schema, 3, "reader")
        # The first worker stopped (its state saved); the gas goes away; a new one runs.
        await bus.publish("readings", [_lel("g1", 1.0, START + 60), _lel("g2", 1.0, START + 61)])
        after = await _worker_until(bus, pg_dsn, db_schema, 3, "reader")

    summary = [(d.device_id, d.hazard, d.firing) for d in before + after]
    assert summary == [("g1", "gas", True), ("g2", "gas", True), ("g2", "gas_spread", True),
                       ("g1", "gas", False), ("g2", "gas", False), ("g2", "gas_spread", False)]
