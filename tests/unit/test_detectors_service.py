"""The detector worker on the in-process bus: skip bad messages, tick offline, commit last."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import Self

import orjson
import pytest
from prometheus_client import REGISTRY

from config.settings import DetectorSettings, DeviceConfig, Settings, SiteConfig
from detectors import DetectorService
from shouwang.bus import BusError, Consumer, MemoryBus, Message, RebalanceListener
from shouwang.catalog import DeviceType
from shouwang.codec import decode_detection, encode_readings
from shouwang.models import Detection, Reading

START = 1_764_120_000.0


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _settings(offline_check_s: float = 3600.0) -> Settings:
    return Settings(
        sites=(SiteConfig(id="s1", name="测试小区"),),
        devices=(DeviceConfig(id="g1", type=DeviceType.GAS, site="s1", report_interval_s=60),),
        detectors=DetectorSettings(offline_check_s=offline_check_s),
    )


def _lel(value: float, ts: float) -> bytes:
    return encode_readings([Reading(ts=ts, device_id="g1", site="s1", metric="lel", value=value,
                                    received_at=ts)])


async def _collect(bus: MemoryBus, count: int, timeout_s: float = 5.0) -> list[Detection]:
    """Read ``count`` detections (waiting up to ``timeout_s``), then any extra for 0.2 s."""
    found: list[Detection] = []
    async with bus.consumer(["detections"], "test-reader") as reader:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(found) < count and loop.time() < deadline:
            found += await _take(reader, 0.1)
        found += await _take(reader, 0.2)
    return found


async def _take(reader: Consumer, timeout_s: float) -> list[Detection]:
    messages = await reader.batch(100, timeout_s)
    await reader.commit(messages)
    return [decode_detection(m.value) for m in messages]


def _errors() -> float:
    return REGISTRY.get_sample_value("shouwang_detector_decode_errors_total") or 0.0


async def test_worker_skips_undecodable_messages_publishes_detections_and_commits() -> None:
    bad_types = orjson.dumps({"v": 1, "d": "g1", "s": "s1", "dr": False,
                              "r": [[START, "lel", "high", None, "telemetry", START]]})
    errors_before = _errors()
    async with MemoryBus() as bus:
        await bus.publish("readings", [
            ("g1", _lel(30, START)), ("g1", b"not json"), ("g1", b'{"v": 1, "d": "g1"}'),
            ("g1", bad_types), ("g1", _lel(55, START + 1)),
        ])
        stop = asyncio.Event()
        worker = asyncio.create_task(
            DetectorService(_settings(), bus, clock=_Clock(START + 2), poll_s=0.05).run(stop),
            name="test.detector")

        found = await _collect(bus, 2)
        stop.set()
        await worker

        assert [(d.hazard, d.level, d.firing, d.ts) for d in found] == [
            ("gas", 1, True, START + 2), ("gas", 2, True, START + 2)]
        assert _errors() - errors_before == 3
        async with bus.consumer(["readings"], "detectors") as again:
            assert await again.batch(100, 0.1) == []


async def test_worker_flags_silent_devices_on_its_injected_clock_and_then_recovery() -> None:
    clock = _Clock(START)
    async with MemoryBus() as bus:
        stop = asyncio.Event()
        worker = asyncio.create_task(
            DetectorService(_settings(offline_check_s=1.0), bus, clock=clock,
                            poll_s=0.02).run(stop), name="test.detector")
        await asyncio.sleep(0.1)
        clock.now = START + 179  # one second short of 3 x 60 s
        await asyncio.sleep(0.1)
        clock.now = START + 180
        offline = await _collect(bus, 1)
        await bus.publish("readings", [("g1", _lel(1, START + 181))])
        back = await _collect(bus, 1)
        stop.set()
        await worker

    assert [(d.device_id, d.hazard, d.firing, d.ts) for d in offline] == [
        ("g1", "offline", True, START + 180)]
    assert [(d.device_id, d.hazard, d.firing) for d in back] == [("g1", "offline", False)]


class _RecordingBus:
    """A MemoryBus whose detection publishes fail ``failures`` times; records the order."""

    def __init__(self, failures: int) -> None:
        self.inner = MemoryBus()
        self.failures = failures
        self.calls: list[str] = []

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        return None

    async def publish(self, topic: str, items: Sequence[tuple[str, bytes]]) -> None:
        if topic == "detections" and self.failures:
            self.failures -= 1
            self.calls.append("publish failed")
            raise BusError("broker down")
        if topic == "detections":
            self.calls.append("published")
        await self.inner.publish(topic, items)

    def consumer(self, topics: Sequence[str], group: str, *, from_latest: bool = False,
                 listener: RebalanceListener | None = None) -> _RecordingConsumer:
        return _RecordingConsumer(self, self.inner.consumer(topics, group, listener=listener))

    def partition_for(self, key: str) -> int:
        return self.inner.partition_for(key)


class _RecordingConsumer:
    def __init__(self, bus: _RecordingBus, inner: object) -> None:
        self._bus = bus
        self._inner = inner

    async def __aenter__(self) -> Self:
        await self._inner.__aenter__()  # type: ignore[attr-defined]
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._inner.__aexit__(exc_type, exc, tb)  # type: ignore[attr-defined]

    async def batch(self, max_records: int = 1000, timeout_s: float = 0.5) -> list[Message]:
        return await self._inner.batch(max_records, timeout_s)  # type: ignore[attr-defined,no-any-return]

    async def commit(self, messages: Sequence[Message]) -> None:
        self._bus.calls.append(f"commit {len(messages)}")
        await self._inner.commit(messages)  # type: ignore[attr-defined]


async def test_worker_retries_a_failed_publish_and_commits_only_after_it() -> None:
    bus = _RecordingBus(failures=2)
    await bus.inner.publish("readings", [("g1", _lel(30, START))])
    stop = asyncio.Event()
    worker = asyncio.create_task(
        DetectorService(_settings(), bus, clock=_Clock(START), poll_s=0.05).run(stop),
        name="test.detector")

    found = await _collect(bus.inner, 1)
    stop.set()
    await worker

    assert [(d.hazard, d.level) for d in found] == [("gas", 1)]
    assert bus.calls == ["publish failed", "publish failed", "published", "commit 1"]


async def test_worker_stopped_while_publishing_fails_leaves_the_batch_uncommitted() -> None:
    bus = _RecordingBus(failures=1_000)
    await bus.inner.publish("readings", [("g1", _lel(30, START))])
    stop = asyncio.Event()
    worker = asyncio.create_task(
        DetectorService(_settings(), bus, clock=_Clock(START), poll_s=0.05).run(stop),
        name="test.detector")
    while not bus.calls:
        await asyncio.sleep(0.01)
    stop.set()

    with pytest.raises(BusError):
        await worker

    assert not any(call.startswith("commit") for call in bus.calls)
    async with bus.inner.consumer(["readings"], "detectors") as again:
        assert [m.key for m in await again.batch(100, 0.1)] == ["g1"]
